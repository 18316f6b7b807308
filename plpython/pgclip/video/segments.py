"""Cutting a video's frame vectors into segments.

A video search answers with a moment, not a whole video: the segment that holds the best
matching frame. Segments are cut where the content changes (a frame unlike the segment so far)
and capped in length, so that a long unchanging shot still gives moments of a useful size.
Each segment is embedded as the renormalised mean of its frames' vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from pgclip.errors import InvalidParameter, InvalidVideo

# Spans are midpoints of sampled times, so not exact: a segment this much over the cap fits it.
_SLACK_S = 1e-6
# A mean vector shorter than this has no direction: its frames cancel out.
_MIN_NORM = 1e-6


@dataclass(frozen=True)
class Segment:
    """Frames ``first``..``last`` (inclusive), covering ``start_s``..``end_s`` of the video."""

    start_s: float
    end_s: float
    vector: np.ndarray  # renormalised mean of its frames' vectors (float32, unit length)
    first: int
    last: int


def frame_spans(
    times: Sequence[float], duration_s: float | None, fps: float
) -> list[tuple[float, float]]:
    """The stretch of video each sampled frame stands for; the spans tile it without gaps.

    Frame i covers [(t[i-1] + t[i]) / 2, (t[i] + t[i+1]) / 2]. The first starts at
    max(0, t[0] - 0.5 / fps) (at t[0] itself if t[0] < 0); the last ends at ``duration_s`` when
    that is known and after t[-1], else at t[-1] + 1 / fps.

    Raises:
        InvalidParameter: ``fps`` (pgclip.video_fps) is not a finite number above 0.
        InvalidVideo: the times are not finite and strictly increasing.
    """
    _check_fps(fps)
    t = [float(x) for x in times]
    if not t:
        return []
    if not all(math.isfinite(x) for x in t) or any(b <= a for a, b in pairwise(t)):
        raise InvalidVideo(
            "video frame timestamps are not increasing",
            hint="The video's timestamps are corrupt; re-encode it.",
        )
    start = min(t[0], max(0.0, t[0] - 0.5 / fps))
    if duration_s is not None and math.isfinite(duration_s) and duration_s > t[-1]:
        end = float(duration_s)
    else:
        end = t[-1] + 1.0 / fps
    bounds = [start, *((a + b) / 2 for a, b in pairwise(t)), end]
    return list(pairwise(bounds))


def cut(
    times: Sequence[float],
    vecs: np.ndarray,
    *,
    threshold: float,
    max_seconds: float,
    duration_s: float | None,
    fps: float,
) -> list[Segment]:
    """Cut frames, in time order, into segments that tile the video.

    A frame starts a new segment when its cosine similarity to the current segment's mean is
    below ``threshold``, or when adding it would make the segment (from its first frame's span
    start to this frame's span end) longer than ``max_seconds``. A segment of one frame can
    still be longer than ``max_seconds`` when that frame's span is (e.g. a last frame that
    stands for the rest of ``duration_s``). No frames give no segments.

    Args:
        times: frame times in seconds from the stream start, strictly increasing.
        vecs: (n, d) frame vectors with unit rows, one per time.
        threshold: pgclip.video_segment_threshold, a cosine similarity in [-1, 1].
        max_seconds: pgclip.video_max_segment_seconds, above 0.
        duration_s: the video's duration when known.
        fps: pgclip.video_fps, the rate the frames were sampled at.

    Raises:
        InvalidParameter: a setting out of range, or vectors that do not match the times.
        InvalidVideo: times not increasing, or a segment whose vectors have no mean direction.
    """
    if not -1.0 <= threshold <= 1.0:
        raise InvalidParameter(
            f"invalid value for pgclip.video_segment_threshold: {threshold}",
            hint="Use a cosine similarity from -1 to 1; a frame less similar than this to its "
            "segment starts a new one (default 0.85).",
        )
    if not max_seconds > 0:
        raise InvalidParameter(
            f"invalid value for pgclip.video_max_segment_seconds: {max_seconds}",
            hint="Use a number of seconds above 0 (default 10).",
        )
    rows = _rows(vecs)
    if len(times) != len(rows):
        raise InvalidParameter(f"{len(times)} frame times but {len(rows)} frame vectors",
                               hint="Pass one vector per frame time.")
    spans = frame_spans(times, duration_s, fps)
    if not spans:
        return []
    segments: list[Segment] = []
    first, total = 0, rows[0].copy()  # total: running sum, the segment's mean direction
    for i in range(1, len(rows)):
        joined = total + rows[i]
        similar = float(rows[i] @ total) >= threshold * float(np.linalg.norm(total))
        fits = spans[i][1] - spans[first][0] <= max_seconds + _SLACK_S
        # A frame that would cancel the mean out starts a new segment, so no mean is zero.
        if similar and fits and np.linalg.norm(joined) >= _MIN_NORM * (i - first + 1):
            total = joined
            continue
        segments.append(_segment(spans, rows, first, i - 1))
        first, total = i, rows[i].copy()
    segments.append(_segment(spans, rows, first, len(rows) - 1))
    return segments


def mean_vector(vecs: np.ndarray) -> np.ndarray:
    """The renormalised mean of unit rows: float64 sums, a float32 unit vector.

    Raises:
        InvalidVideo: no rows, or rows whose mean is (nearly) zero or not finite.
    """
    rows = _rows(vecs)
    if len(rows) == 0:
        raise InvalidVideo(
            "video has no frames to embed",
            hint="Check that the video has a video stream with at least one decodable frame.",
        )
    mean = rows.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if not (math.isfinite(norm) and norm >= _MIN_NORM):
        raise InvalidVideo(
            f"video frames cancel out: the mean of {len(rows)} frame vectors has no direction",
            hint="Frame embeddings of a real video do not cancel out; check the vectors passed.",
        )
    return (mean / norm).astype(np.float32)


def _rows(vecs: np.ndarray) -> np.ndarray:
    rows = np.asarray(vecs, dtype=np.float64)
    if rows.size == 0:
        return rows.reshape(0, rows.shape[-1] if rows.ndim == 2 else 0)
    if rows.ndim != 2:
        raise InvalidParameter(f"frame vectors must be an (n, d) array, not shape {rows.shape}",
                               hint="Pass one row per frame.")
    return rows


def _segment(spans: list[tuple[float, float]], rows: np.ndarray, first: int, last: int) -> Segment:
    return Segment(spans[first][0], spans[last][1], mean_vector(rows[first : last + 1]),
                   first, last)


def _check_fps(fps: float) -> None:
    if not (math.isfinite(fps) and fps > 0):
        raise InvalidParameter(
            f"invalid value for pgclip.video_fps: {fps}",
            hint="Use a number of frames per second above 0 (default 1.0).",
        )
