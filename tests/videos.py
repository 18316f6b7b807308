"""Deterministic test videos, encoded in memory with PyAV, and their ground truth.

``encode`` writes frames at the presentation times it is given (constant or variable frame
rate) into MP4, WebM, Matroska or MPEG-TS. ``decoded_times`` reads back what a player would
see: each frame's time relative to the video stream's start time. For every container and
codec here, ``decoded_times(encode(frames, times))`` equals ``[t - times[0] for t in times]``
(each time rounded to the encoder's time base, and to the container's: WebM and Matroska keep
milliseconds), whatever ``start_s`` is; the tests in tests/plpython/test_video_generators.py
check this.

What the muxers do with timestamps (FFmpeg 8.1 through PyAV 18.1):

- MP4 stores times in its own timescale: a 1/1000 time base becomes 1/16000 (the muxer
  doubles it until it is at least 10,000). With B-frames (H.264 ``bf``) the first decode
  time is negative and an edit list makes presentation start at the first frame's time.
- WebM and Matroska always use 1/1000 whatever time base the encoder had.
- MPEG-TS uses 1/90000. Real TS files start near 1.4 s (the ``ffmpeg`` tool's mux delay),
  so ``encode`` starts them at 1.4 s by default. Started at 0 with B-frames, the muxer
  shifts the whole stream so no decode time is negative: the stream then starts at a time
  that depends on the B-frames (0.25 s in one test), not at 0.
- A first frame later than ``start_s`` moves the stream's start time with it.
- The last frame lasts as long as the gap before it, so a constant-rate video of n frames
  at ``fps`` has a container duration of n / fps (variable rate: muxer-dependent).

``planted_videos`` builds videos of shape scenes (``pgclip.shapes``) with one known event
each, for search quality tests.
"""

from __future__ import annotations

import functools
import io
import os
import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from pgclip import shapes

# Fast, quiet and reproducible settings per encoder; ``threads=1`` so that the bytes do not
# depend on the number of CPUs. H.264 gets B-frames so that decode order differs from
# presentation order, as in most real files.
ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"preset": "ultrafast", "bf": "2", "threads": "1", "x264-params": "log=-1"},
    "libx265": {"preset": "ultrafast", "threads": "1", "x265-params": "log-level=none"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "threads": "1"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "threads": "1"},
    "libsvtav1": {"preset": "12"},
    "mpeg4": {"threads": "1"},
}

# The (container, encoder) pairs that pgclip's default settings accept, plus MPEG-TS.
FORMATS: dict[str, tuple[str, str]] = {
    "mp4": ("mp4", "libx264"),
    "hevc": ("mp4", "libx265"),
    "mpeg4": ("mp4", "mpeg4"),
    "webm": ("webm", "libvpx-vp9"),
    "vp8": ("webm", "libvpx"),
    "mkv": ("matroska", "libx264"),
    "av1": ("matroska", "libsvtav1"),
    "ts": ("mpegts", "libx264"),
}

MPEGTS_START_S = 1.4
# Without it Matroska writes random segment and track UIDs: the same call would give other bytes.
BITEXACT = {"fflags": "+bitexact"}

Frame = Image.Image | np.ndarray | av.VideoFrame


def _video_frame(frame: Frame) -> av.VideoFrame:
    if isinstance(frame, av.VideoFrame):
        return frame
    if isinstance(frame, Image.Image):
        return av.VideoFrame.from_image(frame.convert("RGB"))
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8),
                                      format="rgb24")


def encode(
    frames: Sequence[Frame],
    times_s: Sequence[float],
    *,
    container: str = "mp4",
    codec: str = "libx264",
    time_base: Fraction = Fraction(1, 1000),
    pix_fmt: str = "yuv420p",
    start_s: float | None = None,
    options: Mapping[str, str] | None = None,
    container_options: Mapping[str, str] | None = None,
) -> bytes:
    """Encode frames shown at ``times_s``.

    Args:
        frames: PIL images, H x W x 3 uint8 RGB arrays or PyAV frames (a yuv420p frame skips
            the colour conversion: faster for huge frames), all of the same even size.
        times_s: strictly increasing presentation times in seconds (any spacing: variable
            frame rate is fine); frame i gets pts ``round((start_s + t) / time_base)``.
        container: an FFmpeg muxer name: "mp4", "webm", "matroska", "mpegts", ...
        codec: an FFmpeg encoder name, e.g. "libx264", "libvpx-vp9", "libx265".
        start_s: added to every time; None means 1.4 s for MPEG-TS, as real TS files have,
            and 0 for other containers.
        options: encoder options, over :data:`ENCODER_OPTIONS` (``{"bf": "0"}`` turns
            H.264 B-frames off).
        container_options: muxer options (e.g. ``{"movflags": "frag_keyframe+empty_moov"}``).

    Returns:
        The file's bytes.
    """
    if len(frames) != len(times_s) or not frames:
        raise ValueError("need one time per frame, and at least one frame")
    if any(b <= a for a, b in zip(times_s, times_s[1:], strict=False)):
        raise ValueError("times must increase")
    first = _video_frame(frames[0])
    if first.width % 2 or first.height % 2:
        raise ValueError("yuv420p needs even frame sizes")
    if start_s is None:
        start_s = MPEGTS_START_S if container == "mpegts" else 0.0
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stdout
    buf = io.BytesIO()
    muxer = {**BITEXACT, **(container_options or {})}
    with av.open(buf, mode="w", format=container, options=muxer) as out:
        # the frame rate sets how long the last frame lasts, and so the container's duration
        gap = times_s[-1] - times_s[-2] if len(times_s) > 1 else 0.1
        stream = out.add_stream(codec, rate=Fraction(1 / gap).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = first.width, first.height, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.options = {**ENCODER_OPTIONS.get(codec, {}), **(options or {})}
        for i, (frame, t) in enumerate(zip(frames, times_s, strict=True)):
            vf = first if i == 0 else _video_frame(frame)
            vf.pts = round((start_s + t) / time_base)
            vf.time_base = time_base
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return buf.getvalue()


def remux(data: bytes, container: str) -> bytes:
    """The same video packets in another container (no re-encoding)."""
    buf = io.BytesIO()
    with (av.open(io.BytesIO(data)) as src,
          av.open(buf, mode="w", format=container, options=BITEXACT) as out):
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:  # the demuxer's final empty packet
                packet.stream = stream
                out.mux(packet)
    return buf.getvalue()


def decoded_times(data: bytes) -> list[float]:
    """Each decoded frame's presentation time in seconds, relative to the video stream's start
    time (``(frame.pts - stream.start_time) * stream.time_base``), in decoding output order."""
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        times: list[float] = []
        start = stream.start_time
        for frame in c.decode(stream):
            if frame.pts is None:
                raise ValueError("a frame without pts")
            if start is None:  # raw streams: the first frame defines the start
                start = frame.pts
            times.append(float((frame.pts - start) * stream.time_base))
        return times


def expected_times(times_s: Sequence[float], time_base: Fraction = Fraction(1, 1000),
                   start_s: float | None = None, container: str = "mp4") -> list[float]:
    """What :func:`decoded_times` should return for ``encode(frames, times_s, ...)`` with the
    same arguments: the requested times rounded to ``time_base`` and made relative to the first
    one (to within a millisecond: WebM and Matroska round again to milliseconds)."""
    if start_s is None:
        start_s = MPEGTS_START_S if container == "mpegts" else 0.0
    ticks = [round((start_s + t) / time_base) for t in times_s]
    return [float((k - ticks[0]) * time_base) for k in ticks]


def changing_frames(n: int, pixels: int = 64, seed: int = 0) -> list[Image.Image]:
    """``n`` different frames (a random shape each): motion for the encoder to code."""
    rng = random.Random(seed)
    return [shapes.render(shapes.random_spec(rng), rng, pixels) for _ in range(n)]


def clip(fmt: str = "mp4", seconds: float = 1.0, fps: float = 10.0, pixels: int = 64,
         seed: int = 0) -> bytes:
    """A short constant-rate video of changing frames in one of :data:`FORMATS`."""
    n = max(1, round(seconds * fps))
    container, codec = FORMATS[fmt]
    return encode(changing_frames(n, pixels, seed), [i / fps for i in range(n)],
                  container=container, codec=codec)


def scene_video(
    specs_and_durations: Sequence[tuple[shapes.ShapeSpec, float]],
    fps: float = 10.0,
    pixels: int = 96,
    seed: int = 0,
    container: str = "mp4",
    codec: str = "libx264",
) -> bytes:
    """Scenes of one still ``shapes`` image each, held for its duration in seconds.

    Frames are at ``k / fps``; scene j covers the frames from ``round(fps * (d_0 + ... +
    d_{j-1}))`` up to the next scene's first frame, so durations that are multiples of
    ``1 / fps`` start and end exactly on frames.
    """
    rng = random.Random(seed)
    frames: list[Image.Image] = []
    elapsed = 0.0
    for spec, seconds in specs_and_durations:
        img = shapes.render(spec, rng, pixels)
        elapsed += seconds
        frames += [img] * (round(elapsed * fps) - len(frames))
    return encode(frames, [k / fps for k in range(len(frames))],
                  container=container, codec=codec)


def all_specs() -> list[shapes.ShapeSpec]:
    """Every shape spec whose shape can be seen (background differs from colour): 220."""
    return [shapes.ShapeSpec(c, s, z, b) for c in shapes.COLORS for s in shapes.SHAPES
            for z in shapes.SIZES for b in shapes.BACKGROUNDS if b != c]


@dataclass(frozen=True)
class PlantedVideo:
    data: bytes
    event: shapes.ShapeSpec
    event_start_s: float  # time of the event's first frame
    event_end_s: float    # time of the first frame after it (or the video's end)
    query: str            # event.caption()
    duration_s: float     # frames x 1 / fps
    scenes: tuple[tuple[shapes.ShapeSpec, float, float], ...]  # (spec, start_s, end_s)


PLANTED_FPS = 10


def _planted_frames(rng: random.Random) -> tuple[list[int], int]:
    """Scene lengths in frames (3-5 scenes, 12-20 s) and the event scene's index; the event
    (2-4 s) is never first and starts (and ends, unless last) between whole seconds."""
    while True:
        total = rng.randint(12 * PLANTED_FPS, 20 * PLANTED_FPS)
        count = rng.randint(3, 5)
        event = rng.randint(2 * PLANTED_FPS, 4 * PLANTED_FPS)
        at = rng.randrange(1, count)
        cuts = sorted(rng.sample(range(PLANTED_FPS, total - event - PLANTED_FPS + 1),
                                 count - 2))
        rest = [b - a for a, b in zip([0, *cuts], [*cuts, total - event], strict=True)]
        if min(rest) < PLANTED_FPS:  # every other scene lasts at least a second
            continue
        lengths = rest[:at] + [event] + rest[at:]
        start = sum(lengths[:at])
        end = start + event
        if start % PLANTED_FPS and (end == total or end % PLANTED_FPS):
            return lengths, at


@functools.cache
def _planted(n: int, seed: int) -> tuple[PlantedVideo, ...]:
    rng = random.Random(seed)
    specs = all_specs()
    rng.shuffle(specs)
    if n > len(specs) // 2:
        raise ValueError(f"at most {len(specs) // 2} planted videos")
    events, others = specs[:n], specs[n:]  # others never appear as an event
    out = []
    for i, event in enumerate(events):
        lengths, at = _planted_frames(rng)
        scene_specs = rng.sample(others, len(lengths) - 1)
        scene_specs.insert(at, event)
        bounds = np.cumsum([0, *lengths]) / PLANTED_FPS
        scenes = tuple((s, float(a), float(b))
                       for s, a, b in zip(scene_specs, bounds, bounds[1:], strict=False))
        data = scene_video([(s, k / PLANTED_FPS) for s, k in zip(scene_specs, lengths,
                                                                  strict=True)],
                           fps=PLANTED_FPS, pixels=96, seed=seed * 1000 + i)
        out.append(PlantedVideo(data=data, event=event, event_start_s=scenes[at][1],
                                event_end_s=scenes[at][2], query=event.caption(),
                                duration_s=float(bounds[-1]), scenes=scenes))
    return tuple(out)


def planted_videos(n: int = 100, seed: int = 11) -> list[PlantedVideo]:
    """``n`` H.264 MP4 videos (96 x 96, 10 fps, 12-20 s, 3-5 scenes of still shapes) with
    exactly one 2-4 s event scene each. Events are distinct, and no event spec appears as
    another scene in any video, so each query has one right answer. Cached per (n, seed)."""
    return list(_planted(n, seed))


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """An image (H x W x 3 uint8 or PIL) as PNG bytes."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def faststart(mp4: bytes) -> bytes:
    """An MP4 with its 'moov' box moved before 'mdat' (as ``-movflags faststart`` does, which
    PyAV cannot do in memory): chunk offsets in 'stco' grow by the size of 'moov'."""
    top = [(path, off, size) for path, off, size in mp4_boxes(mp4) if "/" not in path]
    moov = next((off, size) for path, off, size in top if path == "moov")
    buf = bytearray(mp4)
    for path, off, _ in mp4_boxes(mp4):
        if path.endswith("/stco"):
            count = struct.unpack_from(">I", buf, off + 12)[0]
            for k in range(off + 16, off + 16 + 4 * count, 4):
                struct.pack_into(">I", buf, k, struct.unpack_from(">I", buf, k)[0] + moov[1])
    boxes = {path: bytes(buf[off:off + size]) for path, off, size in top}
    order = ["ftyp", "moov"] + [p for p, _, _ in top if p not in ("ftyp", "moov")]
    return b"".join(boxes[p] for p in order)


# Boxes that hold other boxes, and how many bytes of their own fields come first.
MP4_CONTAINERS = {"moov": 0, "trak": 0, "mdia": 0, "minf": 0, "stbl": 0, "dinf": 0,
                  "edts": 0, "mvex": 0, "moof": 0, "traf": 0, "udta": 0, "stsd": 8,
                  "dref": 8, "avc1": 78, "hvc1": 78, "hev1": 78, "mp4v": 78, "vp09": 78}


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None,
              parent: str = "") -> list[tuple[str, int, int]]:
    """Every box of an MP4 as (path such as "moov/trak/tkhd", offset of its header, size),
    parents before children. Stops quietly at a box that does not fit (truncated files)."""
    end = len(data) if end is None else end
    out: list[tuple[str, int, int]] = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        name = kind.decode("latin-1")
        path = f"{parent}/{name}" if parent else name
        out.append((path, pos, size))
        if name in MP4_CONTAINERS:
            out += mp4_boxes(data, pos + header + MP4_CONTAINERS[name], pos + size, path)
        pos += size
    return out


# Matroska elements that hold others: Segment, Tracks, TrackEntry, Video, Info, Cluster.
MKV_MASTERS = {0x18538067, 0x1654AE6B, 0xAE, 0xE0, 0x1549A966, 0x1F43B675}


def ebml_vint(data: bytes, pos: int) -> tuple[int, int]:
    """An EBML variable-length integer at ``pos``, marker bit kept, and its length."""
    n = 1
    while n < 8 and not data[pos] & (0x80 >> (n - 1)):
        n += 1
    return int.from_bytes(data[pos:pos + n], "big"), n


def mkv_elements(data: bytes, start: int = 0, end: int | None = None,
                 deep: bool = True) -> list[tuple[int, int, int, int]]:
    """Matroska elements as (id, offset, data offset, data size), parents before children
    (with ``deep``); it stops at the end of the data, so damaged files parse too."""
    end = len(data) if end is None else end
    out, pos = [], start
    while pos + 2 <= end:
        eid, a = ebml_vint(data, pos)
        size, b = ebml_vint(data, pos + a)
        size &= (1 << (7 * b)) - 1
        if size == (1 << (7 * b)) - 1:  # unknown size: runs to the end of the parent
            size = end - pos - a - b
        size = min(size, end - pos - a - b)
        if size < 0:
            break
        out.append((eid, pos, pos + a + b, size))
        if deep and eid in MKV_MASTERS:
            out += mkv_elements(data, pos + a + b, pos + a + b + size)
        pos += a + b + size
    return out
