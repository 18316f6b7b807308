#!/usr/bin/env bash
# GPU check for a lent machine with no network (see README, Performance). Needs, under .gpu/:
# whl/ (open_clip_torch, ftfy, wcwidth, psycopg wheels for its python3) and src/ (PostgreSQL and
# pgvector source tarballs). 1) pgclip's batch path vs raw open_clip on the GPU; 2) PostgreSQL
# built from source with plpython3u for that python3, pgvector, pgclip: COPY through the
# trigger, one call per row and backfill, on the GPU. Results under $OUT.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G=$ROOT/.gpu
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
PY=$(command -v python3)
PREFIX=$($PY -c 'import sys; print(sys.prefix)')
echo "python3: $PY ($($PY -V)), prefix $PREFIX"
$PY -m pip install -q --no-index --no-deps "$G"/whl/*.whl || { echo "wheel install failed"; exit 1; }
CKPT=/tmp/vit-b-32-random.safetensors

# PostgreSQL build in the background while the package bench runs.
(
  set -e
  mkdir -p /tmp/build && cd /tmp/build
  tar xjf "$G"/src/postgresql-15_*.orig.tar.bz2
  cd postgresql-15*
  ./configure -q --prefix=/tmp/pg --with-python PYTHON="$PY" --without-readline --without-icu \
      --without-zlib >/tmp/build/configure.log 2>&1
  make -s -j12 >/tmp/build/make.log 2>&1 && make -s install >/dev/null 2>&1
  make -s -C src/pl/plpython install >/dev/null 2>&1 || true
  cd /tmp/build && tar xzf "$G"/src/pgvector_*.orig.tar.gz && cd pgvector-*
  make -s PG_CONFIG=/tmp/pg/bin/pg_config OPTFLAGS="" install >/tmp/build/pgvector.log 2>&1
  echo built > /tmp/build/done
) &
BUILD=$!

timeout 240 $PY "$ROOT/scripts/gpu_bench.py" "$OUT/gpu_package.json" --images 2048 --batch 256 \
  || echo "package bench failed"
chmod 644 "$CKPT" 2>/dev/null

wait $BUILD
if [ ! -f /tmp/build/done ]; then
  echo "PostgreSQL build failed"; tail -30 /tmp/build/configure.log /tmp/build/make.log; exit 0
fi
make -s -C "$ROOT/extension" install PG_CONFIG=/tmp/pg/bin/pg_config PGCLIP_VENV="$PREFIX" \
  PGCLIP_PACKAGE_DIR="$ROOT/plpython" PYTHON="$PY" >/dev/null || { echo "pgclip install failed"; exit 0; }
id pgrun >/dev/null 2>&1 || useradd -m pgrun
chmod -R a+rX "$ROOT" 2>/dev/null
rm -rf /tmp/pgdata; mkdir /tmp/pgdata; chown pgrun /tmp/pgdata
runuser -u pgrun -- /tmp/pg/bin/initdb -D /tmp/pgdata -A trust -U postgres >/dev/null
LIBDIR=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
runuser -u pgrun -- env LD_LIBRARY_PATH="$LIBDIR" /tmp/pg/bin/pg_ctl -D /tmp/pgdata -l /tmp/pglog \
  -o "-p 5499 -k /tmp -c shared_buffers=1GB" -w start || { tail -20 /tmp/pglog; exit 0; }
timeout 280 $PY "$ROOT/scripts/gpu_ingest.py" "host=/tmp port=5499 user=postgres dbname=postgres" \
  "$CKPT" "$OUT/gpu_ingest.json" --images 2048 --batch 256 || { echo "ingest failed"; tail -30 /tmp/pglog; }
cp /tmp/pglog "$OUT/pglog.txt" 2>/dev/null
