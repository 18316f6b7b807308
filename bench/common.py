"""What the benchmark cases share: paths, the machine's description, statistics, the
random-weights checkpoint, test data, and talking to the backends."""

from __future__ import annotations

import glob
import io
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "plpython"
STATE = ROOT / ".pgclip" / "bench"  # outside git (.pgclip/ is ignored); readable by postgres
VIT = "ViT-B-32"
VIT_CHECKPOINT = STATE / "ViT-B-32-random.safetensors"
TINY = "pgclip-tiny"
BENCH_DB = "pgclip_bench"

sys.path.insert(0, str(PACKAGE_DIR))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- statistics -----------------------------------------------------------------------------

def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return float(s[k])


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# --- the machine ----------------------------------------------------------------------------

def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return round(int(m.group(1)) / 1024**2, 1) if m else float("nan")


def cpu_steal_fraction(sample_s: float = 1.0) -> float:
    """Share of CPU time the hypervisor gave to others during a short sample."""
    def read() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    a = read()
    time.sleep(sample_s)
    b = read()
    d = [y - x for x, y in zip(a, b, strict=True)]
    return round(d[7] / sum(d), 4) if sum(d) and len(d) > 7 else 0.0


def machine(conn: psycopg.Connection) -> dict[str, Any]:
    import open_clip
    import torch

    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_features": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8")
                         if re.search(rf"\b{f}\b", flags)],
        "ram_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_build": f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only",
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "open_clip": open_clip.__version__,
        "postgres": conn.execute("SHOW server_version").fetchone()[0],
        "pgvector": conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0],
        "pgclip": conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'pgclip'").fetchone()[0],
        # Search latency at scale depends on whether the index fits in these.
        "shared_buffers": conn.execute("SHOW shared_buffers").fetchone()[0],
        "effective_cache_size": conn.execute("SHOW effective_cache_size").fetchone()[0],
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "cpu_steal_at_start": cpu_steal_fraction(),
    }


# --- the random-weights ViT-B-32 checkpoint -------------------------------------------------

def ensure_checkpoint() -> Path:
    """A ViT-B-32 checkpoint of random weights (speed does not depend on the weights),
    written once as safetensors so that pgclip loads it through its normal path."""
    if VIT_CHECKPOINT.is_file():
        if VIT_CHECKPOINT.stat().st_mode & 0o044 != 0o044 and os.access(VIT_CHECKPOINT, os.W_OK):
            os.chmod(VIT_CHECKPOINT, 0o644)  # the server's OS user must read it
        return VIT_CHECKPOINT
    import open_clip
    import torch
    from safetensors.torch import save_file

    log(f"writing {VIT_CHECKPOINT} (random weights, once)")
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o755)
    torch.manual_seed(0)
    model = open_clip.create_model(VIT, pretrained=None)
    tmp = VIT_CHECKPOINT.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, VIT_CHECKPOINT)  # never rewrite a checkpoint in place: backends map it
    return VIT_CHECKPOINT


def model_settings(model: str) -> dict[str, str]:
    return {"pgclip.model": model,
            "pgclip.pretrained": str(VIT_CHECKPOINT) if model == VIT else ""}


# --- test data ------------------------------------------------------------------------------

def images(n: int, seed: int = 1, pixels: int = 256) -> list[bytes]:
    """JPEG files of synthetic shapes (decoding is part of the measured work)."""
    from pgclip import shapes

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        img = shapes.render(shapes.random_spec(rng), rng, pixels=pixels)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


_ADJ = ("red", "small", "shiny", "old", "wooden", "striped", "blurry", "bright", "tiny", "huge")
_NOUN = ("cat", "bicycle", "lighthouse", "teapot", "mountain", "guitar", "sailboat", "robot")
_PLACE = ("on a beach", "in a kitchen", "at night", "under the rain", "in a museum", "on a desk")


def texts(n: int, tag: str) -> list[str]:
    """Distinct captions (``tag`` keeps sets apart, so no text repeats across sets)."""
    rng = random.Random(tag)
    return [f"a photo of a {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_PLACE)}, "
            f"item {tag}-{i}" for i in range(n)]


# --- the database ---------------------------------------------------------------------------

def standalone(name: str, out: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """A case run on its own (python -m bench.<case>): its report on stdout, its numbers in
    .pgclip/bench/<name>-last.json."""
    print(markdown(out))
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / f"{name}-last.json").write_text(json.dumps(out, indent=1))


def cluster_url() -> str:
    return subprocess.check_output(["bash", str(ROOT / "scripts" / "cluster.sh"), "url"],
                                   text=True).strip()


def db_url(base: str, dbname: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + dbname


def recreate_db(base_url: str, keep: bool = False, name: str = BENCH_DB) -> str:
    """A fresh database ``name`` with pgclip (``keep``: the existing one, when there is one).
    Cases that must not share `make bench`'s database (it may be in use) pass their own."""
    with psycopg.connect(base_url, autocommit=True) as c:
        exists = c.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                           (name,)).fetchone()[0]
        if exists and not keep:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")
        if not exists or not keep:
            c.execute(f"CREATE DATABASE {name}")
    url = db_url(base_url, name)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pgclip CASCADE")
    return url


def connect(url: str, model: str | None = None, **settings: str) -> psycopg.Connection:
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=True)
    register_vector(conn)
    # JIT's LLVM and torch must not share a backend (pgclip refuses); JIT would also add its
    # compile time to the exact scans.
    conn.execute("SET jit = off")
    for name, value in {**(model_settings(model) if model else {}), **settings}.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


def _site_packages() -> str:
    found = sorted(glob.glob(str(ROOT / ".venv" / "lib" / "python3*" / "site-packages")))
    return found[-1] if found else ""


# A DO block has no prelude: put the package and the venv on sys.path as the extension does.
_PATHS = (f"import sys\nsys.path[:0] = [p for p in ({str(PACKAGE_DIR)!r}, "
          f"{_site_packages()!r}) if p not in sys.path]\n")


def backend_python(conn: psycopg.Connection, code: str) -> Any:
    """Run ``code`` inside the connection's backend (PL/Python); it sets ``result``, which
    comes back through a NOTICE as JSON."""
    body = _PATHS + "import json\nresult = None\n" + code + \
        "\nplpy.notice('BENCH ' + json.dumps(result))\n"
    notices: list[str] = []

    def handler(diag: psycopg.errors.Diagnostic) -> None:
        if (diag.message_primary or "").startswith("BENCH "):
            notices.append(diag.message_primary[6:])

    conn.add_notice_handler(handler)
    try:
        conn.execute("DO $bench$\n" + body + "\n$bench$ LANGUAGE plpython3u")
    finally:
        conn.remove_notice_handler(handler)
    return json.loads(notices[-1])


def backend_cpu(conn: psycopg.Connection) -> float:
    """CPU seconds the backend process has used (all its threads)."""
    return float(backend_python(conn, "import time\nresult = time.process_time()"))


def backend_stats(conn: psycopg.Connection) -> dict[str, Any]:
    return backend_python(
        conn, "from pgclip.sql_api import stats\nresult = stats.backend_stats()")


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """kB fields of /proc/<pid>/smaps_rollup as MiB-free integers in kB."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+) kB", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def backend_memory(conn: psycopg.Connection) -> dict[str, int]:
    """The backend reads its own smaps_rollup (no need to run as root or postgres)."""
    return parse_smaps_rollup(backend_python(
        conn, "result = open('/proc/self/smaps_rollup').read()"))


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    t0 = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - t0
    end.append(time.perf_counter())


# --- the plain-Python worker ------------------------------------------------------------------

class RawWorker:
    """A plain Python process (bench/raw.py) driven over stdin/stdout, one JSON per line."""

    def __init__(self, **extra_env: str | None) -> None:
        """``extra_env``: variables for the worker; None removes one."""
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{PACKAGE_DIR}",
               "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        for name, value in extra_env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.raw"], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1)
        self.pid = self.proc.pid

    def call(self, cmd: str, **args: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.raw worker {self.pid} died during {cmd}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"bench.raw {cmd}: {reply['error']}")
        return reply

    def memory(self) -> dict[str, int]:
        return parse_smaps_rollup(Path(f"/proc/{self.pid}/smaps_rollup").read_text())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            self.proc.wait(timeout=30)

    def __enter__(self) -> RawWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
