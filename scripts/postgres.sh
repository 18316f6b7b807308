#!/usr/bin/env bash
# PostgreSQL major versions other than the one Debian installs.
#
#   scripts/postgres.sh path 18    # the pg_config that `make ... PG=18` uses (built or not)
#   scripts/postgres.sh build 18   # build it if needed (first time: about 5.5 minutes on 2 cores)
#
# Exit status of build: 0 built (or already), 2 no Debian source for that major, 3 Debian lists
# a source its mirror does not serve (PostgreSQL 17.12 from trixie, as seen here), 1 otherwise.
#
# `build` compiles upstream's source from Debian's source package, with plpython3u for Debian's
# python3 (the interpreter the venv uses), into a cache folder outside the checkout that later
# runs and other checkouts reuse, and prints the installed pg_config last.
#
# The cache is $PGCLIP_PG_CACHE (default /var/cache/pgclip): owned by root, readable by all, so
# that the postgres OS user can run the server and nobody else can replace it. pgvector is
# built into it by scripts/build_pgvector.sh (setup.sh calls it for any server).
set -euo pipefail
cd "$(dirname "$0")/.."
CMD=${1:-}; MAJOR=${2:-}
[[ $CMD =~ ^(path|build)$ && $MAJOR =~ ^[0-9]+$ ]] || { echo "usage: $0 path|build MAJOR" >&2; exit 2; }
CACHE=${PGCLIP_PG_CACHE:-/var/cache/pgclip}
PREFIX=$CACHE/postgresql-$MAJOR
PYTHON=${PGCLIP_PYTHON:-/usr/bin/python3}
# What a build has; a cached build with another line is built again.
FLAVOR="plpython3u($PYTHON) contrib llvm-jit(14)"
log() { printf '[postgres %s] %s\n' "$MAJOR" "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The server Debian installs is used as it is (Debian's pg_config, not whichever is first on
# PATH: make test PG=18 puts 18's bindir there).
DEBIAN_PG_CONFIG=/usr/bin/pg_config
if [ -x "$DEBIAN_PG_CONFIG" ] && [ "$("$DEBIAN_PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')" = "$MAJOR" ]; then
  echo "$DEBIAN_PG_CONFIG"; exit 0
fi
[ "$CMD" = path ] && { echo "$PREFIX/bin/pg_config"; exit 0; }

# The Debian suite whose deb-src carries each major (bookworm's own binaries give 15).
case $MAJOR in
  17) SUITE=trixie ;;
  18) SUITE=forky ;;
  *) log "no Debian source for PostgreSQL $MAJOR (trixie lists 17, forky 18; Debian's own pg_config serves its major)"; exit 2 ;;
esac

built() { [ -x "$PREFIX/bin/pg_config" ] && [ "$(cat "$PREFIX/.pgclip-built" 2>/dev/null)" = "$FLAVOR" ]; }
if built; then echo "$PREFIX/bin/pg_config"; exit 0; fi

as_root mkdir -p "$CACHE"
as_root chmod 755 "$CACHE"
# One build at a time per cache (two checkouts may ask at once).
{ exec 9>"$CACHE/.lock-$MAJOR"; } 2>/dev/null || exec 9>"/tmp/pgclip-postgres-$MAJOR.lock"
flock 9
if built; then echo "$PREFIX/bin/pg_config"; exit 0; fi

need=$(bash scripts/debian_packages.sh missing bison flex gcc make pkg-config dpkg-dev \
       libreadline-dev zlib1g-dev libicu-dev python3-dev llvm-14-dev clang-14)
[ -z "$need" ] || { log "installing" $need; bash scripts/debian_packages.sh install $need; }
bash scripts/debian_packages.sh deb-src "$SUITE"

build=$(mktemp -d); trap 'rm -rf "$build"' EXIT
chmod 755 "$build"; chown _apt "$build" 2>/dev/null || true
deb_version=$(apt-cache showsrc "postgresql-$MAJOR" | sed -nE 's/^Version: (.+)$/\1/p' | sort -V | tail -1)
[ -n "$deb_version" ] || { log "Debian serves no postgresql-$MAJOR source (apt-cache showsrc)"; exit 1; }
log "downloading postgresql-$MAJOR $deb_version source ($SUITE)"
if ! (cd "$build" && apt-get source -qq --download-only "postgresql-$MAJOR=$deb_version" >"$build/apt.log" 2>&1); then
  # Exit 3: Debian lists the source but its mirror does not serve the files (seen for 17.12).
  grep -q '404' "$build/apt.log" && { log "Debian lists postgresql-$MAJOR $deb_version ($SUITE) but its mirror does not serve the files (404): PostgreSQL $MAJOR cannot be built here"; exit 3; }
  cat "$build/apt.log" >&2; exit 1
fi
# A rebuild replaces the server: pgvector and pgclip go in again (setup.sh, make install).
# Upstream's tarball only: Debian's patches move sockets and libraries to Debian's layout.
tar -xjf "$build"/postgresql-"$MAJOR"_*.orig.tar.bz2 -C "$build"
src=$(echo "$build"/postgresql-"$MAJOR".*/)
log "building $(basename "$src") into $PREFIX (a few minutes; log in $build)"
as_root rm -rf "$PREFIX"
# LLVM JIT as PGDG's and Debian's servers have it (pgclip refuses to import torch after it).
(cd "$src" && ./configure -q --prefix="$PREFIX" --with-python PYTHON="$PYTHON" --with-icu \
   --with-llvm LLVM_CONFIG=/usr/bin/llvm-config-14 CLANG=/usr/bin/clang-14 \
   >"$build/configure.log" 2>&1) || { tail -30 "$build/configure.log" >&2; exit 1; }
# The server, its programs and contrib (auto_explain, pg_stat_statements, amcheck, ...): what a
# packaged server has. No documentation.
# Generated headers first: a parallel build once compiled src/common before utils/errcodes.h
# existed (seen in CI). A failed parallel make is retried once on one job before giving up.
make -s -C "$src/src/backend" generated-headers >>"$build/make.log" 2>&1 \
  || { tail -30 "$build/make.log" >&2; exit 1; }
for dir in "$src" "$src/contrib"; do
  make -s -C "$dir" -j"$(nproc)" >>"$build/make.log" 2>&1 \
    || make -s -C "$dir" >>"$build/make.log" 2>&1 || { tail -30 "$build/make.log" >&2; exit 1; }
  as_root make -s -C "$dir" install >>"$build/install.log" 2>&1 || { tail -30 "$build/install.log" >&2; exit 1; }
done
as_root chmod -R a+rX,go-w "$PREFIX"
echo "$FLAVOR" | as_root tee "$PREFIX/.pgclip-built" >/dev/null
log "installed $("$PREFIX/bin/pg_config" --version)"
echo "$PREFIX/bin/pg_config"
