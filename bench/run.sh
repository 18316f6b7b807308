#!/usr/bin/env bash
# `make bench`: start (or reuse) the embedded cluster with pgclip installed, then run every
# case and write bench/results/latest.{json,md}. Arguments go to `python -m bench`, e.g.
#   bash bench/run.sh --cases search --search-sizes 100000,1000000 --name search-1m
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGCLIP_VENV:-$(pwd)/.venv}
make -s start >/dev/null
exec env HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
  "$VENV/bin/python" -m bench "$@"
