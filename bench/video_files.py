"""The generated videos of bench case video: 640x360 H.264 MP4 at 30 frames/s, moving shapes on
panning textured backgrounds with grain and a new scene every 4 to 16 s, so that the encoder
and the decoder have realistic work. Generated once under .pgclip/bench/videos/."""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.common import STATE, log

WIDTH, HEIGHT, RATE = 640, 360, 30
GEN = 1  # bump when the generator changes: the cached files are named after it
PAN = 96  # pixels of background beyond the frame, for the camera's pan


def _background(rng: random.Random) -> np.ndarray:
    """A gradient with coarse blotches and fine texture, larger than the frame (it pans)."""
    from PIL import Image

    h, w = HEIGHT + PAN, WIDTH + PAN
    a, b = (np.array([rng.randrange(256) for _ in range(3)], np.float32) for _ in range(2))
    bg = a + (b - a) * np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    for cells, scale, resample in ((24, 0.5, Image.BICUBIC), (w // 6, 0.2, Image.BILINEAR)):
        noise = np.array([[rng.randrange(256) for _ in range(cells)]
                          for _ in range(max(2, cells * h // w))], np.uint8)
        up = np.asarray(Image.fromarray(noise).resize((w, h), resample), np.float32)
        bg = bg + (up[..., None] - 128) * scale
    return np.clip(bg, 0, 255).astype(np.uint8)


def _sprite(rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, ImageDraw

    s = rng.randrange(40, 150)
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    fill = (*(rng.randrange(256) for _ in range(3)), 255)
    kind = rng.randrange(3)
    if kind == 0:
        draw.ellipse((0, 0, s - 1, s - 1), fill=fill)
    elif kind == 1:
        draw.rectangle((0, 0, s - 1, s - 1), fill=fill)
    else:
        draw.polygon([(s // 2, 0), (s - 1, s - 1), (0, s - 1)], fill=fill)
    arr = np.asarray(img)
    return arr[..., :3].copy(), arr[..., 3] > 0


def _frames(seconds: int, seed: int) -> Iterator[np.ndarray]:
    """Scenes of 4 to 16 s: a panning background, 3 to 6 shapes moving and bouncing, grain."""
    rng = random.Random(seed)
    grain = [np.random.default_rng(seed + k).integers(-6, 7, (HEIGHT, WIDTH, 3), np.int16)
             for k in range(4)]
    n, i = seconds * RATE, 0
    while i < n:
        scene = min(n - i, int(rng.uniform(4, 16) * RATE))
        bg = _background(rng)
        pan = (rng.uniform(-1.5, 1.5), rng.uniform(-0.7, 0.7))
        sprites = [[*_sprite(rng), rng.uniform(0, WIDTH - 150), rng.uniform(0, HEIGHT - 150),
                    rng.uniform(-6, 6), rng.uniform(-4, 4)] for _ in range(rng.randrange(3, 7))]
        for j in range(scene):
            ox, oy = int(PAN / 2 + pan[0] * j) % PAN, int(PAN / 2 + pan[1] * j) % PAN
            f = bg[oy:oy + HEIGHT, ox:ox + WIDTH].copy()
            for sp in sprites:
                rgb, mask, x, y, vx, vy = sp
                h, w = mask.shape
                x, y = x + vx, y + vy
                if not 0 <= x <= WIDTH - w:
                    vx, x = -vx, min(max(x, 0), WIDTH - w)
                if not 0 <= y <= HEIGHT - h:
                    vy, y = -vy, min(max(y, 0), HEIGHT - h)
                sp[2:] = [x, y, vx, vy]
                f[int(y):int(y) + h, int(x):int(x) + w][mask] = rgb[mask]
            shift = (rng.randrange(HEIGHT), rng.randrange(WIDTH))
            noisy = f.astype(np.int16) + np.roll(grain[(i + j) % 4], shift, (0, 1))
            yield np.clip(noisy, 0, 255).astype(np.uint8)
        i += scene


def encode(seconds: int, seed: int) -> bytes:
    """An H.264 MP4 (x264 veryfast, CRF 19, B-frames: about 1 Mbit/s at 640 x 360)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=RATE)
        s.width, s.height, s.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "19", "threads": "2", "x264-params": "log=-1"}
        for f in _frames(seconds, seed):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def video_files(lengths: tuple[int, ...], first_seed: int = 0) -> list[Path]:
    """The videos, generated once under .pgclip/bench/videos/ (about 20 s of encoding per
    minute of video on 2 cores)."""
    folder = STATE / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, seconds in enumerate(lengths, first_seed):
        path = folder / f"gen{GEN}-seed{i}-{seconds}s.mp4"
        if not path.exists():
            t0 = time.perf_counter()
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(encode(seconds, i))
            os.replace(tmp, path)
            log(f"video: generated {path.name} ({path.stat().st_size / 2**20:.1f} MiB) in "
                f"{time.perf_counter() - t0:.0f}s")
        paths.append(path)
    return paths


