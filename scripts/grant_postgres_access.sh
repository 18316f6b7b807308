#!/usr/bin/env bash
# The postgres OS user runs the servers and the test suite, which import the pgclip package,
# the tests and the venv from the checkout: it must list and read the checkout and the venv,
# and traverse every folder above them (a clone in a mode-700 home folder, say). Run as root
# (setup.sh step 4, the tests); silent when there is nothing to do, logs each change.
# Usage: grant_postgres_access.sh [CHECKOUT [VENV]]  (defaults: this checkout, $PGCLIP_VENV)
set -euo pipefail
ROOT=$(cd "${1:-$(dirname "$0")/..}" && pwd)
VENV=${2:-${PGCLIP_VENV:-$ROOT/.venv}}
log() { printf '[setup] %s\n' "$*"; }
as_pg() { runuser -u postgres -- "$@"; }
[ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 || exit 0

# Traverse (x) only, and only on the folders above $1. Walk down from /, so that each check
# sees its parents already reachable: walking up, every folder below the first private one
# looks unreachable too, the checkout included, and an x-only entry there takes listing away.
traverse_to() {
  local d="" part parts
  IFS=/ read -ra parts <<<"$(dirname "$1")"
  for part in "${parts[@]}"; do
    [ -n "$part" ] || continue
    d=$d/$part
    if ! as_pg test -x "$d"; then
      log "granting the postgres user traverse permission on $d (ACL u:postgres:x)"
      setfacl -m u:postgres:x "$d"
    fi
  done
}

# Before 0.2.1 this step walked up and gave the checkout itself u:postgres:--x. A named-user
# entry replaces what postgres had through "other" (r-x), so postgres could enter the checkout
# but not list it, and Python's import system, which lists folders, could not find `tests`.
# Such an entry is removed where "other" grants r-x anyway (the state before that run), else
# widened to r-x. Only folders are looked at: the old step never touched files.
repair_traverse_only() {
  local d
  # getfacl writes a backslash as \\ and a control character as \ooo (octal) in "# file:".
  { find "$@" -xdev -type d -print0 | xargs -0 -r getfacl -s -p 2>/dev/null || true; } \
    | LC_ALL=C awk '
        function unquote(s,  out, c) {
          out = ""
          while (match(s, /\\([0-7][0-7][0-7]|\\)/)) {
            c = substr(s, RSTART + 1, 3)
            out = out substr(s, 1, RSTART - 1) (RLENGTH == 2 ? "\\" : sprintf("%c", substr(c, 1, 1) * 64 + substr(c, 2, 1) * 8 + substr(c, 3, 1)))
            s = substr(s, RSTART + RLENGTH)
          }
          return out s
        }
        /^# file: / { f = unquote(substr($0, 9)) }
        $0 == "user:postgres:--x" { print f }' \
    | while IFS= read -r d; do
        if [[ $(stat -c %A "$d") == *r?x ]]; then
          log "removing the traverse-only ACL entry u:postgres:--x from $d (other grants r-x)"
          setfacl -x u:postgres "$d"
        else
          log "widening the ACL entry u:postgres:--x on $d to r-x"
          setfacl -m u:postgres:rx "$d"
        fi
      done
}

traverse_to "$ROOT"
scan=("$ROOT")
if [ -d "$VENV" ]; then
  VENV=$(cd "$VENV" && pwd)
  traverse_to "$VENV"
  case "$VENV/" in "$ROOT"/*) ;; *) scan+=("$VENV") ;; esac
fi
repair_traverse_only "${scan[@]}"

as_pg test -r "$ROOT" -a -r "$ROOT/tests" -a -r "$ROOT/plpython/pgclip/__init__.py" \
  || { log "the postgres user cannot list or read $ROOT: fix permissions (umask 022 clone)"; exit 1; }
if [ -d "$VENV" ]; then
  as_pg test -r "$VENV" -a -x "$VENV/bin/python" \
    || { log "the postgres user cannot use the venv $VENV: fix permissions"; exit 1; }
fi
