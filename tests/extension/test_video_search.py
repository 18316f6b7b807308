"""clip_search_video (extension/sql/idempotent/090-video.sql) on planted-moment videos
(tests/videos.py): quality floors for text, photo and clip queries, agreement with an exact
search written in plain SQL over the frame and segment tables, per_video, time ranges,
filters, errors, and a view over the whole-video vectors. Run with ``-s`` to see the rates.

The 100 videos are made and embedded once for the module (the costly part, about a minute).
"""

from __future__ import annotations

import io
import random
import time

import av
import psycopg
import pytest

from pgclip import shapes
from tests import videos

TABLE = "vs_videos"
FRAMES, SEGMENTS = f"{TABLE}_video_frames", f"{TABLE}_video_segments"
N_VIDEOS = 100
SEARCH = ("SELECT row_key, start_s, end_s, best_s, distance FROM clip_search_video("
          "%(t)s, %(q)s, %(k)s, filter => %(filter)s, per_video => %(per)s, "
          "from_s => %(lo)s, to_s => %(hi)s)")

# The same search done by hand: every frame's distance (a sequential scan), the segment that
# holds it, each segment's best frame, each video's per_video best segments, best first.
EXACT = f"""
WITH f AS MATERIALIZED (
    SELECT f.id, f.t_s, (f.embedding <=> %(q)s::vector)::float8 AS d
      FROM {FRAMES} f JOIN {TABLE} t ON t.id = f.id
     WHERE (%(lo)s::float8 IS NULL OR f.t_s >= %(lo)s)
       AND (%(hi)s::float8 IS NULL OR f.t_s <= %(hi)s) AND ({{filter}})
), m AS (
    SELECT DISTINCT ON (f.id, s.start_s) f.id, s.start_s, s.end_s, f.t_s, f.d
      FROM f JOIN {SEGMENTS} s ON s.id = f.id AND s.start_s <= f.t_s AND f.t_s < s.end_s
     ORDER BY f.id, s.start_s, f.d, f.t_s
)
SELECT id::text, start_s, end_s, t_s, d
  FROM (SELECT m.*, row_number() OVER (PARTITION BY m.id ORDER BY m.d, m.t_s) AS n FROM m) r
 WHERE n <= %(per)s ORDER BY d, t_s LIMIT %(k)s"""


@pytest.fixture(scope="module")
def planted() -> list[videos.PlantedVideo]:
    return videos.planted_videos(N_VIDEOS)


@pytest.fixture(scope="module")
def table(conn: psycopg.Connection, planted: list[videos.PlantedVideo]) -> str:
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, event text, video bytea)")
    conn.execute(f"SELECT clip_auto_embed('{TABLE}', 'video', 'video')")
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(
            f"COPY {TABLE} (id, event, video) FROM STDIN (FORMAT binary)") as copy:
        copy.set_types(["int8", "text", "bytea"])
        for i, p in enumerate(planted):
            copy.write_row((i, p.query, p.data))
    print(f"\n{N_VIDEOS} planted videos embedded by COPY in {time.perf_counter() - t0:.1f} s")
    conn.execute(f"ANALYZE {TABLE}, {FRAMES}, {SEGMENTS}")
    return TABLE


def search(conn: psycopg.Connection, query: str | bytes, k: int = 1, *, per: int = 1,
           lo: float | None = None, hi: float | None = None,
           filter: str | None = None) -> list[tuple]:
    # str goes as text, bytes as bytea: each picks its overload
    return conn.execute(SEARCH, {"t": TABLE, "q": query, "k": k, "per": per, "lo": lo, "hi": hi,
                                 "filter": filter}).fetchall()


def exact(conn: psycopg.Connection, qvec: str, k: int, *, per: int = 1,
          lo: float | None = None, hi: float | None = None, filter: str = "true") -> list[tuple]:
    with conn.transaction():
        for s in ("enable_indexscan", "enable_bitmapscan"):
            conn.execute(f"SET LOCAL {s} = off")
        return conn.execute(EXACT.format(filter=filter),
                            {"q": qvec, "k": k, "per": per, "lo": lo, "hi": hi}).fetchall()


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def event_clip(p: videos.PlantedVideo) -> bytes:
    """The event scene of a planted video, re-encoded as a video of its own."""
    frames = []
    with av.open(io.BytesIO(p.data)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            t = float((f.pts - (s.start_time or 0)) * s.time_base)
            if p.event_start_s - 1e-6 <= t < p.event_end_s - 1e-6:
                frames.append(f.to_image())
    return videos.encode(frames, [k / videos.PLANTED_FPS for k in range(len(frames))])


def test_planted_videos_are_all_embedded(conn, table, planted) -> None:
    counts = conn.execute(
        f"SELECT count(*), count(video_embedding), (SELECT count(*) FROM {FRAMES}), "
        f"(SELECT count(DISTINCT id) FROM {SEGMENTS}) FROM {TABLE}").fetchone()
    frames = sum(-(-round(p.duration_s * videos.PLANTED_FPS) // videos.PLANTED_FPS)
                 for p in planted)  # one a second
    assert counts == (N_VIDEOS, N_VIDEOS, frames, N_VIDEOS)
    assert conn.execute(f"SELECT count(*) FROM clip_queue WHERE table_oid = '{TABLE}'::regclass"
                        ).fetchone()[0] == 0


def test_text_queries_find_the_planted_moment(conn, table, planted) -> None:
    right = overlapping = 0
    misses, ious = [], []
    for i, p in enumerate(planted):
        key, start, end, best, _ = search(conn, p.query)[0]
        if key != str(i):
            misses.append((i, p.query, key))
            continue
        right += 1
        ious.append(iou((start, end), (p.event_start_s, p.event_end_s)))
        overlapping += ious[-1] >= 0.5
        assert start <= best <= end
    print(f"\ntext queries: right video first {right}/{len(planted)}, moment IoU >= 0.5 "
          f"{overlapping}/{len(planted)} (mean {sum(ious) / len(ious):.2f}); misses {misses[:5]}")
    assert right >= 0.95 * len(planted)
    assert overlapping >= 0.90 * len(planted)


def test_photo_queries_find_the_planted_video(conn, table, planted) -> None:
    """A new drawing of the event's shape (elsewhere in the picture). pgclip-tiny tells a
    small shape from its siblings (same colour and background, other size or shape) less well
    than text does: frame by frame, in-process, it finds the right video first for 82-89% of
    such photos (over 3 seeds); the search must do as well as the exact one."""
    right = top5 = 0
    for i, p in enumerate(planted):
        photo = videos.png_bytes(shapes.render(p.event, random.Random(7000 + i), 96))
        rows = search(conn, photo, 5)
        right += rows[0][0] == str(i)
        top5 += str(i) in [r[0] for r in rows]
        qvec = conn.execute("SELECT clip_embed_image(%s)::text", (photo,)).fetchone()[0]
        assert [r[:4] for r in rows] == [r[:4] for r in exact(conn, qvec, 5)]
    print(f"\nphoto queries: right video first {right}/{len(planted)}, in the top 5 {top5}")
    assert right >= 0.80 * len(planted)
    assert top5 >= 0.95 * len(planted)


def test_clip_queries_find_the_planted_video(conn, table, planted) -> None:
    chosen = range(0, len(planted), 5)
    got = [search(conn, event_clip(planted[i]))[0] for i in chosen]
    assert [r[0] for r in got] == [str(i) for i in chosen]
    for i, (_, start, end, _, distance) in zip(chosen, got, strict=True):
        p = planted[i]
        assert iou((start, end), (p.event_start_s, p.event_end_s)) >= 0.5
        assert distance < 0.05  # the clip is that moment's frames, re-encoded


@pytest.mark.parametrize("case", ["all", "range", "range+filter"])
def test_results_equal_an_exact_search(conn, table, planted, case) -> None:
    lo, hi = (2.0, 9.0) if case != "all" else (None, None)
    filt = "t.event LIKE '%circle%' OR t.id % 3 = 0" if case == "range+filter" else None
    queries = [planted[3].query, planted[50].query, "a small red cross on a gray background"]
    checked = 0
    for q in queries:
        qvec = conn.execute("SELECT clip_embed_text(%s)::text", (q,)).fetchone()[0]
        for per in (1, 2):
            for k in range(1, 11):
                got = search(conn, q, k, per=per, lo=lo, hi=hi, filter=filt)
                want = exact(conn, qvec, k, per=per, lo=lo, hi=hi,
                             filter=(filt or "true").replace("%", "%%"))
                assert len(got) == len(want) == k
                assert [r[:4] for r in got] == [r[:4] for r in want], (q, per, k)
                assert max(abs(a[4] - b[4]) for a, b in zip(got, want, strict=True)) < 1e-6
                checked += 1
    assert checked == 60


def test_per_video_gives_distinct_segments(conn, table) -> None:
    rows = search(conn, "a large blue circle on a white background", 60, per=3)
    assert len(rows) == 60
    by_video: dict[str, list[tuple]] = {}
    for key, start, end, best, _ in rows:
        by_video.setdefault(key, []).append((start, end, best))
    assert max(len(m) for m in by_video.values()) <= 3
    assert any(len(m) > 1 for m in by_video.values())
    for moments in by_video.values():
        spans = sorted((s, e) for s, e, _ in moments)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # disjoint
        assert all(s <= b <= e for s, e, b in moments)
    assert [r[4] for r in rows] == sorted(r[4] for r in rows)


def test_time_range_restricts_the_best_frame(conn, table) -> None:
    rows = search(conn, "a small green square on a black background", 30, lo=4.0, hi=6.5)
    assert len(rows) == 30 and all(4.0 <= r[3] <= 6.5 for r in rows)
    assert search(conn, "a small green square", 5, lo=100.0, hi=200.0) == []


def test_filter_restricts_the_videos(conn, table, planted) -> None:
    rows = search(conn, "a large red circle", 20, filter="t.event LIKE '%circle%'")
    circles = {str(i) for i, p in enumerate(planted) if p.event.shape == "circle"}
    assert rows and {r[0] for r in rows} <= circles
    assert len(rows) == min(20, len(circles))


def test_filter_may_name_key_columns_unqualified(conn, table, planted) -> None:
    """As for clip_search_text, a filter is a predicate over the table's columns: a key
    column needs no alias, although the frame table has a column of the same name."""
    rows = search(conn, "a large red circle", 10, filter="id % 2 = 0 AND event LIKE '%circle%'")
    wanted = {str(i) for i, p in enumerate(planted) if i % 2 == 0 and p.event.shape == "circle"}
    assert rows and {r[0] for r in rows} <= wanted


def test_k_above_the_number_of_videos_returns_them_all(conn, table) -> None:
    rows = search(conn, "a purple diamond", 3 * N_VIDEOS)
    assert sorted(int(r[0]) for r in rows) == list(range(N_VIDEOS))
    more = search(conn, "a purple diamond", 10_000, per=100)
    segments = conn.execute(f"SELECT count(*) FROM {SEGMENTS}").fetchone()[0]
    assert len(more) == segments


def test_errors(conn, table) -> None:
    conn.execute("DROP TABLE IF EXISTS vs_photos")
    conn.execute("CREATE TABLE vs_photos (id bigint PRIMARY KEY, image bytea)")
    conn.execute("SELECT clip_auto_embed('vs_photos', 'image', 'image')")
    with pytest.raises(psycopg.errors.DatatypeMismatch) as e:
        conn.execute("SELECT * FROM clip_search_video('vs_photos', 'a red circle')")
    assert e.value.diag.message_primary.startswith("pgclip:")
    assert "clip_search_image" in (e.value.diag.message_hint or "")
    for bad in ({"k": 0}, {"per": 0}, {"lo": 5.0, "hi": 4.0}):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            search(conn, "a red circle", **bad)
        assert e.value.diag.message_hint
    for junk in (b"neither an image nor a video", b"\x00" * 64, b""):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            search(conn, junk)
    conn.execute("DROP TABLE vs_photos")


def test_a_view_of_similar_videos(conn, table) -> None:
    """A view a BI tool can read: each video's three nearest other videos, as a whole."""
    conn.execute(f"""
        CREATE OR REPLACE VIEW vs_videos_like_this AS
        SELECT v.id, n.id AS neighbour, n.distance
          FROM {TABLE} v CROSS JOIN LATERAL (
               SELECT o.id, o.video_embedding <=> v.video_embedding AS distance
                 FROM {TABLE} o WHERE o.id <> v.id
                ORDER BY o.video_embedding <=> v.video_embedding LIMIT 3) n""")
    rows = conn.execute("SELECT id, neighbour, distance FROM vs_videos_like_this "
                        "ORDER BY id, distance").fetchall()
    assert len(rows) == 3 * N_VIDEOS
    by_id: dict[int, list[float]] = {}
    for vid, other, d in rows:
        assert vid != other and 0.0 <= d <= 2.0
        by_id.setdefault(vid, []).append(d)
    assert all(len(d) == 3 and d == sorted(d) for d in by_id.values())
    conn.execute("DROP VIEW vs_videos_like_this")
