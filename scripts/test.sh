#!/usr/bin/env bash
# Run pytest as the postgres OS user (the tests start their own PostgreSQL clusters, and
# PostgreSQL refuses to run as root). Arguments go to pytest; default: the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGCLIP_VENV:-$(pwd)/.venv}
args=("$@"); [ ${#args[@]} -gt 0 ] || args=(tests)
cmd=(env PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} PATH="$(pg_config --bindir):$PATH" HOME=/tmp
     "$VENV/bin/python" -m pytest -p no:cacheprovider "${args[@]}")
if [ "$(id -u)" = 0 ]; then
  exec runuser -u postgres -- "${cmd[@]}"
fi
exec "${cmd[@]}"
