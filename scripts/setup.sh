#!/usr/bin/env bash
# Idempotent set-up for a Debian machine: PostgreSQL dev files and plpython3u for the server
# that pg_config reports, pgvector (Debian's source package built with PGXS when the vector
# extension is missing), and the project venv built with the interpreter plpython3u embeds.
# Each step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${PGCLIP_VENV:-$ROOT/.venv}
PYTHON=${PGCLIP_PYTHON:-/usr/bin/python3}      # the interpreter Debian's plpython3u links
log() { printf '[setup] %s\n' "$*"; }

# 1. PostgreSQL server, dev files, plpython3u, build tools. With PG=N (make ... PG=18), a
#    major version Debian does not install is built from source into a cache (postgres.sh).
PG_CONFIG=${PG_CONFIG:-pg_config}
if [ -n "${PG:-}" ]; then PG_CONFIG=$(bash scripts/postgres.sh build "$PG"); fi
if ! command -v "$PG_CONFIG" >/dev/null; then
  log "installing PostgreSQL"; bash scripts/debian_packages.sh install postgresql postgresql-common
fi
PGMAJOR=$($PG_CONFIG --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
if [ "$($PG_CONFIG --bindir)" = /usr/lib/postgresql/$PGMAJOR/bin ]; then
  debian_pkgs="postgresql-$PGMAJOR postgresql-server-dev-$PGMAJOR postgresql-plpython3-$PGMAJOR"
else
  debian_pkgs=""   # a server built from source (postgres.sh) has its own dev files and plpython3u
fi
need=$(bash scripts/debian_packages.sh missing $debian_pkgs python3-venv python3-dev make gcc dpkg-dev acl)
if [ -n "$need" ]; then log "installing Debian packages:" $need; bash scripts/debian_packages.sh install $need; fi
log "PostgreSQL $PGMAJOR ($($PG_CONFIG --bindir)), plpython3u present"

# 2. pgvector: use the installed one when the server has it.
SHAREDIR=$($PG_CONFIG --sharedir)
if [ -f "$SHAREDIR/extension/vector.control" ]; then
  log "pgvector $(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$SHAREDIR/extension/vector.control") already installed"
else
  PG_CONFIG=$PG_CONFIG bash scripts/build_pgvector.sh
fi

# 3. The venv that PL/Python imports from.
stamp="$VENV/.pgclip-requirements"
if [ ! -x "$VENV/bin/python" ] || ! cmp -s requirements.txt "$stamp"; then
  log "building venv $VENV with $PYTHON (torch is large: a few minutes the first time)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  cp requirements.txt "$stamp"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e plpython >/dev/null 2>&1 \
  || "$VENV/bin/pip" install --disable-pip-version-check --no-deps --no-build-isolation -e plpython
log "venv ready: $("$VENV/bin/python" -c 'import torch, open_clip; print("torch", torch.__version__, "open_clip", open_clip.__version__)')"

# 4. The postgres OS user imports the package and the venv from here: it must list and read
#    them and traverse every folder above them (run as root; a no-op otherwise).
bash scripts/grant_postgres_access.sh "$ROOT" "$VENV"
