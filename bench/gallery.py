"""Case gallery: the gallery page's timings (gallery/pgclip_gallery) over HTTP, on the demo data
and on generated photos (10,000 by default), side by side in one run.

Each dataset is in its own database and read by the page's own role (``pgclip_gallery``:
pgclip's functions and SELECT, nothing else), through the real server (waitress,
``create_app(dsn, pool_size=2)``) in a thread of this process; the client is urllib, one
request at a time.

- demo: ``pgclip_gallery.demo.load_missing`` (the album, the shop and the videos of
  sql/examples) and ``grant_role``, as `make gallery` does;
- photos: ``gallery_photos (id, file_name, image)``, PNGs of generated shapes (128 px, like the
  demo's), auto-embedded by pgclip-tiny (``clip_auto_embed``: triggers and HNSW index) as
  they are COPY'd in chunks, then tagged (``clip_tagging_enable``, the demo album's
  vocabulary). Loading and tagging are timed.

Per dataset: the first request of a fresh server (its backend loads the model), one warm-up
request per page, then ``reps`` repetitions of every page, interleaved (each repetition starts
at another page). Wall ms as the client sees it and the page's own ``Server-Timing: app``;
median and p95. Pages that read the whole table (duplicate groups) run once. No assertions on
timings: the ratios photos / demo are the result.

    bash scripts/cluster.sh start && .venv/bin/python -m bench.gallery
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    ROOT,
    STATE,
    TINY,
    cluster_url,
    connect,
    log,
    median,
    percentile,
    recreate_db,
    standalone,
)
from pgclip import shapes

sys.path.insert(0, str(ROOT / "gallery"))  # the gallery is run from the checkout, not installed

from pgclip_gallery import demo  # noqa: E402
from pgclip_gallery.app import create_app  # noqa: E402

from tests.helpers import generated  # noqa: E402

DEMO_DB = "pgclip_bench_gallery"
PHOTOS_DB = "pgclip_bench_gallery_photos"
TABLE = "gallery_photos"
CHUNK = 500  # rows per COPY: one statement, which the trigger embeds in pgclip.batch_size batches
SEED = 2026
QUERIES = ("a red circle", "a blue square", "a green triangle", "a yellow cross")
MODIFIERS = ("in blue", "a circle", "on a black background", "in red")
SHOP_QUERIES = ("red circle", "a large blue mug", "green", "small yellow")
PHOTO_KEYS = 6  # photo pages cycle through this many rows
UPLOADS = 4  # generated PNGs, none of them in a table
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    status: int
    wall_ms: float
    app_ms: float  # Server-Timing app;dur (NaN when missing)
    size: int
    text: str
    etag: str = ""


@dataclass(frozen=True)
class Dataset:
    label: str
    admin_url: str
    role_dsn: str
    table: str  # how the page names it: schema.table
    keys: list[str]  # every row's key, in id order
    shop: bool  # the demo's products and videos are there
    load: dict[str, Any]


# --- HTTP --------------------------------------------------------------------------------------

def fetch(base: str, req: Request) -> Reply:
    """One request, timed; error statuses come back as replies, not exceptions."""
    r = urllib.request.Request(base + req.path, data=req.body, headers=req.headers,
                               method="GET" if req.body is None else "POST")
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(r, timeout=TIMEOUT_S) as resp:
            body, status, headers = resp.read(), resp.status, resp.headers
    except urllib.error.HTTPError as e:  # 304 and 4xx/5xx
        body, status, headers = e.read(), e.code, e.headers
    wall = (time.perf_counter() - t) * 1000.0
    m = re.search(r"app;dur=([0-9.]+)", headers.get("Server-Timing", ""))
    text = body.decode("utf-8", "replace") if "text/" in headers.get("Content-Type", "") else ""
    return Reply(status, wall, float(m.group(1)) if m else math.nan, len(body), text,
                 headers.get("ETag", "").strip('"'))


def multipart(photo: bytes, **fields: str) -> tuple[bytes, dict[str, str]]:
    """A form as a browser posts it: ``fields`` and the file ``photo``."""
    boundary = f"pgclip-bench-{uuid.uuid4().hex}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
                 f'filename="upload.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
                 + photo + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _query(**params: Any) -> str:
    return urllib.parse.urlencode(params)


def page_error(reply: Reply) -> str:
    m = re.search(r'id="error" role="alert">([^<]*)<', reply.text)
    return m.group(1) if m else reply.text[:200]


@contextmanager
def serving(dsn: str) -> Iterator[str]:
    """The page behind waitress on a free port, as `python -m pgclip_gallery` serves it."""
    import waitress

    logging.getLogger("waitress").setLevel(logging.WARNING)
    app = create_app(dsn, pool_size=2)
    srv = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.effective_port}"
    finally:
        srv.task_dispatcher.shutdown()  # the last response out before the sockets close
        srv.close()
        app.extensions["pgclip_gallery"].pool.close()


# --- the datasets ------------------------------------------------------------------------------

def _psql() -> str:
    pg_config = os.environ.get("PG_CONFIG", "pg_config")
    return str(Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip()) / "psql")


def _keys(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as c:
        return [str(r[0]) for r in c.execute(f"SELECT id FROM {table} ORDER BY id")]


def _sizes(url: str, table: str) -> dict[str, float]:
    """MiB of the table (with TOAST) and of its indexes."""
    with psycopg.connect(url) as c:
        heap, idx = c.execute("SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
                              (table, table)).fetchone()
    return {"table_mib": heap / 2**20, "indexes_mib": idx / 2**20}


def demo_dataset(base_url: str) -> Dataset:
    url = recreate_db(base_url, name=DEMO_DB)
    t = time.perf_counter()
    loaded = demo.load_missing(url, STATE / "gallery-samples", _psql())
    load_s = time.perf_counter() - t
    keys = _keys(url, "album_photos")
    log(f"gallery: demo loaded in {load_s:.1f} s ({', '.join(loaded)}; {len(keys)} photos)")
    return Dataset("demo", url, demo.grant_role(url), "public.album_photos", keys, True,
                   {"tables": loaded, "photos": len(keys), "load_seconds": load_s,
                    **_sizes(url, "album_photos")})


def _copy_photos(conn: psycopg.Connection, photos: list[tuple[str, bytes]]) -> float:
    """COPY in chunks (each chunk one statement, embedded by the trigger); seconds."""
    t0 = time.perf_counter()
    next_log = t0 + 15.0
    for start in range(0, len(photos), CHUNK):
        with conn.cursor().copy(f"COPY {TABLE} (file_name, image) FROM STDIN") as cp:
            for row in photos[start:start + CHUNK]:
                cp.write_row(row)
        done, now = min(len(photos), start + CHUNK), time.perf_counter()
        if now >= next_log or done == len(photos):
            log(f"gallery: {done:,}/{len(photos):,} photos embedded "
                f"({done / (now - t0):.0f}/s)")
            next_log = now + 15.0
    return time.perf_counter() - t0


def photos_dataset(base_url: str, n: int, seed: int = SEED) -> Dataset:
    url = recreate_db(base_url, name=PHOTOS_DB)
    t = time.perf_counter()
    photos = [(f"{s.color}_{s.shape}_{i:05d}.png", data)
              for i, (s, data) in enumerate(generated(n, seed, pixels=(128, 128)))]
    gen_s = time.perf_counter() - t
    log(f"gallery: {n:,} PNGs generated in {gen_s:.1f} s "
        f"({sum(len(d) for _, d in photos) / 2**20:.1f} MiB)")
    with connect(url, TINY) as conn:
        # As the demo does: the database's sessions (the page's too) default to the test model.
        conn.execute(f"ALTER DATABASE {PHOTOS_DB} SET pgclip.model = '{TINY}'")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY "
                     "KEY, file_name text NOT NULL, image bytea)")
        vec = conn.execute("SELECT clip_auto_embed(%s, 'image', 'image')",
                           (TABLE,)).fetchone()[0]
        conn.execute("SELECT clip_embed_text('warm-up')")  # the model's load is not the COPY's
        embed_s = _copy_photos(conn, photos)
        embedded = conn.execute(f"SELECT count({vec}) FROM {TABLE}").fetchone()[0]
        if embedded != n:
            raise RuntimeError(f"{embedded} of {n} photos have a vector")
        conn.execute("DELETE FROM clip_tag_vocabulary WHERE vocabulary = 'gallery'")
        conn.execute("INSERT INTO clip_tag_vocabulary (vocabulary, tag, prompt) "
                     "SELECT 'gallery', c, c || ' object' FROM unnest(%s::text[]) c UNION ALL "
                     "SELECT 'gallery', s, NULL FROM unnest(%s::text[]) s",
                     (list(shapes.COLORS), list(shapes.SHAPES)))
        t = time.perf_counter()
        conn.execute("SELECT clip_tagging_enable(%s, %s, 'tags', vocabulary => 'gallery', "
                     "top_k => 2, threshold => 0.1)", (TABLE, vec))
        tag_s = time.perf_counter() - t
        conn.execute(f"ANALYZE {TABLE}")
    log(f"gallery: {n:,} photos embedded in {embed_s:.1f} s, tagged in {tag_s:.1f} s")
    return Dataset("photos", url, demo.grant_role(url, demo.ROLE, [TABLE]), f"public.{TABLE}",
                   _keys(url, TABLE), False,
                   {"photos": n, "pixels": 128, "format": "PNG", "generate_seconds": gen_s,
                    "copy_chunk_rows": CHUNK, "embed_seconds": embed_s,
                    "embed_per_second": n / embed_s, "tag_seconds": tag_s,
                    "tags_per_second": n / tag_s, **_sizes(url, TABLE)})


# --- the pages ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    request: Callable[[int], Request]  # repetition (negative: a warm-up) -> the request
    warmups: int = 1  # the variants it cycles through whose text the backend caches


def pages(ds: Dataset, uploads: list[bytes], reps: int, etag: str) -> dict[str, Page]:
    """Every measured page; a repetition's request differs where a cache would hide the work
    (a new text, a thumbnail not made yet). Texts a page repeats are warmed up, all of them:
    the backend's query cache keeps their vectors, as it would for popular searches."""
    t = ds.table
    keys = ds.keys[:PHOTO_KEYS]
    hit_key = ds.keys[-1]
    miss_keys = ds.keys[PHOTO_KEYS:PHOTO_KEYS + reps + 1]  # one each, the warm-up's too
    if len(miss_keys) < reps + 1:
        raise ValueError(f"{ds.label}: {len(ds.keys)} photos are too few for {reps} repetitions")
    nq = len(QUERIES)

    def form(i: int, **fields: str) -> Request:
        body, headers = multipart(uploads[i % len(uploads)], t=t, **fields)
        return Request("/search/photo", body, headers)

    out = {
        "text search": Page(lambda i: Request("/?" + _query(q=QUERIES[i % nq], t=t)), nq),
        "text search, new text": Page(lambda i: Request(
            "/?" + _query(q=f"{QUERIES[i % nq]}, photo {i + 2}", t=t))),
        "photo page": Page(lambda i: Request("/photo?" + _query(key=keys[i % len(keys)], t=t))),
        "upload search": Page(form),
        "upload + text": Page(lambda i: form(i, modifier=MODIFIERS[i % len(MODIFIERS)]),
                              len(MODIFIERS)),
        "thumbnail, miss": Page(lambda i: Request("/thumb?" + _query(key=miss_keys[i + 1],
                                                                     t=t))),
        "thumbnail, cached": Page(lambda i: Request("/thumb?" + _query(key=hit_key, t=t))),
        "thumbnail, 304": Page(lambda i: Request("/thumb?" + _query(key=hit_key, t=t),
                                                 headers={"If-None-Match": f'"{etag}"'})),
        "tags": Page(lambda i: Request("/tags?" + _query(t=t, tag="red"))),
        "status": Page(lambda i: Request("/status")),
    }
    if ds.shop:
        out["shop search"] = Page(lambda i: Request(
            "/shop?" + _query(q=SHOP_QUERIES[i % len(SHOP_QUERIES)])), len(SHOP_QUERIES))
        out["video search"] = Page(lambda i: Request("/videos?" + _query(q=QUERIES[i % nq])),
                                   nq)
    return out


EXPECTED = {"thumbnail, 304": 304}
ONCE = {"duplicate groups": "/duplicates?{}"}  # reads every row: once per dataset


def _summary(replies: list[Reply]) -> dict[str, Any]:
    wall = [r.wall_ms for r in replies]
    app = [r.app_ms for r in replies if not math.isnan(r.app_ms)]
    statuses: dict[str, int] = {}
    for r in replies:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    return {"n": len(replies), "median_ms": median(wall), "p95_ms": percentile(wall, 95),
            "app_median_ms": median(app), "app_p95_ms": percentile(app, 95),
            "bytes_median": median([r.size for r in replies]), "statuses": statuses,
            "wall_ms": wall, "app_ms": [r.app_ms for r in replies]}


def _one(r: Reply) -> dict[str, Any]:
    return {"wall_ms": r.wall_ms, "app_ms": r.app_ms, "status": r.status, "bytes": r.size,
            "hits": r.text.count('class="hit"')}


def _backends(ds: Dataset) -> list[dict[str, Any]]:
    """The page's sessions in the database: how many, and which loaded a model."""
    with psycopg.connect(ds.admin_url) as c:
        rows = c.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE "
                         "application_name = 'pgclip-gallery' AND datname = current_database() "
                         "ORDER BY pid").fetchall()
    return [{"pid": pid, "backend_start": str(start)} for pid, start in rows]


def measure(ds: Dataset, uploads: list[bytes], reps: int) -> dict[str, Any]:
    errors: dict[str, str] = {}
    with serving(ds.role_dsn) as base:
        # The first request of the server: a pool connection, the catalog, the model's load.
        cold = fetch(base, Request("/?" + _query(q="a photo", t=ds.table)))
        log(f"gallery {ds.label}: first request {cold.wall_ms:.0f} ms (status {cold.status})")
        # The thumbnail's ETag as the page gives it (a row version, opaque to clients).
        etag = fetch(base, Request("/thumb?" + _query(key=ds.keys[-1], t=ds.table))).etag
        todo = pages(ds, uploads, reps, etag)
        names = list(todo)
        first = {}
        for name in names:
            for i in range(-todo[name].warmups, 0):
                r = fetch(base, todo[name].request(i))
                first.setdefault(name, _one(r))
                if r.status != EXPECTED.get(name, 200):
                    errors.setdefault(name, f"{r.status}: {page_error(r)}")
        replies: dict[str, list[Reply]] = {n: [] for n in names}
        for i in range(reps):
            for name in names[i % len(names):] + names[:i % len(names)]:
                r = fetch(base, todo[name].request(i))
                replies[name].append(r)
                if r.status != EXPECTED.get(name, 200):
                    errors.setdefault(name, f"{r.status}: {page_error(r)}")
        once = {}
        for name, path in ONCE.items():
            r = fetch(base, Request(path.format(_query(t=ds.table))))
            shown = re.search(r'id="summary">([0-9]+) groups', r.text)
            once[name] = {**_one(r), "groups": int(shown.group(1)) if shown else -1}
            log(f"gallery {ds.label}: {name} {r.wall_ms:.0f} ms (status {r.status})")
        backends = _backends(ds)
    out = {"load": ds.load, "table": ds.table, "cold": _one(cold), "first": first,
           "pages": {n: _summary(rs) for n, rs in replies.items()}, "once": once,
           "backends": len(backends), "errors": errors}
    for name, s in out["pages"].items():
        log(f"gallery {ds.label}: {name}: median {s['median_ms']:.1f} ms, "
            f"p95 {s['p95_ms']:.1f} ms (app {s['app_median_ms']:.1f} ms)")
    return out


def upload_images(n: int = UPLOADS, seed: int = SEED + 1) -> list[bytes]:
    return [data for _, data in generated(n, seed, pixels=(128, 128))]


def _commit() -> str:
    """The checkout's commit, and whether gallery/ differs from it (the page is in flux)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = " (gallery/ modified)" if git("status", "--porcelain", "gallery").strip() else ""
    return git("rev-parse", "--short", "HEAD").strip() + dirty


def gallery_case(base_url: str, photos: int = 10_000, reps: int = 20) -> dict[str, Any]:
    """The benchmark case: both datasets, each in its own database, then their ratios."""
    t0 = time.perf_counter()
    uploads = upload_images()
    results = {}
    for build in (lambda: demo_dataset(base_url), lambda: photos_dataset(base_url, photos)):
        ds = build()
        results[ds.label] = measure(ds, uploads, reps)
    demo_pages, photo_pages = results["demo"]["pages"], results["photos"]["pages"]
    ratios = {name: {k: photo_pages[name][k] / demo_pages[name][k] if demo_pages[name][k]
                     else math.nan for k in ("median_ms", "p95_ms", "app_median_ms")}
              for name in photo_pages if name in demo_pages}
    return {"reps": reps, "photos": photos, "queries": list(QUERIES),
            "gallery_commit": _commit(),
            "modifiers": list(MODIFIERS), "datasets": results, "ratios": ratios,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    out = gallery_case(cluster_url(), args.photos, args.reps)
    from bench.report_gallery import markdown

    standalone("gallery", out, markdown)


if __name__ == "__main__":
    main()
