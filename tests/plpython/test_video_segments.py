"""pgclip.video.segments: frame spans, cutting frame vectors into segments, mean vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgclip.errors import InvalidParameter, InvalidVideo
from pgclip.video import segments
from pgclip.video.segments import Segment, cut, frame_spans, mean_vector

DIM = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _basis(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def _cut(times, vecs, *, threshold=0.85, max_seconds=10.0, duration_s=None, fps=1.0):
    return cut(times, np.asarray(vecs), threshold=threshold, max_seconds=max_seconds,
               duration_s=duration_s, fps=fps)


def _assert_tiles(segs: list[Segment], n: int, start: float, end: float) -> None:
    """Segments cover frames 0..n-1 and [start, end] in order, without gaps or overlaps."""
    assert segs[0].first == 0 and segs[-1].last == n - 1
    assert segs[0].start_s == start and segs[-1].end_s == end
    for a, b in zip(segs, segs[1:], strict=False):
        assert b.first == a.last + 1 and b.start_s == a.end_s
    for s in segs:
        assert s.first <= s.last and s.start_s < s.end_s


def _temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.mark.parametrize(
    "times, duration_s, fps",
    [
        ([0.0, 1.0, 2.0, 3.0], None, 1.0),
        ([0.0, 1.0, 2.0, 3.0], 3.4, 1.0),
        ([0.2, 0.7, 0.75, 3.0, 3.1, 9.9], 12.0, 2.0),
        ([1 / 3 * k for k in range(30)], 10.0, 3.0),
        ([5.0], None, 0.5),
    ],
)
def test_spans_tile_the_interval(times, duration_s, fps) -> None:
    spans = frame_spans(times, duration_s, fps)
    assert len(spans) == len(times)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end == start
    for t, (start, end) in zip(times, spans, strict=True):
        assert start <= t < end
    total = sum(end - start for start, end in spans)
    assert math.isclose(total, spans[-1][1] - spans[0][0], rel_tol=1e-12)


def test_span_ends() -> None:
    # the first starts half a frame early (not before 0); the last ends at the duration if later
    assert frame_spans([0.0, 1.0], None, 1.0) == [(0.0, 0.5), (0.5, 2.0)]
    assert frame_spans([2.0, 3.0], 3.25, 1.0) == [(1.5, 2.5), (2.5, 3.25)]
    assert frame_spans([2.0, 3.0], 2.5, 4.0) == [(1.875, 2.5), (2.5, 3.25)]  # duration too short
    assert frame_spans([1.0], float("nan"), 1.0) == [(0.5, 2.0)]
    assert frame_spans([-0.2, 1.0], None, 1.0) == [(-0.2, 0.4), (0.4, 2.0)]
    assert frame_spans([], 10.0, 1.0) == []


def test_variable_frame_rate_spans_are_midpoints() -> None:
    times = [0.0, 0.1, 0.5, 0.55, 2.0]
    bounds = [b for span in frame_spans(times, None, 10.0) for b in span]
    assert bounds == pytest.approx([0.0, 0.05, 0.05, 0.3, 0.3, 0.525, 0.525, 1.275, 1.275, 2.1])


def test_planted_scene_change() -> None:
    a, b = _basis(0), _basis(1)
    segs = _cut([0.0, 1, 2, 3, 4, 5, 6, 7], [a, a, a, b, b, b, a, a])
    assert [(s.first, s.last) for s in segs] == [(0, 2), (3, 5), (6, 7)]
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 2.5), (2.5, 5.5), (5.5, 8.0)]
    assert [float(s.vector @ a) for s in segs] == pytest.approx([1.0, 0.0, 1.0])
    _assert_tiles(segs, 8, 0.0, 8.0)


def test_noisy_scenes_found_with_good_temporal_iou() -> None:
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.standard_normal((DIM, 3)))[0].T  # three orthogonal scenes
    truth = [(0.0, 12.0), (12.0, 20.0), (20.0, 30.0)]
    times = [k + 0.5 for k in range(30)]
    scene = [next(j for j, (s, e) in enumerate(truth) if s <= t < e) for t in times]
    vecs = _unit(centres[scene] + 0.1 * rng.standard_normal((30, DIM)))
    segs = _cut(times, vecs, threshold=0.6, max_seconds=60.0, duration_s=30.0)
    assert len(segs) == 3
    for seg, want in zip(segs, truth, strict=True):
        assert _temporal_iou((seg.start_s, seg.end_s), want) == 1.0


def test_slow_drift_is_cut_against_the_segment_mean() -> None:
    # each frame is close to its neighbour (cos 0.98), but far from where the segment began
    angles = np.arange(40) * math.acos(0.98)
    vecs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    segs = _cut(list(range(40)), vecs, threshold=0.9, max_seconds=1000.0)
    assert len(segs) > 1
    for s in segs:
        own = vecs[s.first : s.last + 1] @ s.vector
        assert own.min() >= 0.9 - 1e-6
    _assert_tiles(segs, 40, 0.0, 40.0)


@pytest.mark.parametrize("fps, max_seconds", [(1.0, 10.0), (3.0, 2.0), (2.0, 2.75), (25.0, 1.0)])
def test_max_seconds_caps_a_constant_scene(fps: float, max_seconds: float) -> None:
    n = int(37 * fps)
    times = [(k + 0.5) / fps for k in range(n)]  # spans of exactly 1 / fps
    duration = n / fps
    vecs = np.tile(_basis(3), (n, 1))
    segs = _cut(times, vecs, max_seconds=max_seconds, duration_s=duration, fps=fps)
    per = math.floor(max_seconds * fps + 1e-9)
    assert len(segs) == math.ceil(n / per)
    for s in segs[:-1]:
        assert s.last - s.first + 1 == per
    for s in segs:
        assert s.end_s - s.start_s <= max_seconds + 1e-6
    _assert_tiles(segs, n, 0.0, duration)


def test_one_frame_longer_than_max_seconds_is_its_own_segment() -> None:
    a = _basis(0)
    segs = _cut([0.0, 1.0, 2.0], [a, a, a], max_seconds=5.0, duration_s=100.0)
    assert [(s.first, s.last, s.start_s, s.end_s) for s in segs] == [
        (0, 1, 0.0, 1.5), (2, 2, 1.5, 100.0)]


def test_segment_vectors_are_renormalised_means() -> None:
    rng = np.random.default_rng(7)
    centres = _unit(rng.standard_normal((4, DIM)))
    times = np.cumsum(rng.uniform(0.05, 1.5, 200))  # variable frame rate
    vecs = _unit(centres[np.repeat(np.arange(4), 50)] + 0.3 * rng.standard_normal((200, DIM)))
    segs = _cut(times.tolist(), vecs, threshold=0.7, max_seconds=8.0, fps=2.0)
    spans = frame_spans(times.tolist(), None, 2.0)
    for s in segs:
        rows = vecs[s.first : s.last + 1].astype(np.float64)
        want = rows.mean(axis=0) / np.linalg.norm(rows.mean(axis=0))
        assert s.vector.dtype == np.float32 and s.vector.shape == (DIM,)
        assert np.abs(s.vector - want).max() < 1e-6
        assert abs(float(np.linalg.norm(s.vector)) - 1.0) < 1e-6
        assert (s.start_s, s.end_s) == (spans[s.first][0], spans[s.last][1])
        assert s.end_s - s.start_s <= 8.0 + 1e-6 or s.first == s.last
    _assert_tiles(segs, 200, spans[0][0], spans[-1][1])


def test_single_frame() -> None:
    v = _unit(np.arange(1, DIM + 1, dtype=np.float32))
    (seg,) = _cut([1.0], v[None, :])
    assert (seg.first, seg.last, seg.start_s, seg.end_s) == (0, 0, 0.5, 2.0)
    assert np.abs(seg.vector - v).max() < 1e-6
    (seg,) = _cut([1.0], v[None, :], duration_s=1.2)
    assert seg.end_s == 1.2


def test_empty_input() -> None:
    assert _cut([], np.empty((0, DIM), dtype=np.float32)) == []
    assert _cut([], []) == []


def test_opposite_frames_never_make_a_zero_mean() -> None:
    a = _basis(0)
    segs = _cut([0.0, 1.0, 2.0], [a, -a, a], threshold=-1.0)
    assert [(s.first, s.last) for s in segs] == [(0, 0), (1, 1), (2, 2)]


def test_mean_vector() -> None:
    a, b = _basis(0), _basis(1)
    m = mean_vector(np.stack([a, a, b]))
    assert m.dtype == np.float32
    assert m == pytest.approx(_unit(2 * a + b), abs=1e-7)
    with pytest.raises(InvalidVideo, match="no frames") as e:
        mean_vector(np.empty((0, DIM), dtype=np.float32))
    assert e.value.sqlstate == "22023" and e.value.hint
    with pytest.raises(InvalidVideo, match="cancel out") as e:
        mean_vector(np.stack([a, -a]))
    assert e.value.sqlstate == "22023" and e.value.hint
    with pytest.raises(InvalidVideo, match="cancel out"):
        mean_vector(np.stack([a, np.full(DIM, np.nan, dtype=np.float32)]))


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"threshold": 1.5}, "pgclip.video_segment_threshold"),
        ({"threshold": -1.01}, "pgclip.video_segment_threshold"),
        ({"threshold": float("nan")}, "pgclip.video_segment_threshold"),
        ({"max_seconds": 0.0}, "pgclip.video_max_segment_seconds"),
        ({"max_seconds": -3.0}, "pgclip.video_max_segment_seconds"),
        ({"max_seconds": float("nan")}, "pgclip.video_max_segment_seconds"),
        ({"fps": 0.0}, "pgclip.video_fps"),
        ({"fps": -1.0}, "pgclip.video_fps"),
        ({"fps": float("inf")}, "pgclip.video_fps"),
        ({"fps": float("nan")}, "pgclip.video_fps"),
    ],
)
def test_invalid_settings(kwargs: dict, setting: str) -> None:
    for times, vecs in (([0.0, 1.0], np.tile(_basis(0), (2, 1))), ([], np.empty((0, DIM)))):
        with pytest.raises(InvalidParameter) as e:
            _cut(times, vecs, **kwargs)
        assert type(e.value) is InvalidParameter
        assert e.value.sqlstate == "22023" and setting in e.value.message and e.value.hint


def test_frame_spans_checks_fps() -> None:
    with pytest.raises(InvalidParameter, match="pgclip.video_fps") as e:
        frame_spans([0.0], None, 0.0)
    assert e.value.sqlstate == "22023"


def test_vectors_must_match_times() -> None:
    with pytest.raises(InvalidParameter, match="3 frame times but 2 frame vectors") as e:
        _cut([0.0, 1.0, 2.0], np.tile(_basis(0), (2, 1)))
    assert e.value.sqlstate == "22023"
    with pytest.raises(InvalidParameter, match="shape"):
        _cut([0.0, 1.0], np.ones(2))


@pytest.mark.parametrize("times", [[0.0, 1.0, 1.0], [2.0, 1.0], [0.0, float("nan")],
                                   [0.0, float("inf")]])
def test_times_must_increase(times: list[float]) -> None:
    with pytest.raises(InvalidVideo, match="not increasing") as e:
        _cut(times, np.tile(_basis(0), (len(times), 1)))
    assert e.value.sqlstate == "22023"


def test_no_temporal_iou_helper_in_module() -> None:
    assert not any("iou" in name.lower() for name in dir(segments))
