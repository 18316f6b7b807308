#!/usr/bin/env bash
# make gallery: the gallery page (gallery/) against the embedded cluster, or GALLERY_DB_URL.
#   gallery.sh setup [--test]   its pinned requirements into the venv (--test: Playwright too,
#                               and Debian's chromium for the browser tests)
#   gallery.sh serve            set up, load the demo data if missing, serve; URL printed last
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${PGCLIP_VENV:-$ROOT/.venv}
log() { printf '[gallery] %s\n' "$*"; }

setup() {
  local files=(gallery/requirements.txt) stamp="$VENV/.pgclip-gallery-requirements"
  if [ "${1:-}" = --test ]; then
    files+=(gallery/requirements-test.txt); stamp="$stamp-test"
    need=$(bash scripts/debian_packages.sh missing chromium)
    if [ -n "$need" ]; then log "installing Debian's chromium (the browser tests)"; bash scripts/debian_packages.sh install chromium; fi
  fi
  if ! cat "${files[@]}" | cmp -s - "$stamp"; then
    log "installing ${files[*]} into $VENV"
    args=(); for f in "${files[@]}"; do args+=(-r "$f"); done
    "$VENV/bin/pip" install -q --disable-pip-version-check "${args[@]}"
    cat "${files[@]}" > "$stamp"
  fi
}

case "${1:-}" in
  setup) shift; setup "$@" ;;
  serve)
    setup
    export PYTHONPATH="$ROOT/gallery:$ROOT/plpython${PYTHONPATH:+:$PYTHONPATH}"
    url=${GALLERY_DB_URL:-}
    if [ -z "$url" ]; then
      admin=$(bash scripts/cluster.sh url)
      PSQL="$(${PG_CONFIG:-pg_config} --bindir)/psql"
      # The demo data (first time) and the page's role, whose URL it prints.
      url=$("$VENV/bin/python" -m pgclip_gallery.demo --psql "$PSQL" "$admin")
    fi
    exec "$VENV/bin/python" -m pgclip_gallery --database-url "$url" \
      --host "${GALLERY_HOST:-127.0.0.1}" --port "${GALLERY_PORT:-8765}" ;;
  *) echo "usage: $0 setup [--test] | serve" >&2; exit 2 ;;
esac
