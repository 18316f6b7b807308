"""A video's vectors: its sampled frames, its segments and the whole video, from one decode.

Frames are embedded exactly as ``clip_embed_image`` embeds a picture (the decoded RGB frame
through the model's own preprocessing), in batches, while the decoder process decodes the next
ones. The segments and the whole-video vector are renormalised means of frame vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pgclip import embedding
from pgclip.loading import LoadedModel
from pgclip.video import sandbox, segments
from pgclip.video.limits import VideoSettings, defers


@dataclass(frozen=True)
class VideoEmbedding:
    info: sandbox.VideoInfo
    times: list[float]  # seconds from the stream's start, increasing
    frames: np.ndarray  # (len(times), d) unit rows
    segments: list[segments.Segment]
    vector: np.ndarray  # the whole video: renormalised mean of the frames


def embed_frames(lm: LoadedModel, data: bytes, vs: VideoSettings, fps: float, batch_size: int,
                 check: Callable[[], None] = sandbox.no_check, defer_above: float | None = None
                 ) -> tuple[sandbox.VideoInfo, list[float], np.ndarray]:
    """Decode and embed the frames kept at ``fps``: ``(info, times, (n, d) vectors)``; none
    for a video that :func:`limits.defers` past ``defer_above``."""
    info, it = sandbox.info_and_frames(data, fps, vs.limits, check, defer_above)
    times: list[float] = []
    parts: list[np.ndarray] = []
    batch: list[Image.Image] = []
    try:
        for t, rgb in it:
            times.append(t)
            batch.append(Image.fromarray(rgb, "RGB"))
            if len(batch) >= batch_size:
                parts.append(embedding.embed_images(lm, batch))
                batch = []
                check()
    finally:
        it.close()  # kills a decoder still sending, if embedding failed
    if batch:
        parts.append(embedding.embed_images(lm, batch))
    vecs = np.concatenate(parts) if parts else np.zeros((0, lm.embed_dim), np.float32)
    return info, times, vecs


def embed_video(lm: LoadedModel, data: bytes, vs: VideoSettings, batch_size: int,
                check: Callable[[], None] = sandbox.no_check, *, fps: float | None = None,
                threshold: float | None = None, max_segment_s: float | None = None,
                defer_above: float | None = None) -> VideoEmbedding | None:
    """Frames, segments and the whole-video vector; None for a video that
    :func:`limits.defers` past ``defer_above`` (a writer's statement leaves it to the queue).
    A column's recorded sampling rate and segment settings override the session's (``fps``,
    ``threshold``, ``max_segment_s``)."""
    fps = vs.fps if fps is None else fps
    info, times, vecs = embed_frames(lm, data, vs, fps, batch_size, check, defer_above)
    if defers(info.duration_s, defer_above):
        return None
    segs = segments.cut(
        times, vecs, fps=fps, duration_s=info.duration_s,
        threshold=vs.segment_threshold if threshold is None else threshold,
        max_seconds=vs.max_segment_seconds if max_segment_s is None else max_segment_s)
    return VideoEmbedding(info, times, vecs, segs, segments.mean_vector(vecs))
