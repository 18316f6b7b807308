"""Sample videos for `make demo` and sql/examples/video_search.sql: scenes of the sample images
(:func:`pgclip.shapes.write_samples`), each held for some seconds, encoded as H.264 MP4.

Needs PyAV; runs in the demo's or a test's process, never in a backend.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pgclip import shapes

FPS = 10
PIXELS = 128
# name -> scenes (sample image name, seconds); each video has one moment worth finding.
SAMPLE_VIDEOS: dict[str, tuple[tuple[str, float], ...]] = {
    "parade.mp4": (("green_square", 4.0), ("yellow_cross", 5.0), ("red_circle", 3.0),
                   ("white_diamond", 4.0)),
    "harbour.mp4": (("blue_triangle", 6.0), ("orange_diamond", 3.0), ("black_square", 5.0)),
    "garden.mp4": (("purple_cross", 5.0), ("green_circle", 4.0), ("yellow_triangle", 3.0),
                   ("blue_square", 4.0)),
    "night.mp4": (("white_circle", 4.0), ("black_cross", 4.0), ("orange_square", 4.0)),
}


def encode_mp4(frames: list[Image.Image], fps: int = FPS) -> bytes:
    """H.264 in MP4, one frame every 1/fps seconds."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(img.convert("RGB")), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def write_samples(folder: Path) -> list[Path]:
    """The sample videos in ``folder``, made from the sample images (which it writes too)."""
    shapes.write_samples(folder)
    images = {p.stem: Image.open(p).convert("RGB").resize((PIXELS, PIXELS))
              for p in folder.glob("*.png")}
    written = []
    for name, scenes in SAMPLE_VIDEOS.items():
        frames = [images[scene] for scene, seconds in scenes for _ in range(int(seconds * FPS))]
        path = folder / name
        path.write_bytes(encode_mp4(frames))
        path.chmod(0o644)
        written.append(path)
    return written


def moments(name: str) -> list[tuple[str, float, float]]:
    """Each scene of a sample video: (sample image, start, end) in seconds."""
    out, t = [], 0.0
    for scene, seconds in SAMPLE_VIDEOS[name]:
        out.append((scene, t, t + seconds))
        t += seconds
    return out
