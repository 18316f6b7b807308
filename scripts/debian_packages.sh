#!/usr/bin/env bash
# Debian package helpers shared by setup.sh, postgres.sh and build_pgvector.sh.
#   debian_packages.sh missing PKG...   prints the packages that are not installed
#   debian_packages.sh install PKG...   apt-get install (update first)
#   debian_packages.sh deb-src SUITE    adds a deb-src entry for SUITE on this machine's mirror
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

case "${1:-}" in
  missing)
    shift
    for p in "$@"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
    done ;;
  install)
    shift
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ;;
  deb-src)
    suite=${2:?suite}
    src=/etc/apt/sources.list.d/pgclip-$suite-src.sources
    [ -f "$src" ] && exit 0
    # Reuse the mirror this machine is already configured with.
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
    [ -n "$uri" ] || { echo "[setup] no Debian mirror configured" >&2; exit 1; }
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" "$suite" | as_root tee "$src" >/dev/null
    as_root apt-get update -qq ;;
  *) echo "usage: $0 missing|install|deb-src ..." >&2; exit 2 ;;
esac
