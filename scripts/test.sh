#!/usr/bin/env bash
# Run pytest as the postgres OS user (the tests start their own PostgreSQL clusters, and
# PostgreSQL refuses to run as root). Arguments go to pytest; default: the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGCLIP_VENV:-$(pwd)/.venv}
# The server the tests start: PG_CONFIG's (make test PG=18 sets it), else pg_config's.
export PG_CONFIG=${PG_CONFIG:-pg_config}
args=("$@"); [ ${#args[@]} -gt 0 ] || args=(tests)
# MKL_CBWR: as a backend sets it (pgclip.runtime), for the tests that load models in-process.
cmd=(env PYTHONDONTWRITEBYTECODE=1 MKL_CBWR=${MKL_CBWR:-AUTO,STRICT} HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} PG_CONFIG="$PG_CONFIG" PATH="$($PG_CONFIG --bindir):$PATH" HOME=/tmp
     "$VENV/bin/python" -m pytest -p no:cacheprovider "${args[@]}")
if [ "$(id -u)" = 0 ]; then
  # tests/scripts/test_grant_postgres_access.py checks, as postgres, clones in a private folder
  # that only root can set up: set them up here (under a second) and remove them afterwards.
  clones=$(bash tests/scripts/private_clones.sh "$VENV")
  trap 'rm -rf "$clones"' EXIT
  rc=0
  runuser -u postgres -- env PGCLIP_PRIVATE_CLONES="$clones" "${cmd[@]}" || rc=$?
  exit $rc
fi
exec "${cmd[@]}"
