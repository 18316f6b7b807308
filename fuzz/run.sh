#!/usr/bin/env bash
# `make fuzz`: fuzz pgclip's image decoding and preprocessing with atheris for FUZZ_SECONDS.
# Settings (environment): FUZZ_SECONDS (60), FUZZ_DIR (a new temporary folder: the working
# corpus and any crash-*/timeout-*/oom-* files), FUZZ_RSS_MB (1536), FUZZ_TIMEOUT_S (10),
# FUZZ_JOBS (1), FUZZ_ARGS (more libFuzzer flags). Exit status: 0 when nothing was found.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGCLIP_VENV:-$(pwd)/.venv}
PY=$VENV/bin/python
SECONDS_=${FUZZ_SECONDS:-60}
DIR=${FUZZ_DIR:-$(mktemp -d /tmp/pgclip-fuzz.XXXXXX)}

if ! "$PY" -c "import atheris" 2>/dev/null; then
  echo "[fuzz] atheris is not installed in $VENV; installing it (pip install atheris)" >&2
  if ! "$PY" -m pip install --quiet atheris; then
    cat >&2 <<MSG
[fuzz] ERROR: could not install atheris into $VENV.
[fuzz] atheris ships manylinux wheels for CPython 3.8-3.11 on x86_64; elsewhere it builds
[fuzz] from source and needs clang with libFuzzer (e.g. apt-get install clang), then
[fuzz]   CLANG_BIN=\$(which clang) $PY -m pip install atheris
MSG
    exit 2
  fi
fi

# libtiff and Pillow report every corrupt file on stderr; those lines are not findings.
NOISE='UserWarning|warnings\.warn|^tempfile\.tif: |^_?(TIFF|LZW|ZIP|OJPEG|JPEG)[A-Za-z]*: |^More samples per pixel'
JOBS=""
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then JOBS="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS"; fi

mkdir -p "$DIR/corpus" "$DIR/seeds" "$DIR/artifacts"
PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 "$PY" fuzz/fuzz_images.py --write-seeds "$DIR/seeds"
echo "[fuzz] ${SECONDS_}s of fuzzing; corpus and findings under $DIR" >&2
set +e
PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 "$PY" fuzz/fuzz_images.py \
  -max_total_time="$SECONDS_" -timeout="${FUZZ_TIMEOUT_S:-10}" \
  -rss_limit_mb="${FUZZ_RSS_MB:-1536}" -malloc_limit_mb="${FUZZ_RSS_MB:-1536}" \
  -max_len=262144 -print_final_stats=1 $JOBS \
  -artifact_prefix="$DIR/artifacts/" ${FUZZ_ARGS:-} "$DIR/corpus" "$DIR/seeds" \
  2> >(grep --line-buffered -v -E "$NOISE" >&2)
status=$?
set -e
found=$(find "$DIR/artifacts" -type f | wc -l)
echo "[fuzz] exit status $status; $found finding(s) in $DIR/artifacts" >&2
if [ "$found" -gt 0 ]; then
  ls -l "$DIR/artifacts" >&2
  echo "[fuzz] reproduce one with: $PY fuzz/fuzz_images.py FILE" >&2
  exit 1
fi
exit "$status"
