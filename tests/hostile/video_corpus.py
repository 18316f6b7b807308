"""A deterministic corpus of malformed and hostile video bytes, generated (never committed).

``corpus()`` returns at least 2,000 ``(name, bytes)`` pairs built from small valid videos
(tests/videos.py: MP4 with H.264 (moov last, moov first, fragmented), HEVC, MPEG-4 Part 2,
WebM with VP9 and VP8, Matroska with H.264 and AV1, MPEG-TS), by:

- cutting them short at many offsets: in the headers, inside the first frame, and later;
- flipping 1, 8 or 64 random bits, and overwriting runs of bytes with 0x00 or 0xFF;
- declaring huge frames (MP4 'tkhd' and sample entry, Matroska PixelWidth/PixelHeight),
  hours of play (MP4 'mvhd'/'mdhd'/'tkhd'/'elst'/'stts', Matroska Duration), billions of
  samples, and box or element sizes past the end of the file;
- dropping, duplicating and reordering boxes, elements and TS packets;
- a real 4096 x 4096 frame, once in a truthful container and once in one that says 256 x 256;
- playlists and other indirections (HLS, ffconcat, SDP, an MP4 'dref' to an external file)
  that must never make the decoder open another file or the network;
- other formats pgclip does not accept (AVI, FLV, NUT, raw H.264, IVF, MPEG-PS, images,
  animated GIF/WebP/PNG, audio only, subtitles), empty and random bytes.

Each item is under 100 kB and the whole corpus builds in a few seconds; the same seed gives
the same bytes with the same PyAV/FFmpeg build. Names say what was done, e.g.
``truncate/webm@123`` or ``huge-dims/mp4-tkhd-65535x65535``.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np

from tests import videos

MAX_ITEM_BYTES = 100_000


# --- valid bases ---------------------------------------------------------------------------

@functools.cache
def base_videos() -> dict[str, bytes]:
    """Small valid videos (64 x 64, 1.5 s at 10 fps) that the mutations start from."""
    out = {fmt: videos.clip(fmt, 1.5, pixels=64, seed=i)
           for i, fmt in enumerate(("mp4", "hevc", "mpeg4", "webm", "vp8", "mkv", "av1", "ts"))}
    out["mp4-faststart"] = videos.faststart(out["mp4"])
    out["hevc"] = videos.faststart(out["hevc"])
    out["fmp4"] = videos.encode(videos.changing_frames(15, 64, 9), [k / 10 for k in range(15)],
                                container_options={"movflags": "frag_keyframe+empty_moov"})
    return out


@functools.cache
def _wide_bases() -> dict[str, bytes]:
    """256 x 256 videos: their Matroska PixelWidth/PixelHeight take two bytes, so they can be
    patched in place to any size up to 65535."""
    return {fmt: videos.clip(fmt, 0.5, pixels=256, seed=20) for fmt in ("mp4", "mkv", "webm")}


@functools.cache
def _real_huge() -> bytes:
    """One real 4096 x 4096 frame (16.8 Mpixels, above the default limit), flat grey; yuv420p
    input skips the colour conversion so it encodes in a fraction of a second."""
    frame = av.VideoFrame.from_ndarray(np.full((4096 * 3 // 2, 4096), 100, np.uint8),
                                       format="yuv420p")
    return videos.encode([frame], [0.0], options={"bf": "0"})


def _first_packet(data: bytes) -> tuple[int, int]:
    """Byte offset and size of the first video packet: cuts inside it stop a decoder
    mid-frame, after the container's headers have been read."""
    with av.open(io.BytesIO(data)) as c:
        for packet in c.demux(c.streams.video[0]):
            if packet.pos is not None and packet.pos >= 0:
                return packet.pos, packet.size
    raise ValueError("no packet")


# --- MP4 and Matroska patching -------------------------------------------------------------

def _box(data: bytes, path: str) -> tuple[int, int]:
    return next((off, size) for p, off, size in videos.mp4_boxes(data) if p == path)


STBL = "moov/trak/mdia/minf/stbl"


def _patch(data: bytes, offset: int, fmt: str, *values: int | float) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


def _mp4_dims(data: bytes, w: int, h: int, where: str) -> bytes:
    if where in ("tkhd", "both"):  # 16.16 fixed point, the last 8 bytes of 'tkhd'
        off, size = _box(data, "moov/trak/tkhd")
        data = _patch(data, off + size - 8, ">II", w << 16, h << 16)
    if where in ("entry", "both"):  # the visual sample entry: width, height at +32
        entry = next(p for p, _, _ in videos.mp4_boxes(data)
                     if p.startswith(STBL + "/stsd/") and p.count("/") == 6)
        off, _ = _box(data, entry)
        data = _patch(data, off + 32, ">HH", w, h)
    return data


def _mp4_duration(data: bytes, box: str, seconds: float) -> bytes:
    """Overwrite a duration field, in the timescale that applies to it; "all" patches every
    one, so that the edit list lets the far-apart frames through."""
    if box == "all":
        for each in ("mvhd", "mdhd", "tkhd", "elst", "stts"):
            data = _mp4_duration(data, each, seconds)
        return data
    # (box, offset of the field, box whose timescale applies); version 0 boxes, as FFmpeg writes
    path, field, scale_box = {"mvhd": ("moov/mvhd", 24, "moov/mvhd"),
                              "mdhd": ("moov/trak/mdia/mdhd", 24, "moov/trak/mdia/mdhd"),
                              "tkhd": ("moov/trak/tkhd", 28, "moov/mvhd"),
                              "elst": ("moov/trak/edts/elst", 16, "moov/mvhd"),
                              "stts": (STBL + "/stts", 20, "moov/trak/mdia/mdhd")}[box]
    scale = struct.unpack_from(">I", data, _box(data, scale_box)[0] + 20)[0]
    off, _ = _box(data, path)
    if box != "stts":
        return _patch(data, off + field, ">I", min(round(seconds * scale), 0xFFFFFFFF))
    # frames far apart, so that the decoded times add up to `seconds` too
    entries = struct.unpack_from(">I", data, off + 12)[0]
    frames = sum(struct.unpack_from(">I", data, off + 16 + 8 * k)[0] for k in range(entries))
    for k in range(entries):
        delta = min(round(seconds * scale / frames), 0xFFFFFFFF)
        data = _patch(data, off + 20 + 8 * k, ">I", delta)
    return data


def _mp4_replace(data: bytes, path: str, new: bytes) -> bytes:
    """Replace one box and fix the sizes of the boxes around it."""
    off, size = _box(data, path)
    delta = len(new) - size
    buf = bytearray(data[:off] + new + data[off + size:])
    for p, o, s in videos.mp4_boxes(data):
        if path.startswith(p + "/"):
            struct.pack_into(">I", buf, o, s + delta)
    return bytes(buf)


def _fix_crcs(data: bytes) -> bytes:
    """Recompute the CRC-32 elements that Matroska (not WebM) puts first in each top-level
    element. FFmpeg ignores them unless told to check (``err_detect crccheck``); other
    readers may drop a patched element instead of reading the value."""
    buf = bytearray(data)
    elements = videos.mkv_elements(data)
    for eid, _, dpos, size in elements:
        if eid in videos.MKV_MASTERS and data[dpos:dpos + 2] == b"\xbf\x84":
            struct.pack_into("<I", buf, dpos + 2, zlib.crc32(buf[dpos + 6:dpos + size]))
    return bytes(buf)


def _mkv_set(data: bytes, eid: int, value: int | float) -> bytes:
    """Overwrite every element ``eid`` in place (same length), then fix the CRCs."""
    buf = bytearray(data)
    for e, _, dpos, size in videos.mkv_elements(data):
        if e == eid:
            if isinstance(value, float):
                struct.pack_into(">d" if size == 8 else ">f", buf, dpos, value)
            else:
                buf[dpos:dpos + size] = min(value, 256**size - 1).to_bytes(size, "big")
    return _fix_crcs(bytes(buf))


# --- mutation families ---------------------------------------------------------------------

Items = list[tuple[str, bytes]]


def _spread(rng: random.Random, lo: int, hi: int, k: int) -> list[int]:
    return sorted({rng.randrange(lo, hi) for _ in range(k)}) if hi > lo else []


def _truncations(name: str, data: bytes, rng: random.Random) -> Items:
    pos, size = _first_packet(data)
    cuts = set(range(min(48, len(data))))                    # every byte of the first headers
    cuts.update(_spread(rng, 48, pos, 24))                   # the rest of the headers
    cuts.update(_spread(rng, pos, pos + size, 40))           # inside the first frame
    cuts.update(_spread(rng, pos + size, len(data), 20))     # later frames, the index
    if data[4:8] == b"ftyp":                                 # inside 'moov', wherever it is
        off, _ = _box(data, "moov")
        cuts.update(_spread(rng, off, len(data), 20))
    return [(f"truncate/{name}@{n}", data[:n]) for n in sorted(cuts)]


def _flip(data: bytes, rng: random.Random, bits: int, lo: int, hi: int) -> bytes:
    buf = bytearray(data)
    for _ in range(bits):
        buf[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _bitflips(name: str, data: bytes, rng: random.Random, count: int = 10) -> Items:
    pos, size = _first_packet(data)
    out = []
    for bits in (1, 8, 64):
        for i in range(count):  # half in the headers and first frame, where damage matters
            hi = pos + size if i % 2 else len(data)
            flipped = _flip(data, rng, bits, 0, hi)
            out.append((f"bitflip{bits}/{name}#{i}", flipped))
            if name == "mkv" and i < 3:  # valid CRCs, for demuxers that check them
                out.append((f"bitflip{bits}-crc-fixed/{name}#{i}", _fix_crcs(flipped)))
    return out


def _reorders(label: str, parts: list[tuple[str, bytes]], rng: random.Random,
              join: Callable[[list[bytes]], bytes] = b"".join) -> Items:
    """Each part dropped and duplicated, then all reversed and shuffled."""
    blobs = [b for _, b in parts]
    out: Items = []
    for i, (name, _) in enumerate(parts):
        out.append((f"shuffle/{label}-drop-{name}#{i}", join(blobs[:i] + blobs[i + 1:])))
        out.append((f"shuffle/{label}-dup-{name}#{i}", join(blobs[:i + 1] + blobs[i:])))
    out.append((f"shuffle/{label}-reversed", join(blobs[::-1])))
    for k in range(3):
        rng.shuffle(blobs)
        out.append((f"shuffle/{label}-random#{k}", join(blobs)))
    return out


def _overwrites(name: str, data: bytes, rng: random.Random) -> Items:
    out = []
    for fill in (0x00, 0xFF):
        for length in (1, 4, 16, 64, 256, 1024, 4096, 16384):
            at = rng.randrange(len(data))
            buf = data[:at] + bytes([fill]) * length + data[at + length:]
            out.append((f"overwrite{fill:02x}x{length}/{name}@{at}", buf[:len(data)]))
    return out


_DIMS = ((65535, 65535), (30000, 30000), (65535, 1), (1, 65535), (0, 0), (16384, 16384))


def _huge(rng: random.Random) -> Items:
    out: Items = []
    wide = _wide_bases()
    for base in ("mp4", "mp4-faststart"):
        data = wide["mp4"] if base == "mp4" else videos.faststart(wide["mp4"])
        for w, h in _DIMS:
            for where in ("tkhd", "entry", "both"):
                out.append((f"huge-dims/{base}-{where}-{w}x{h}", _mp4_dims(data, w, h, where)))
        for box in ("mvhd", "mdhd", "tkhd", "elst", "stts", "all"):  # 0.5 s that claims hours
            for hours in (10, 1000):
                out.append((f"hours/{base}-{box}-{hours}h",
                            _mp4_duration(data, box, hours * 3600.0)))
        for box, field, value in (("stsz", 16, 0x7FFFFFFF), ("stsz", 12, 0x7FFFFFFF),
                                  ("stts", 16, 0x7FFFFFFF), ("stsc", 12, 0x7FFFFFFF),
                                  ("stco", 12, 0x3FFFFFFF)):
            off, _ = _box(data, f"{STBL}/{box}")  # counts and sizes: billions of samples
            out.append((f"huge-count/{base}-{box}+{field}",
                        _patch(data, off + field, ">I", value)))
        for box in ("moov", "mdat", "moov/trak"):  # box sizes past the end of the file
            off, _ = _box(data, box)
            out.append((f"huge-box/{base}-{box.replace('/', '-')}",
                        _patch(data, off, ">I", 0xFFFFFFF0)))
    for base in ("mkv", "webm"):
        data = wide[base]
        for w, h in _DIMS:
            out.append((f"huge-dims/{base}-{w}x{h}",
                        _mkv_set(_mkv_set(data, 0xB0, w), 0xBA, h)))
        for w in (65535, 30000, 0):
            out.append((f"huge-dims/{base}-width-{w}", _mkv_set(data, 0xB0, w)))
        for label, value in (("10h", 36e6), ("1000h", 3.6e9), ("1e300", 1e300), ("inf", 1e999),
                             ("nan", float("nan")), ("negative", -1e6)):
            out.append((f"hours/{base}-duration-{label}", _mkv_set(data, 0x4489, value)))
        for eid, label in ((0x1F43B675, "cluster"), (0xA3, "block"), (0x63A2, "codecprivate"),
                           (0x1654AE6B, "tracks")):
            e = next((e for e in videos.mkv_elements(data) if e[0] == eid), None)
            if e is None:
                continue
            _, off, dpos, _ = e  # the largest size its size field can hold: past the end
            at = off + videos.ebml_vint(data, off)[1]
            n = dpos - at
            huge = (1 << 7 * n) | ((1 << 7 * n) - 2)
            out.append((f"huge-box/{base}-{label}",
                        _fix_crcs(data[:at] + huge.to_bytes(n, "big") + data[dpos:])))
    real = _real_huge()
    out.append(("huge-real/mp4-4096x4096", real))
    out.append(("huge-real/mp4-4096x4096-says-256", _mp4_dims(real, 256, 256, "both")))
    mkv = videos.remux(real, "matroska")
    out.append(("huge-real/mkv-4096x4096", mkv))
    out.append(("huge-real/mkv-4096x4096-says-256",
                _mkv_set(_mkv_set(mkv, 0xB0, 256), 0xBA, 256)))
    return out


def _shuffles(rng: random.Random) -> Items:
    out: Items = []
    bases = base_videos()
    for base in ("mp4", "mp4-faststart", "fmp4"):  # top-level boxes ('stco' not fixed)
        data = bases[base]
        out += _reorders(base, [(p, data[o:o + s]) for p, o, s in videos.mp4_boxes(data)
                                if "/" not in p], rng)
    data = bases["mp4"]  # 'moov' is last here, so editing it moves no sample
    trak_off, trak_size = _box(data, "moov/trak")
    trak = data[trak_off:trak_off + trak_size]
    moov_off, moov_size = _box(data, "moov")
    for copies in (2, 100):  # the same track many times
        moov = data[moov_off:trak_off] + trak * copies + data[trak_off + trak_size:]
        moov = struct.pack(">I", len(moov)) + moov[4:]
        out.append((f"shuffle/mp4-trak-x{copies}", data[:moov_off] + moov))
    for box in ("stss", "stsz", "stco", "stsc", "stts", "stsd", "ctts"):
        path = f"{STBL}/{box}"
        if any(p == path for p, _, _ in videos.mp4_boxes(data)):
            out.append((f"shuffle/mp4-drop-{box}", _mp4_replace(data, path, b"")))
    for base in ("mkv", "webm"):  # the Segment's children, its 8-byte size rewritten
        data = bases[base]
        _, _, start, size = next(e for e in videos.mkv_elements(data, deep=False)
                                 if e[0] == 0x18538067)
        head = data[:start - 8]

        def segment(parts: list[bytes], head: bytes = head) -> bytes:
            body = b"".join(parts)
            return head + b"\x01" + len(body).to_bytes(7, "big") + body

        children = videos.mkv_elements(data, start, start + size, deep=False)
        out += _reorders(base, [(f"{e:x}", data[o:d + n]) for e, o, d, n in children], rng,
                         segment)
    data = bases["ts"]  # 188-byte packets; the first ones hold the PAT and PMT
    packets = [(f"{k // 188}", data[k:k + 188]) for k in range(0, len(data), 188)]
    out += _reorders("ts", packets[:4], rng, lambda p: b"".join(p) + data[4 * 188:])
    out.append(("shuffle/ts-only-tables", data[:3 * 188] * 50))
    return out


def _indirections() -> Items:
    """Bytes that point elsewhere. FFmpeg follows such references when its demuxers for them
    are allowed to run; pgclip must never read another file or the network."""
    hls = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n{}\n#EXT-X-ENDLIST\n"
    out = [(f"indirect/hls-{n}", hls.format(body).encode()) for n, body in (
        ("file", "#EXTINF:10.0,\nfile:///etc/passwd"),
        ("relative", "#EXTINF:10.0,\n../../../../etc/passwd"),
        ("http", "#EXTINF:10.0,\nhttp://127.0.0.1:1/a.ts"),
        ("key", '#EXT-X-KEY:METHOD=AES-128,URI="file:///etc/passwd"\n#EXTINF:1,\na.ts'),
        ("master", "#EXT-X-STREAM-INF:BANDWIDTH=1\nfile:///proc/self/environ"),
        ("data", "#EXTINF:1,\ndata:video/mp2t;base64,R0VU"))]
    # FFmpeg's concat demuxer refuses absolute paths and URLs in its safe mode, but opens
    # relative names from the process's working directory (a backend's is the data folder)
    out += [(f"indirect/ffconcat-{n}", f"ffconcat version 1.0\nfile '{target}'\n".encode())
            for n, target in (("passwd", "/etc/passwd"), ("http", "http://127.0.0.1:1/x.mp4"),
                              ("self", "/proc/self/fd/0"), ("relative", "video.mp4"),
                              ("datadir", "global/pg_control"),
                              ("subfile", "subfile,,start,0,end,100,,:/etc/passwd"))]
    # FFmpeg's SDP demuxer binds UDP ports and waits for RTP packets
    out.append(("indirect/sdp", b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1"
                b"\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"))
    out.append(("indirect/ftyp-text", struct.pack(">I", 24) + b"ftypisom\0\0\2\0isommp41"
                + b"\nfile:///etc/passwd\nhttp://127.0.0.1:1/\nconcat:/etc/passwd|/etc/hosts\n"))
    data = base_videos()["mp4"]  # 'moov' is last: a bigger 'dref' moves no sample
    for label, url in (("file", b"file:///etc/passwd"), ("http", b"http://127.0.0.1:1/v.mp4"),
                       ("relative", b"../../etc/passwd")):
        entry = struct.pack(">I4sI", 12 + len(url) + 1, b"url ", 0) + url + b"\0"
        path = "moov/trak/mdia/minf/dinf/dref/url "
        out.append((f"indirect/mp4-dref-{label}", _mp4_replace(data, path, entry)))
    return out


def _encoded(container: str, codec: str, n: int = 8, pixels: int = 32, **kw: object) -> bytes:
    # 25 fps in a 1/25 time base: MPEG-2 accepts only its standard frame rates
    return videos.encode(videos.changing_frames(n, pixels, 3), [k / 25 for k in range(n)],
                         container=container, codec=codec, time_base=Fraction(1, 25),
                         **kw)  # type: ignore[arg-type]


def _audio(container: str, codec: str) -> bytes:
    """One second of silence: a file with no video stream."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container, options=videos.BITEXACT) as out:
        stream = out.add_stream(codec, rate=8000, layout="mono")
        fmt = stream.codec_context.format.name
        samples = np.zeros((1, 8000), np.float32 if fmt.startswith("flt") else np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def _others() -> Items:
    """Valid files that pgclip does not accept: other containers and codecs, images (some
    animated, which FFmpeg would decode as video), audio, subtitles, empty and random bytes."""
    mp4 = base_videos()["mp4"]
    frames = videos.changing_frames(4, 32, 4)
    gif, webp, apng = io.BytesIO(), io.BytesIO(), io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(webp, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:], duration=100)
    out: Items = [
        ("other/avi-mpeg4", _encoded("avi", "mpeg4")),
        ("other/flv", videos.remux(mp4, "flv")),
        ("other/nut", videos.remux(mp4, "nut")),
        ("other/raw-h264", videos.remux(mp4, "h264")),
        ("other/ivf-vp9", videos.remux(base_videos()["webm"], "ivf")),
        ("other/mpeg-ps", _encoded("mpeg", "mpeg2video")),
        ("other/mp4-mpeg2video", _encoded("mp4", "mpeg2video")),
        ("other/mov-png", _encoded("mov", "png", pix_fmt="rgb24")),
        ("other/mkv-mjpeg", _encoded("matroska", "mjpeg", pix_fmt="yuvj420p")),
        ("other/mkv-rawvideo", _encoded("matroska", "rawvideo", n=4)),
        ("other/mkv-flac-audio-only", _audio("matroska", "flac")),
        ("other/mp4-aac-audio-only", _audio("mp4", "aac")),
        ("other/gif-animated", gif.getvalue()), ("other/webp-animated", webp.getvalue()),
        ("other/apng", apng.getvalue()),
        ("other/png", videos.png_bytes(frames[0])), ("other/jpeg", videos.jpeg_bytes(frames[1])),
        ("other/webvtt", b"WEBVTT\n\n00:00.000 --> 10:00:00.000\nhello\n"),
        ("other/srt", b"1\n00:00:00,000 --> 99:00:00,000\nhello\n"),
        ("other/text", b"not a video\n"), ("other/html", b"<!doctype html><video src=x>"),
        ("empty", b""),
    ]
    out += [(f"tiny/{b:02x}", bytes([b])) for b in (0x00, 0x1A, 0x47, 0xFF)]
    rng = random.Random(0)
    out += [(f"random/{n}", rng.randbytes(n)) for n in (2, 8, 188, 1000, 65536)]
    return out


def corpus(n_min: int = 2000, seed: int = 5) -> list[tuple[str, bytes]]:
    """At least ``n_min`` (name, bytes) pairs, the same for the same seed; names are unique."""
    rng = random.Random(seed)
    items: Items = []
    bases = base_videos()
    families: list[Callable[[str, bytes, random.Random], Items]] = [
        _truncations, _bitflips, _overwrites]
    for family in families:
        for name, data in bases.items():
            items += family(name, data, rng)
    items += _huge(rng) + _shuffles(rng) + _indirections() + _others()
    names = list(bases)
    k = 0
    while len(items) < n_min:  # more random damage until there are enough
        name = names[k % len(names)]
        data = bases[name]
        items.append((f"extra-bitflip/{name}#{k}", _flip(data, rng, 1 + k % 32, 0, len(data))))
        k += 1
    seen: set[str] = set()
    for name, data in items:
        if name in seen or len(data) > MAX_ITEM_BYTES:
            raise AssertionError(f"corpus item {name}: duplicate name or {len(data)} bytes")
        seen.add(name)
    return items
