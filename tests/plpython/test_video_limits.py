"""pgclip.video.limits: the container told by its first bytes, the session's video settings
parsed (defaults, units, aliases, and every invalid value an error naming its setting) and the
fps argument of clip_video_frames."""

from __future__ import annotations

import math

import pytest

from pgclip.errors import InvalidParameter
from pgclip.video import limits
from pgclip.video.limits import VideoLimits, VideoSettings
from tests import videos
from tests.helpers import image_bytes


@pytest.mark.parametrize("fmt,want", [("mp4", "mp4"), ("mpeg4", "mp4"), ("webm", "matroska"),
                                      ("mkv", "matroska"), ("ts", "mpegts")])
def test_sniff_each_container(fmt: str, want: str) -> None:
    assert limits.sniff(videos.clip(fmt, 0.5, 10.0, 32)) == want


def test_sniff_mov_faststart_and_fragmented_mp4() -> None:
    mp4 = videos.clip("mp4", 0.5, 10.0, 32)
    assert limits.sniff(videos.remux(mp4, "mov")) == "mp4"
    assert limits.sniff(videos.faststart(mp4)) == "mp4"
    fragmented = videos.encode(videos.changing_frames(5, 32), [i / 10 for i in range(5)],
                               container_options={"movflags": "frag_keyframe+empty_moov"})
    assert limits.sniff(fragmented) == "mp4"


def test_sniff_a_short_mpegts_prefix() -> None:
    ts = videos.clip("ts", 0.5, 10.0, 32)
    assert limits.sniff(ts[:189]) == "mpegts"  # two sync bytes, no room for a third
    assert limits.sniff(ts[:188]) is None  # one packet is not enough to tell


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 100, b"<html>not a video</html>" * 20, b"\x1a\x45\xdf",
    b"G" + b"\x00" * 400,  # one TS sync byte, not every 188 bytes
    b"G" + b"\x00" * 187 + b"G" + b"\x00" * 187 + b"x" + b"\x00" * 100,
    b"\x00\x00\x00\x18ftxp" + b"\x00" * 40,
], ids=["empty", "zeros", "html", "short-ebml", "one-sync", "two-syncs", "not-a-box"])
def test_sniff_refuses_other_bytes(data: bytes) -> None:
    assert limits.sniff(data) is None


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_sniff_refuses_images(fmt: str) -> None:
    from PIL import Image

    assert limits.sniff(image_bytes(Image.new("RGB", (16, 16), "red"), fmt)) is None


def test_parse_defaults() -> None:
    assert limits.parse({}) == VideoSettings()
    assert limits.parse({n: None for n in limits.NAMES}) == VideoSettings()
    assert limits.parse({n: "" for n in limits.NAMES}) == VideoSettings()
    d = VideoLimits()
    assert (d.max_bytes, d.max_seconds, d.max_pixels) == (256 * 1024**2, 7200.0, 3840 * 2160)
    assert (d.max_decoded_frames, d.max_samples, d.timeout_s) == (500_000, 10_000, 600.0)
    assert d.memory_bytes == 2 * 1024**3
    assert d.containers == ("mp4", "matroska")
    assert d.codecs == ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4")
    s = VideoSettings()
    assert (s.fps, s.segment_threshold, s.max_segment_seconds, s.sync_max_seconds) == \
        (1.0, 0.85, 10.0, 60.0)


def test_parse_values_units_and_aliases() -> None:
    s = limits.parse({
        "max_video_bytes": "1GB", "max_video_seconds": "90.5", "max_video_pixels": "1000",
        "max_video_frames": "10", "max_video_samples": "3", "video_timeout": "2min",
        "video_memory": "512MB", "video_containers": "MKV, ts  mp4,mov",
        "video_codecs": "avc h265,mpeg2,mjpeg", "video_fps": "0.2",
        "video_segment_threshold": "-0.5", "video_max_segment_seconds": "4",
        "video_sync_max_seconds": "0"})
    lim = s.limits
    assert (lim.max_bytes, lim.max_seconds, lim.max_pixels) == (1024**3, 90.5, 1000)
    assert (lim.max_decoded_frames, lim.max_samples, lim.timeout_s) == (10, 3, 120.0)
    assert lim.memory_bytes == 512 * 1024**2
    assert lim.containers == ("matroska", "mpegts", "mp4")  # mov is mp4: named once
    assert lim.codecs == ("h264", "hevc", "mpeg2video", "mjpeg")
    assert (s.fps, s.segment_threshold, s.max_segment_seconds, s.sync_max_seconds) == \
        (0.2, -0.5, 4.0, 0.0)


@pytest.mark.parametrize("raw,seconds", [("30", 30.0), ("500ms", 0.5), ("1.5s", 1.5),
                                         ("1h", 3600.0)])
def test_video_timeout_bare_number_is_seconds(raw: str, seconds: float) -> None:
    assert limits.parse({"video_timeout": raw}).limits.timeout_s == seconds


INVALID = [
    ("max_video_bytes", "lots"), ("max_video_bytes", "0"), ("max_video_bytes", "-5"),
    ("max_video_bytes", "1XB"), ("max_video_bytes", "1.5MB"),
    ("max_video_seconds", "0"), ("max_video_seconds", "soon"), ("max_video_seconds", "nan"),
    ("max_video_seconds", "1e8"), ("max_video_seconds", "-1"),
    ("max_video_pixels", "0"), ("max_video_pixels", "1kB"), ("max_video_pixels", "x"),
    ("max_video_frames", "0"), ("max_video_frames", "1.5"),
    ("max_video_samples", "-3"), ("max_video_samples", "many"),
    ("video_timeout", "0"), ("video_timeout", "0ms"), ("video_timeout", "soon"),
    ("video_timeout", "-1s"), ("video_timeout", "5 days"),
    ("video_memory", "lots"), ("video_memory", "0"),
    ("video_containers", "avi"), ("video_containers", "mp4,flv"), ("video_containers", ","),
    ("video_containers", "hls"), ("video_containers", "concat"),
    ("video_codecs", "prores"), ("video_codecs", "h264 rawvideo"), ("video_codecs", " , "),
    ("video_fps", "0"), ("video_fps", "61"), ("video_fps", "-1"), ("video_fps", "fast"),
    ("video_fps", "inf"),
    ("video_segment_threshold", "1.5"), ("video_segment_threshold", "-2"),
    ("video_max_segment_seconds", "0"), ("video_max_segment_seconds", "x"),
    ("video_sync_max_seconds", "-1"),
]


def test_every_setting_has_invalid_cases() -> None:
    assert {name for name, _ in INVALID} == set(limits.NAMES)


@pytest.mark.parametrize("name,raw", INVALID)
def test_invalid_setting_is_22023_naming_it(name: str, raw: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        limits.parse({name: raw})
    assert exc.value.sqlstate == "22023"
    assert f"pgclip.{name}" in exc.value.message
    assert exc.value.hint


@pytest.mark.parametrize("fps", [0.001, 0.2, 1, 30, 60.0])
def test_parse_fps_valid(fps: float) -> None:
    got = limits.parse_fps(fps)
    assert got == fps and isinstance(got, float)


@pytest.mark.parametrize("fps", [None, 0, 0.0, -1, 60.01, 1000, math.nan, math.inf])
def test_parse_fps_invalid(fps: float | None) -> None:
    with pytest.raises(InvalidParameter) as exc:
        limits.parse_fps(fps)
    assert exc.value.sqlstate == "22023"
    assert "fps must be above 0 and at most 60" in exc.value.message
    assert exc.value.hint


def test_defers_long_and_undeclared_videos_only_when_asked() -> None:
    assert not limits.defers(None, None) and not limits.defers(3600.0, None)
    assert limits.defers(None, 60.0)  # no declared duration: left to the queue
    assert limits.defers(60.5, 60.0) and not limits.defers(60.0, 60.0)
