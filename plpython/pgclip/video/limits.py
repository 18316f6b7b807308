"""What a video may be before pgclip decodes it, and the video settings of a session.

The limits are checked before decoding (bytes, the container told by its magic bytes, the
declared codec, size and duration) and again while decoding (each frame's size, its time, the
frames decoded and kept, wall time, memory), each failure naming its setting. The container is
recognised here, from the bytes, and the decoder process is then told which demuxer to use:
FFmpeg never probes the input, so no playlist or script demuxer (HLS, concat, SDP) can run and
open other files or URLs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pgclip.errors import InvalidParameter
from pgclip.units import parse_float, parse_int, parse_seconds

MIB = 1024**2
# pgclip's container name -> FFmpeg's demuxer.
DEMUXERS = {"mp4": "mov", "matroska": "matroska", "mpegts": "mpegts"}
CONTAINER_ALIASES = {"mov": "mp4", "quicktime": "mp4", "m4v": "mp4", "mkv": "matroska",
                     "webm": "matroska", "ts": "mpegts"}
DEFAULT_CONTAINERS = ("mp4", "matroska")
USER_CONTAINERS = (*DEFAULT_CONTAINERS, "mpegts")
DEFAULT_CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4")
USER_CODECS = (*DEFAULT_CODECS, "mpeg2video", "mjpeg")
CODEC_ALIASES = {"avc": "h264", "h265": "hevc", "mpeg2": "mpeg2video", "divx": "mpeg4"}
# ISO base media box types that can open an MP4/MOV file.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
_TS_PACKET = 188


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 256 * MIB
    max_seconds: float = 7200.0  # declared and decoded duration
    max_pixels: int = 3840 * 2160  # per frame, declared and decoded
    max_decoded_frames: int = 500_000
    max_samples: int = 10_000  # frames kept per video
    timeout_s: float = 600.0  # the decoder's wall time for one video
    memory_bytes: int = 2048 * MIB  # the decoder process's data segment
    containers: tuple[str, ...] = DEFAULT_CONTAINERS
    codecs: tuple[str, ...] = DEFAULT_CODECS


@dataclass(frozen=True)
class VideoSettings:
    limits: VideoLimits = field(default_factory=VideoLimits)
    fps: float = 1.0  # frames kept per second of video
    segment_threshold: float = 0.85  # cosine similarity below which a new segment starts
    max_segment_seconds: float = 10.0
    sync_max_seconds: float = 60.0  # longer videos of a sync column go to clip_queue


# The session settings (pgclip.<name>) read here.
NAMES = ("max_video_bytes", "max_video_seconds", "max_video_pixels", "max_video_frames",
         "max_video_samples", "video_timeout", "video_memory", "video_containers",
         "video_codecs", "video_fps", "video_segment_threshold", "video_max_segment_seconds",
         "video_sync_max_seconds")
MAX_FPS = 60.0


def sniff(data: bytes) -> str | None:
    """The container of ``data`` from its first bytes: 'mp4', 'matroska', 'mpegts' or None."""
    if len(data) >= 8 and data[4:8] in _MP4_BOXES:
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if len(data) > _TS_PACKET and data[0] == 0x47 and data[_TS_PACKET] == 0x47 and (
            len(data) <= 2 * _TS_PACKET or data[2 * _TS_PACKET] == 0x47):
        return "mpegts"
    return None


def defers(duration_s: float | None, defer_above: float | None) -> bool:
    """Whether a writer's statement leaves this video to the queue: it declares no duration,
    or a longer one than ``defer_above`` (pgclip.video_sync_max_seconds; None: never)."""
    return defer_above is not None and (duration_s is None or duration_s > defer_above)


def parse_fps(fps: float | None) -> float:
    """A sampling rate passed to a function (frames kept per second of video)."""
    if fps is None or not 0 < fps <= MAX_FPS:
        raise InvalidParameter(f"fps must be above 0 and at most {MAX_FPS:g}, got {fps}",
                               hint="Use e.g. 1.0 (a frame a second) or 0.2 (one in 5 s).")
    return float(fps)


def _names(setting: str, raw: str | None, default: tuple[str, ...], allowed: tuple[str, ...],
           aliases: dict[str, str]) -> tuple[str, ...]:
    if raw is None or raw.strip() == "":
        return default
    names: list[str] = []
    for part in re.split(r"[,\s]+", raw.strip().lower()):
        if not part:
            continue
        name = aliases.get(part, part)
        if name not in allowed:
            raise InvalidParameter(
                f'pgclip.{setting} names "{part}", which pgclip does not decode',
                detail=f'The setting is "{raw}".',
                hint=f"Use some of: {', '.join(allowed)}.",
            )
        if name not in names:
            names.append(name)
    if not names:
        raise InvalidParameter(f'pgclip.{setting} names nothing: "{raw}"',
                               hint=f"Use e.g. {','.join(default)}, or RESET pgclip.{setting}.")
    return tuple(names)


def parse(raw: Mapping[str, str | None]) -> VideoSettings:
    """:class:`VideoSettings` from ``{name: value-or-None}`` (names of :data:`NAMES`)."""
    b, d = VideoLimits(), VideoSettings()
    limits = VideoLimits(
        max_bytes=parse_int("max_video_bytes", raw.get("max_video_bytes"), b.max_bytes,
                            units=True),
        max_seconds=parse_float("pgclip.max_video_seconds", raw.get("max_video_seconds"),
                                b.max_seconds, 0.001, 1e7),
        max_pixels=parse_int("max_video_pixels", raw.get("max_video_pixels"), b.max_pixels),
        max_decoded_frames=parse_int("max_video_frames", raw.get("max_video_frames"),
                                     b.max_decoded_frames),
        max_samples=parse_int("max_video_samples", raw.get("max_video_samples"), b.max_samples),
        timeout_s=parse_seconds("pgclip.video_timeout", raw.get("video_timeout"), b.timeout_s,
                                bare="s"),
        memory_bytes=parse_int("video_memory", raw.get("video_memory"), b.memory_bytes,
                               units=True),
        containers=_names("video_containers", raw.get("video_containers"), DEFAULT_CONTAINERS,
                          USER_CONTAINERS, CONTAINER_ALIASES),
        codecs=_names("video_codecs", raw.get("video_codecs"), DEFAULT_CODECS, USER_CODECS,
                      CODEC_ALIASES),
    )
    if limits.timeout_s <= 0:
        raise InvalidParameter("pgclip.video_timeout must be positive",
                               hint="Use a duration such as 10min or 30s.")
    return VideoSettings(
        limits=limits,
        fps=parse_float("pgclip.video_fps", raw.get("video_fps"), d.fps, 0.001, MAX_FPS),
        segment_threshold=parse_float("pgclip.video_segment_threshold",
                                      raw.get("video_segment_threshold"), d.segment_threshold,
                                      -1.0, 1.0),
        max_segment_seconds=parse_float("pgclip.video_max_segment_seconds",
                                        raw.get("video_max_segment_seconds"),
                                        d.max_segment_seconds, 0.001, 1e7),
        sync_max_seconds=parse_float("pgclip.video_sync_max_seconds",
                                     raw.get("video_sync_max_seconds"), d.sync_max_seconds,
                                     0.0, 1e7),
    )
