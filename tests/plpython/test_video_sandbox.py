"""pgclip.video.sandbox and its decoder process (pgclip.video.child), without PostgreSQL: what
the container declares, the frames kept at a rate (their times from the stream's start and their
pixels, as PyAV decodes them here), and the decoder's life: it is killed when the caller stops
reading, when ``check`` raises or when it crashes, and the next video starts a fresh one."""

from __future__ import annotations

import functools
import io
import os
import signal
import struct
import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from pgclip.errors import FormatNotAllowed, InvalidVideo, VideoTooLarge
from pgclip.video import sandbox
from pgclip.video.limits import VideoLimits
from tests import videos

LIMITS = VideoLimits(containers=("mp4", "matroska", "mpegts"))
VFR_TIMES = [0.0, 0.1, 0.25, 0.3, 0.7, 1.0, 1.01, 1.5, 2.0, 2.04, 2.9]


@functools.cache
def clip(fmt: str) -> bytes:
    """3 s, 10 fps, 64 x 48: a different picture in every frame."""
    container, codec = videos.FORMATS[fmt]
    frames = [np.asarray(f)[8:56] for f in videos.changing_frames(30, 64, seed=3)]
    return videos.encode(frames, [i / 10 for i in range(30)], container=container, codec=codec)


@functools.cache
def vfr() -> bytes:
    return videos.encode(videos.changing_frames(len(VFR_TIMES), 32, seed=4), VFR_TIMES)


@functools.cache
def long_video() -> bytes:
    """20 s at 30 fps (600 frames, 160 x 160): takes the decoder a second or more at 30 fps."""
    return videos.encode(videos.changing_frames(30, 160, seed=5) * 20,
                         [i / 30 for i in range(600)])


def sampled(times: list[float], fps: float) -> list[float]:
    """The first time at or after each k / fps (times in increasing order)."""
    out: list[float] = []
    k = 0
    while k / fps <= times[-1] + 1e-9:
        t = next(t for t in times if t >= k / fps - 5e-4)
        if not out or t > out[-1]:
            out.append(t)
        k += 1
    return out


def pyav_frames(data: bytes) -> dict[float, np.ndarray]:
    """Every frame decoded here, by its time from the stream's start."""
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        return {round(float((f.pts - s.start_time) * s.time_base), 6):
                f.to_ndarray(format="rgb24") for f in c.decode(s)}


def decoder_pid() -> int:
    assert sandbox._decoder is not None
    return sandbox._decoder.proc.pid


def dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1].startswith("Z")


@pytest.fixture(autouse=True, scope="module")
def _no_decoder_left() -> Iterator[None]:
    yield
    if sandbox._decoder is not None:
        sandbox._decoder.kill()
        sandbox._decoder = None


@pytest.mark.parametrize("fmt,container,codec", [
    ("mp4", "mp4", "h264"), ("webm", "matroska", "vp9"), ("mkv", "matroska", "h264"),
    ("ts", "mpegts", "h264"), ("mpeg4", "mp4", "mpeg4")])
def test_probe(fmt: str, container: str, codec: str) -> None:
    info = sandbox.probe(clip(fmt), LIMITS)
    assert (info.container, info.codec, info.width, info.height) == (container, codec, 64, 48)
    assert info.duration_s is not None and abs(info.duration_s - 3.0) <= 0.11


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mkv", "ts", "mpeg4"])
@pytest.mark.parametrize("fps", [1.0, 2.5, 10.0])
def test_frames_times_and_pixels(fmt: str, fps: float) -> None:
    data = clip(fmt)
    got = list(sandbox.frames(data, fps, LIMITS))
    truth = videos.decoded_times(data)
    assert [t for t, _ in got] == pytest.approx(sampled(truth, fps), abs=1e-6)
    assert got[0][0] == pytest.approx(0.0, abs=1e-6)  # MPEG-TS too, although it starts at 1.4 s
    here = pyav_frames(data)
    for t, rgb in got:
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
        assert np.array_equal(rgb, here[round(t, 6)])


@pytest.mark.parametrize("fps", [1.0, 4.0, 60.0])
def test_variable_frame_rate(fps: float) -> None:
    truth = videos.decoded_times(vfr())
    assert truth == pytest.approx(videos.expected_times(VFR_TIMES), abs=1e-6)
    got = [t for t, _ in sandbox.frames(vfr(), fps, LIMITS)]
    assert got == pytest.approx(sampled(truth, fps), abs=1e-6)
    if fps == 4.0:  # 0.5 s falls in the hole: 0.7 s stands for it; 1.01 s is no grid point's
        assert got == pytest.approx([0.0, 0.25, 0.7, 1.0, 1.5, 2.0, 2.9], abs=1e-6)


def rotated_mp4(a: int, b: int, c: int, d: int) -> bytes:
    """A 64 x 48 MP4, red in its top left corner, whose track matrix is (a b; c d) (FFmpeg's
    mov muxer writes (0 1; -1 0) for a clockwise quarter turn, as phones record portrait)."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[:8, :8] = (255, 0, 0)
    data = bytearray(videos.encode([img] * 3, [0.0, 0.1, 0.2]))
    [(_, off, _)] = [box for box in videos.mp4_boxes(bytes(data)) if box[0].endswith("/tkhd")]
    assert data[off + 8] == 0  # version 0: the matrix follows 40 bytes of fields
    struct.pack_into(">9i", data, off + 48, a * 65536, b * 65536, 0, c * 65536, d * 65536, 0,
                     0, 0, 1 << 30)
    return bytes(data)


@pytest.mark.parametrize("matrix,shape,corner", [
    ((1, 0, 0, 1), (48, 64), (0, 0)), ((0, 1, -1, 0), (64, 48), (0, 1)),
    ((-1, 0, 0, -1), (48, 64), (1, 1)), ((0, -1, 1, 0), (64, 48), (1, 0))],
    ids=["upright", "clockwise", "half-turn", "counter-clockwise"])
def test_rotated_video_is_shown_upright(matrix: tuple[int, int, int, int],
                                        shape: tuple[int, int], corner: tuple[int, int]) -> None:
    [(_, rgb)] = list(sandbox.frames(rotated_mp4(*matrix), 1.0, LIMITS))
    assert rgb.shape == (*shape, 3)
    ys, xs = np.nonzero(rgb[..., 0] > 200)
    assert (round(ys.mean() / shape[0]), round(xs.mean() / shape[1])) == corner


def test_info_and_frames_and_stats() -> None:
    before = sandbox.stats.videos, sandbox.stats.frames
    info, it = sandbox.info_and_frames(clip("mp4"), 1.0, LIMITS)
    assert (info.width, info.height, info.codec) == (64, 48, "h264")
    assert [t for t, _ in it] == pytest.approx([0.0, 1.0, 2.0])
    assert (sandbox.stats.videos, sandbox.stats.frames) == (before[0] + 1, before[1] + 3)


def test_one_decoder_serves_many_videos() -> None:
    sandbox.probe(clip("mp4"), LIMITS)
    pid, started = decoder_pid(), sandbox.stats.started
    for fmt in ("webm", "ts", "mp4"):
        assert len(list(sandbox.frames(clip(fmt), 1.0, LIMITS))) == 3
    assert (decoder_pid(), sandbox.stats.started) == (pid, started)


def test_abandoned_stream_kills_the_decoder() -> None:
    it = sandbox.frames(long_video(), 30.0, LIMITS)
    t, _ = next(it)
    assert t == 0.0
    pid, started, killed = decoder_pid(), sandbox.stats.started, sandbox.stats.killed
    it.close()
    assert sandbox.stats.killed == killed + 1
    assert dead(pid)
    assert len(list(sandbox.frames(clip("mp4"), 1.0, LIMITS))) == 3
    assert sandbox.stats.started == started + 1 and decoder_pid() != pid


def test_check_is_called_while_waiting() -> None:
    calls: list[float] = []
    t0 = time.monotonic()
    n = sum(1 for _ in sandbox.frames(long_video(), 30.0, LIMITS,
                                      check=lambda: calls.append(time.monotonic())))
    took = time.monotonic() - t0
    gaps = np.diff([t0, *calls, time.monotonic()])
    print(f"{n} frames in {took:.2f} s, {len(calls)} checks, longest gap {gaps.max():.3f} s")
    assert len(calls) >= 2
    assert gaps.max() < 1.0  # at least every 100 ms, plus a loaded machine's delays


class Stop(Exception):
    pass


def test_check_exception_propagates_and_kills_the_decoder() -> None:
    sandbox.probe(clip("mp4"), LIMITS)
    pid, killed = decoder_pid(), sandbox.stats.killed

    def check() -> None:
        raise Stop

    with pytest.raises(Stop):
        for _ in sandbox.frames(long_video(), 30.0, LIMITS, check=check):
            pass
    assert sandbox.stats.killed == killed + 1
    assert dead(pid)
    assert len(list(sandbox.frames(clip("webm"), 1.0, LIMITS))) == 3


def test_segfault_in_the_decoder_is_invalid_video() -> None:
    sandbox.probe(clip("mp4"), LIMITS)
    pid = decoder_pid()
    sent: list[int] = []

    def check() -> None:  # the decoder is busy with the long video by now
        if not sent:
            os.kill(pid, signal.SIGSEGV)
            sent.append(pid)

    with pytest.raises(InvalidVideo) as exc:
        for _ in sandbox.frames(long_video(), 30.0, LIMITS, check=check):
            pass
    assert sent == [pid]
    assert exc.value.sqlstate == "22023"
    assert "the video decoder process died on this input (signal SIGSEGV)" in exc.value.message
    assert exc.value.hint and exc.value.detail
    assert dead(pid)
    assert len(list(sandbox.frames(clip("mp4"), 1.0, LIMITS))) == 3
    assert decoder_pid() != pid


def test_cpu_limit_in_the_decoder_is_the_timeout() -> None:
    """SIGXCPU is what the kernel sends past RLIMIT_CPU (the timeout on every core)."""
    sandbox.probe(clip("mp4"), LIMITS)
    pid = decoder_pid()
    sent: list[int] = []

    def check() -> None:
        if not sent:
            os.kill(pid, signal.SIGXCPU)
            sent.append(pid)

    with pytest.raises(VideoTooLarge, match="more CPU time than pgclip.video_timeout") as exc:
        for _ in sandbox.frames(long_video(), 30.0, LIMITS, check=check):
            pass
    assert exc.value.sqlstate == "54000" and exc.value.hint
    assert len(list(sandbox.frames(clip("mp4"), 1.0, LIMITS))) == 3


@pytest.mark.parametrize("change,cls,words", [
    ({"max_bytes": 100}, VideoTooLarge, "pgclip.max_video_bytes (100)"),
    ({"max_pixels": 64 * 48 - 1}, VideoTooLarge, "pgclip.max_video_pixels"),
    ({"max_seconds": 1.0}, VideoTooLarge, "declares 3.0 s, more than pgclip.max_video_seconds"),
    ({"max_decoded_frames": 5}, VideoTooLarge, "pgclip.max_video_frames (5)"),
    ({"max_samples": 2}, VideoTooLarge, "pgclip.max_video_samples (2)"),
    ({"containers": ("matroska",)}, FormatNotAllowed, "video container mp4 (mov, quicktime, m4v)"),
    ({"codecs": ("vp9",)}, FormatNotAllowed, "video codec h264 is not allowed"),
])
def test_limits(change: dict, cls: type, words: str) -> None:
    lim = VideoLimits(**change)
    with pytest.raises(cls) as exc:
        list(sandbox.frames(clip("mp4"), 1.0, lim))
    assert words in exc.value.message
    assert exc.value.hint


def test_decoded_seconds_when_none_is_declared() -> None:
    live = videos.encode(videos.changing_frames(20, 32, seed=6), [i / 10 for i in range(20)],
                         container="webm", codec="libvpx-vp9", container_options={"live": "1"})
    assert sandbox.probe(live, LIMITS).duration_s is None
    with pytest.raises(VideoTooLarge) as exc:
        list(sandbox.frames(live, 1.0, VideoLimits(max_seconds=1.5)))
    assert "the video runs past pgclip.max_video_seconds (1.5 s)" in exc.value.message


def test_not_a_video_and_damaged_files() -> None:
    with pytest.raises(InvalidVideo, match="not a video in a container pgclip reads"):
        sandbox.probe(b"<html></html>" * 10, LIMITS)
    with pytest.raises(InvalidVideo, match="not a readable mp4 file"):
        sandbox.probe(clip("mp4")[:40], LIMITS)


def test_a_deferred_video_sends_its_info_and_no_frames() -> None:
    decoded = sandbox.stats.frames
    info, frames = sandbox.info_and_frames(clip("mp4"), 1.0, LIMITS, defer_above=1.0)
    assert info.duration_s == pytest.approx(3.0) and list(frames) == []
    assert sandbox.stats.frames == decoded
    _, frames = sandbox.info_and_frames(clip("mp4"), 1.0, LIMITS, defer_above=5.0)
    assert len(list(frames)) == 3
