#!/usr/bin/env bash
# Build and install pgvector (pinned, from Debian's source package) into the server that
# PG_CONFIG reports. pgvector 0.8.0 does not compile against PostgreSQL 18: there, pgclip's
# small compatibility change (scripts/pgvector-0.8.0-pg18.patch) is applied first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
VERSION=${PGVECTOR_VERSION:-0.8.0}   # the newest pgvector source Debian serves here (trixie)
PGMAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

log "building pgvector $VERSION for PostgreSQL $PGMAJOR from Debian's source package (trixie)"
bash scripts/debian_packages.sh deb-src trixie
build=$(mktemp -d); trap 'rm -rf "$build"' EXIT
chmod 755 "$build"; chown _apt "$build" 2>/dev/null || true
deb_version=$(apt-cache showsrc pgvector | sed -nE "s/^Version: ($VERSION-[^ ]+)$/\1/p" | head -1)
[ -n "$deb_version" ] || { log "Debian does not serve pgvector $VERSION (see apt-cache showsrc pgvector)"; exit 1; }
(cd "$build" && apt-get source -qq --download-only "pgvector=$deb_version" >/dev/null)
(cd "$build" && dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null)
got=$(cd "$build/src" && dpkg-parsechangelog -S Version | sed 's/-.*//')
[ "$got" = "$VERSION" ] || { log "got pgvector $got, pinned $VERSION"; exit 1; }
if [ "$got" = 0.8.0 ] && [ "$PGMAJOR" -ge 18 ]; then
  log "applying pgclip's PostgreSQL 18 compatibility change (scripts/pgvector-0.8.0-pg18.patch)"
  patch -s -d "$build/src" -p1 <"$ROOT/scripts/pgvector-0.8.0-pg18.patch"
fi
make -s -C "$build/src" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
as_root make -s -C "$build/src" PG_CONFIG="$PG_CONFIG" install >/dev/null
log "pgvector $got installed into PostgreSQL $PGMAJOR"
