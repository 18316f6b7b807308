#!/usr/bin/env bash
# Idempotent set-up for a Debian machine: PostgreSQL dev files and plpython3u for the server
# that pg_config reports, pgvector (Debian's source package built with PGXS when the vector
# extension is missing), and the project venv built with the interpreter plpython3u embeds.
# Each step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PGVECTOR_VERSION=${PGVECTOR_VERSION:-0.8.0}   # pinned (Debian trixie); checked after the build
VENV=${PGCLIP_VENV:-$ROOT/.venv}
PYTHON=${PGCLIP_PYTHON:-/usr/bin/python3}      # the interpreter Debian's plpython3u links
log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
missing_pkgs() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done; }

# 1. PostgreSQL server, dev files, plpython3u, build tools.
if ! command -v pg_config >/dev/null; then
  log "installing PostgreSQL"; apt_install postgresql postgresql-common
fi
PG_CONFIG=${PG_CONFIG:-pg_config}
PGMAJOR=$($PG_CONFIG --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
need=$(missing_pkgs "postgresql-$PGMAJOR" "postgresql-server-dev-$PGMAJOR" "postgresql-plpython3-$PGMAJOR" \
       python3-venv python3-dev make gcc dpkg-dev acl)
if [ -n "$need" ]; then log "installing Debian packages:" $need; apt_install $need; fi
log "PostgreSQL $PGMAJOR ($($PG_CONFIG --bindir)), plpython3u present"

# 2. pgvector: use the installed one when the server has it.
SHAREDIR=$($PG_CONFIG --sharedir)
if [ -f "$SHAREDIR/extension/vector.control" ]; then
  log "pgvector $(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$SHAREDIR/extension/vector.control") already installed"
else
  log "building pgvector $PGVECTOR_VERSION from Debian's source package (suite trixie)"
  # A deb-src entry for trixie, reusing the mirror this machine is already configured with.
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
  [ -n "$uri" ] || { log "no Debian mirror configured; install pgvector by hand"; exit 1; }
  src=/etc/apt/sources.list.d/pgclip-trixie-src.sources
  if [ ! -f $src ]; then
    printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" | as_root tee $src >/dev/null
  fi
  as_root apt-get update -qq; apt_updated=1
  build=$(mktemp -d); chmod 755 "$build"
  deb_version=$(apt-cache showsrc pgvector | sed -nE "s/^Version: ($PGVECTOR_VERSION-[^ ]+)$/\1/p" | head -1)
  [ -n "$deb_version" ] || { log "Debian does not serve pgvector $PGVECTOR_VERSION (see apt-cache showsrc pgvector)"; exit 1; }
  chown _apt "$build" 2>/dev/null || true
  (cd "$build" && apt-get source -qq --download-only "pgvector=$deb_version" >/dev/null)
  (cd "$build" && dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null)
  got=$(cd "$build/src" && dpkg-parsechangelog -S Version | sed 's/-.*//')
  [ "$got" = "$PGVECTOR_VERSION" ] || { log "got pgvector $got, pinned $PGVECTOR_VERSION"; exit 1; }
  make -s -C "$build/src" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
  as_root make -s -C "$build/src" PG_CONFIG="$PG_CONFIG" install >/dev/null
  rm -rf "$build"
  log "pgvector $got installed"
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
