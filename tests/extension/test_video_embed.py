"""clip_embed_video and clip_video_frames (extension/sql/idempotent/090-video.sql) against a real
cluster: frame vectors equal clip_embed_image's and open_clip's for the same decoded frame, the
whole-video vector is their renormalised mean, frame times count from the stream's start and
follow the sampling rule, each video limit is an ERROR naming its setting, and the backend
outlives its decoder process (killed by a signal, a cancel or a statement_timeout).

Unit tests of the decoder process are in tests/plpython/test_video_sandbox.py.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import av
import numpy as np
import psycopg
import pytest
from PIL import Image

from tests import videos
from tests.helpers import pid, setting
from tests.plpython.test_video_sandbox import VFR_TIMES, clip, pyav_frames, sampled, vfr


@functools.cache
def long_video() -> bytes:
    """60 s at 30 fps, 160 x 160: embedding its frames at 30 fps takes this backend about 3 s
    (on 2 cores)."""
    return videos.encode(videos.changing_frames(30, 160, seed=7) * 60,
                         [i / 30 for i in range(1800)])


# Runs until stopped, even on a fast machine: the long video three times over (decoded by
# the same decoder process, one after the other).
LONG_STATEMENT = ("SELECT count(*) FROM unnest(ARRAY[%s, %s, %s]::bytea[]) AS v(video), "
                  "LATERAL clip_video_frames(v.video, 30)")


@functools.cache
def live_webm() -> bytes:
    """A WebM that declares no duration (as a live stream): 2 s at 10 fps."""
    return videos.encode(videos.changing_frames(20, 32, seed=6), [i / 10 for i in range(20)],
                         container="webm", codec="libvpx-vp9", container_options={"live": "1"})


def video_frames(conn: psycopg.Connection, data: bytes, fps: float
                 ) -> tuple[list[float], np.ndarray]:
    rows = conn.execute("SELECT t_s, embedding FROM clip_video_frames(%s, %s)",
                        (data, fps)).fetchall()
    return [r[0] for r in rows], np.stack([r[1].to_numpy() for r in rows])


def embed_video(conn: psycopg.Connection, data: bytes) -> np.ndarray:
    return conn.execute("SELECT clip_embed_video(%s)", (data,)).fetchone()[0].to_numpy()



def decoder_stats(conn: psycopg.Connection) -> dict:
    stats = conn.execute("SELECT clip_backend_stats()").fetchone()[0]
    return (stats if isinstance(stats, dict) else json.loads(stats))["video_decoder"]


def decoders(backend: int) -> list[int]:
    """The backend's decoder processes: its children running pgclip.video.child."""
    kids: list[int] = []
    for tid in os.listdir(f"/proc/{backend}/task"):
        try:
            with open(f"/proc/{backend}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
        except FileNotFoundError:  # the thread ended
            pass
    out = []
    for kid in kids:
        try:
            with open(f"/proc/{kid}/cmdline", "rb") as f:
                if b"pgclip.video import child" in f.read():
                    out.append(kid)
        except FileNotFoundError:
            pass
    return out



@contextmanager
def sql_error(conn: psycopg.Connection, sqlstate: str) -> Iterator[list]:
    """Expect an ERROR with this SQLSTATE and a HINT; yields a list that then holds its diag.
    Afterwards (enter it before `setting`) the same backend still embeds videos."""
    before = pid(conn)
    got: list = []
    with pytest.raises(psycopg.Error) as exc:
        yield got
    got.append(exc.value.diag)
    assert exc.value.diag.sqlstate == sqlstate, exc.value.diag.message_primary
    assert exc.value.diag.message_primary.startswith("pgclip: ")
    assert exc.value.diag.message_hint
    assert pid(conn) == before
    assert embed_video(conn, clip("mp4")).shape == (64,)


# ---------------------------------------------------------------- vectors

@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_frames_equal_clip_embed_image_and_open_clip(conn: psycopg.Connection, ref,
                                                     fmt: str) -> None:
    data = clip(fmt)
    times, got = video_frames(conn, data, 2.0)
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=1e-6)
    decoded = pyav_frames(data)
    rgb = [decoded[round(t, 6)] for t in times]
    pngs = [videos.png_bytes(a) for a in rgb]
    as_images = np.stack([r[0].to_numpy() for r in conn.execute(
        "SELECT clip_embed_image(p) FROM unnest(%s::bytea[]) WITH ORDINALITY AS u(p, i) "
        "ORDER BY i", (pngs,))])
    want = ref.image([Image.fromarray(a) for a in rgb])
    assert got.shape == want.shape == (6, 64)
    assert np.max(np.abs(got - as_images)) <= 1e-5
    assert np.max(np.abs(got - want)) <= 1e-5
    assert np.max(np.abs(np.linalg.norm(got, axis=1) - 1)) <= 1e-5


@pytest.mark.parametrize("video_fps", [None, "2.5"])
def test_embed_video_is_the_mean_of_its_frames(conn: psycopg.Connection,
                                               video_fps: str | None) -> None:
    data = clip("mp4")
    with setting(conn, "pgclip.video_fps", video_fps):
        whole = embed_video(conn, data)
    _, frames = video_frames(conn, data, float(video_fps or 1.0))
    mean = frames.mean(axis=0)
    assert np.max(np.abs(whole - mean / np.linalg.norm(mean))) <= 1e-5


def test_null_in_null_out(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT clip_embed_video(NULL)").fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM clip_video_frames(NULL)").fetchone() == (0,)


# ---------------------------------------------------------------- times

@pytest.mark.parametrize("fmt", ["mp4", "webm", "ts", "vfr"])
@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_times_follow_the_stream_and_the_sampling_rule(conn: psycopg.Connection, fmt: str,
                                                       fps: float) -> None:
    data = vfr() if fmt == "vfr" else clip(fmt)
    truth = videos.decoded_times(data)  # from the stream's start
    if fmt == "ts":
        with av.open(io.BytesIO(data)) as c:  # whose clock starts near 1.4 s
            s = c.streams.video[0]
            assert float(s.start_time * s.time_base) == pytest.approx(1.4, abs=0.1)
    with setting(conn, "pgclip.video_containers", "mp4,matroska,mpegts"):
        times, _ = video_frames(conn, data, fps)
    assert times == pytest.approx(sampled(truth, fps), abs=1e-6)
    assert times[0] == pytest.approx(0.0, abs=1e-6)
    # each kept frame is within one frame after the last grid point at or before it
    frame_s = 0.1 if fmt != "vfr" else max(np.diff(VFR_TIMES))
    for t in times:
        grid = np.floor(t * fps + 1e-6) / fps
        assert grid - 1e-6 <= t < grid + frame_s


# ---------------------------------------------------------------- limits and errors

LIMITS = [
    ("pgclip.max_video_bytes", "1000", lambda: clip("mp4"), "54000",
     "more than pgclip.max_video_bytes (1000)"),
    ("pgclip.max_video_seconds", "1", lambda: clip("mp4"), "54000",
     "the video declares 3.0 s, more than pgclip.max_video_seconds (1 s)"),
    ("pgclip.max_video_seconds", "1.5", live_webm, "54000",
     "the video runs past pgclip.max_video_seconds (1.5 s)"),
    ("pgclip.max_video_pixels", "3071", lambda: clip("mp4"), "54000",
     "video frames of 64 x 48 pixels are more than pgclip.max_video_pixels (3071)"),
    ("pgclip.max_video_frames", "5", lambda: clip("mp4"), "54000",
     "the video has more frames than pgclip.max_video_frames (5)"),
    ("pgclip.max_video_samples", "2", lambda: clip("mp4"), "54000",
     "more sampled frames than pgclip.max_video_samples (2)"),
    ("pgclip.video_timeout", "50ms", long_video, "54000",
     "decoding the video took longer than pgclip.video_timeout (0.05 s)"),
    ("pgclip.video_containers", None, lambda: clip("ts"), "0A000",
     "video container mpegts (ts) is not allowed"),
    ("pgclip.video_codecs", "h264", lambda: clip("mpeg4"), "0A000",
     "video codec mpeg4 is not allowed"),
    ("pgclip.video_fps", "0", lambda: clip("mp4"), "22023",
     'invalid value for pgclip.video_fps: "0"'),
    ("pgclip.video_containers", "avi", lambda: clip("mp4"), "22023",
     'pgclip.video_containers names "avi", which pgclip does not decode'),
]


@pytest.mark.parametrize("name,value,data,sqlstate,words", LIMITS,
                         ids=[f"{n[7:]}={v}" for n, v, *_ in LIMITS])
def test_limit_is_an_error_naming_its_setting(conn: psycopg.Connection, name: str,
                                              value: str | None, data, sqlstate: str,
                                              words: str) -> None:
    video = data()
    with sql_error(conn, sqlstate) as diag, setting(conn, name, value):
        conn.execute("SELECT clip_embed_video(%s)", (video,))
    assert words in diag[0].message_primary
    assert name in diag[0].message_primary + diag[0].message_hint


def test_not_a_video(conn: psycopg.Connection) -> None:
    for data in (b"", b"<html>not a video</html>", videos.png_bytes(np.zeros((8, 8, 3),
                                                                             np.uint8))):
        with sql_error(conn, "22023") as diag:
            conn.execute("SELECT clip_embed_video(%s)", (data,))
        assert "not a video in a container pgclip reads" in diag[0].message_primary


@pytest.mark.parametrize("fps", [0, -1, 61, float("nan")])
def test_invalid_fps_argument(conn: psycopg.Connection, fps: float) -> None:
    with sql_error(conn, "22023") as diag:
        conn.execute("SELECT * FROM clip_video_frames(%s, %s)", (clip("mp4"), fps))
    assert "fps must be above 0 and at most 60" in diag[0].message_primary


# ---------------------------------------------------------------- the decoder process

def _warm(conn: psycopg.Connection) -> tuple[int, dict]:
    """A backend with its model loaded and its decoder started: (backend pid, decoder stats)."""
    assert embed_video(conn, clip("mp4")).shape == (64,)
    return pid(conn), decoder_stats(conn)


def test_segfault_in_the_decoder_fails_only_the_statement(new_conn) -> None:
    conn, watcher = new_conn(), new_conn()
    backend, before = _warm(conn)
    [child] = decoders(backend)
    result: list = []

    def run() -> None:
        t0 = time.monotonic()
        try:
            conn.execute(LONG_STATEMENT, (long_video(),) * 3)
            result.append(("finished", time.monotonic() - t0))
        except psycopg.Error as e:
            result.append((e, time.monotonic() - t0))

    thread = threading.Thread(target=run)
    thread.start()
    while not watcher.execute("SELECT state = 'active' FROM pg_stat_activity WHERE pid = %s",
                              (backend,)).fetchone()[0]:
        time.sleep(0.01)
    time.sleep(0.5)  # well into the video
    os.kill(child, signal.SIGSEGV)
    thread.join(60)
    [(err, took)] = result
    print(f"statement failed after {took:.2f} s")
    assert isinstance(err, psycopg.Error), f"the statement finished in {took:.2f} s"
    assert err.diag.sqlstate == "22023"
    assert "the video decoder process died on this input (signal SIGSEGV)" \
        in err.diag.message_primary
    assert err.diag.message_hint
    assert pid(conn) == backend
    assert decoders(backend) == []
    assert embed_video(conn, clip("webm")).shape == (64,)
    after = decoder_stats(conn)
    assert after["started"] == before["started"] + 1
    assert after["killed"] == before["killed"] + 1
    assert decoders(backend) not in ([], [child])


def test_statement_timeout_kills_the_decoder(new_conn) -> None:
    conn = new_conn()
    backend, before = _warm(conn)
    [child] = decoders(backend)
    conn.execute("SET statement_timeout = '1s'")
    t0 = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled) as exc:
        conn.execute(LONG_STATEMENT, (long_video(),) * 3)
    took = time.monotonic() - t0
    print(f"statement_timeout 1 s: canceled after {took:.2f} s")
    assert exc.value.diag.sqlstate == "57014"
    assert took < 10
    conn.execute("RESET statement_timeout")
    assert pid(conn) == backend
    assert decoder_stats(conn)["killed"] == before["killed"] + 1
    assert child not in decoders(backend)
    assert embed_video(conn, clip("mp4")).shape == (64,)
    assert decoder_stats(conn)["started"] == before["started"] + 1

