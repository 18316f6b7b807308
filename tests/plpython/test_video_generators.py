"""tests/videos.py and tests/hostile/video_corpus.py: the times we ask for are the times PyAV
decodes, planted videos have one right answer each, and the hostile corpus is deterministic."""

from __future__ import annotations

import io
import math
import random
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from pgclip import shapes
from tests import videos
from tests.hostile import video_corpus

# Variable frame rate: uneven gaps, two frames 10 ms apart, a 0.5 s hole.
VFR_TIMES = [0.0, 0.1, 0.25, 0.3, 0.7, 1.0, 1.01, 1.5, 2.0, 2.04]


def _close(got: list[float], want: list[float], time_base: Fraction) -> bool:
    # WebM and Matroska keep milliseconds, whatever the encoder's time base
    tolerance = max(0.001, float(time_base)) + 1e-9
    return len(got) == len(want) and all(abs(a - b) <= tolerance for a, b in zip(got, want,
                                                                                 strict=True))


def _stream_info(data: bytes) -> tuple[str, str, float, int]:
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        return c.format.name, s.codec_context.name, float(s.start_time * s.time_base), \
            sum(1 for p in c.demux(s) if p.pts is not None and p.dts is not None
                and p.pts != p.dts)


@pytest.mark.parametrize("fmt", sorted(videos.FORMATS))
@pytest.mark.parametrize("start_s", [None, 0.0, 3.25])
def test_decoded_times_are_the_times_encoded(fmt: str, start_s: float | None) -> None:
    container, codec = videos.FORMATS[fmt]
    frames = videos.changing_frames(len(VFR_TIMES), 64, seed=1)
    data = videos.encode(frames, VFR_TIMES, container=container, codec=codec, start_s=start_s)
    assert _close(videos.decoded_times(data), videos.expected_times(VFR_TIMES), Fraction(1, 1000))


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mkv", "ts"])
@pytest.mark.parametrize("time_base", [Fraction(1, 90000), Fraction(1, 30), Fraction(1, 1001)])
def test_times_survive_other_time_bases(fmt: str, time_base: Fraction) -> None:
    container, codec = videos.FORMATS[fmt]
    times = [k / 30 + (0.01 if k % 3 == 0 else 0.0) for k in range(12)]
    data = videos.encode(videos.changing_frames(12, 32, 2), times, container=container,
                         codec=codec, time_base=time_base)
    want = videos.expected_times(times, time_base, container=container)
    assert _close(videos.decoded_times(data), want, time_base)


def test_a_late_first_frame_moves_the_start() -> None:
    times = [t + 0.37 for t in VFR_TIMES]
    for fmt in ("mp4", "webm", "ts"):
        container, codec = videos.FORMATS[fmt]
        data = videos.encode(videos.changing_frames(10, 32), times, container=container,
                             codec=codec, start_s=0.0)
        assert _stream_info(data)[2] == pytest.approx(0.37, abs=1e-3)
        assert _close(videos.decoded_times(data), videos.expected_times(VFR_TIMES),
                      Fraction(1, 1000))


def test_h264_has_b_frames_and_mpegts_starts_late() -> None:
    mp4 = videos.clip("mp4", 2.0)
    assert _stream_info(mp4)[3] > 0, "B-frames: some packets decode before they show"
    no_b = videos.encode(videos.changing_frames(20, 64), [k / 10 for k in range(20)],
                         options={"bf": "0"})
    assert _stream_info(no_b)[3] == 0
    fmt, codec, start, _ = _stream_info(videos.clip("ts", 1.0))
    assert (fmt, codec) == ("mpegts", "h264")
    assert start == pytest.approx(videos.MPEGTS_START_S, abs=1e-3)


@pytest.mark.parametrize("fmt,names", [("mp4", ("mov,mp4,m4a,3gp,3g2,mj2", "h264")),
                                       ("hevc", ("mov,mp4,m4a,3gp,3g2,mj2", "hevc")),
                                       ("webm", ("matroska,webm", "vp9")),
                                       ("vp8", ("matroska,webm", "vp8")),
                                       ("mkv", ("matroska,webm", "h264"))])
def test_formats_are_what_they_say(fmt: str, names: tuple[str, str]) -> None:
    assert _stream_info(videos.clip(fmt))[:2] == names


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mkv", "ts"])
def test_constant_rate_duration_is_frames_over_fps(fmt: str) -> None:
    with av.open(io.BytesIO(videos.clip(fmt, seconds=1.5, fps=10))) as c:
        assert c.duration / 1e6 == pytest.approx(1.5, abs=1e-3)


def test_encode_rejects_bad_input() -> None:
    frames = videos.changing_frames(2, 32)
    with pytest.raises(ValueError, match="increase"):
        videos.encode(frames, [0.5, 0.5])
    with pytest.raises(ValueError, match="one time per frame"):
        videos.encode(frames, [0.0])
    with pytest.raises(ValueError, match="even"):
        videos.encode([np.zeros((33, 32, 3), np.uint8)], [0.0])


def test_scene_video_holds_each_scene() -> None:
    rng = random.Random(3)
    specs = [shapes.random_spec(rng) for _ in range(3)]
    data = videos.scene_video(list(zip(specs, [1.0, 0.5, 1.5], strict=True)), fps=10,
                              pixels=64, seed=3)
    assert _close(videos.decoded_times(data), [k / 10 for k in range(30)], Fraction(1, 1000))
    with av.open(io.BytesIO(data)) as c:
        corners = [tuple(f.to_ndarray(format="rgb24")[1, 1]) for f in c.decode(video=0)]
    for k, spec in ((0, specs[0]), (12, specs[1]), (29, specs[2])):
        assert np.abs(np.subtract(corners[k], shapes.BACKGROUNDS[spec.background])).max() < 16


def test_faststart_and_remux_keep_the_frames() -> None:
    mp4 = videos.clip("mp4", 1.0)
    fast = videos.faststart(mp4)
    order = [p for p, _, _ in videos.mp4_boxes(fast) if "/" not in p]
    assert order.index("moov") < order.index("mdat")
    mkv = videos.remux(mp4, "matroska")
    assert videos.decoded_times(fast) == videos.decoded_times(mp4)
    assert _close(videos.decoded_times(mkv), videos.decoded_times(mp4), Fraction(1, 1000))


def test_planted_videos_have_one_right_answer() -> None:
    started = time.perf_counter()
    planted = videos.planted_videos()
    print(f"100 planted videos in {time.perf_counter() - started:.2f} s")
    assert len(planted) == 100
    events = [p.event for p in planted]
    assert len(set(events)) == 100
    background = {spec for p in planted for spec, _, _ in p.scenes if spec != p.event}
    assert not background & set(events), "an event spec appears as an ordinary scene"
    for p in planted:
        with av.open(io.BytesIO(p.data)) as c:
            assert c.duration / 1e6 == pytest.approx(p.duration_s, abs=1e-3)
        assert p.query == p.event.caption()
        assert 12 <= p.duration_s <= 20 and 3 <= len(p.scenes) <= 5
        assert [s for s, _, _ in p.scenes].count(p.event) == 1
        assert 0 < p.event_start_s < p.event_end_s <= p.duration_s
        assert 2 - 1e-9 <= p.event_end_s - p.event_start_s <= 4 + 1e-9
        assert p.event_start_s != math.floor(p.event_start_s)
        assert p.scenes[0][1] == 0 and p.scenes[-1][2] == p.duration_s
        assert all(a[2] == b[1] for a, b in zip(p.scenes, p.scenes[1:], strict=False))
        assert len({s for s, _, _ in p.scenes}) == len(p.scenes)
    assert videos.planted_videos() == planted, "cached and deterministic"


def test_planted_video_shows_its_event() -> None:
    p = videos.planted_videos()[0]
    times = videos.decoded_times(p.data)
    assert _close(times, [k / 10 for k in range(round(p.duration_s * 10))], Fraction(1, 1000))
    with av.open(io.BytesIO(p.data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for spec, start, end in p.scenes:
        middle = frames[round((start + end) / 2 * 10)]
        assert np.abs(middle[1, 1].astype(int) - shapes.BACKGROUNDS[spec.background]).max() < 16


def test_corpus_is_big_deterministic_and_small_items() -> None:
    started = time.perf_counter()
    items = video_corpus.corpus()
    print(f"{len(items)} corpus items in {time.perf_counter() - started:.2f} s")
    names = [n for n, _ in items]
    assert len(items) >= 2000 and len(set(names)) == len(names)
    assert all(len(d) < video_corpus.MAX_ITEM_BYTES for _, d in items)
    kinds = {n.split("/")[0] for n in names}
    assert {"truncate", "bitflip1", "bitflip64", "huge-dims", "hours", "huge-real", "shuffle",
            "indirect", "other", "empty"} <= kinds
    video_corpus.base_videos.cache_clear()  # encode again: the encoders are deterministic too
    assert video_corpus.corpus() == items
    assert len(video_corpus.corpus(n_min=2500, seed=6)) >= 2500


def test_corpus_patches_land_where_meant() -> None:
    items = dict(video_corpus.corpus())
    with av.open(io.BytesIO(items["hours/mkv-duration-10h"])) as c:
        assert c.duration / 1e6 == pytest.approx(36000)
    with av.open(io.BytesIO(items["hours/mp4-all-10h"])) as c:
        assert c.duration / 1e6 == pytest.approx(36000, rel=1e-3)
    for name in ("huge-dims/mp4-both-65535x65535", "huge-dims/mp4-faststart-tkhd-30000x30000"):
        tkhd = next((o, s) for p, o, s in videos.mp4_boxes(items[name])
                    if p == "moov/trak/tkhd")
        width = int.from_bytes(items[name][tkhd[0] + tkhd[1] - 8:tkhd[0] + tkhd[1] - 6], "big")
        assert width == int(name.rsplit("-", 1)[1].split("x")[0])
    mkv = items["huge-dims/mkv-65535x65535"]
    widths = [mkv[d:d + n] for e, _, d, n in videos.mkv_elements(mkv) if e in (0xB0, 0xBA)]
    assert widths == [b"\xff\xff", b"\xff\xff"]
    assert items["indirect/ffconcat-passwd"].startswith(b"ffconcat version 1.0")
    assert items["empty"] == b""
