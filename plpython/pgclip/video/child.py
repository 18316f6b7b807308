"""The decoder process: decodes videos with PyAV (FFmpeg) for one backend, one at a time.

FFmpeg parsing hostile bytes can crash its process (SIGSEGV or SIGBUS, which Python cannot
catch), and a crashed backend makes PostgreSQL restart every session. So decoding runs here, in
a child of the backend with its own memory limit (``RLIMIT_DATA``), no core files, no file
writes, and a parent-death signal; the backend kills it on cancel, on timeout or when it stops
reading, and starts a new one for the next video. This module is only imported in that process
(``python -I -c``, see :mod:`.sandbox`), never in a backend.

Frames are converted to RGB and streamed back while decoding goes on: a writer thread sends
them while the main thread decodes the next ones, so the backend embeds one batch while this
process decodes the next.
"""

from __future__ import annotations

import ctypes
import io
import math
import os
import queue
import resource
import signal
import sys
import threading
import time
from fractions import Fraction
from typing import Any

from pgclip.video import protocol
from pgclip.video.limits import DEMUXERS, defers

PR_SET_PDEATHSIG = 1
MAX_REQUEST = 1024**3  # bytea's own limit
BUFFER_BYTES = 256 * 1024**2  # RGB frames waiting to be sent
# Matroska and WebM keep milliseconds: a frame meant for k / fps may be stamped up to half a
# millisecond before it, and still stands for that grid point.
GRID_SLACK_S = 0.0005


class Refused(Exception):
    """A video this request's limits refuse; ``kind``: limit, format, invalid or memory."""

    def __init__(self, kind: str, message: str, hint: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint, self.detail = kind, message, hint, detail


def _harden() -> None:
    """Limits that hold for the life of this process."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # pipes are not files: stdout works
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the backend died: so do we
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() == 1:  # the backend died before prctl
        os._exit(0)


def _read_exact(n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(0, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Writer:
    """Sends messages from a thread, so that decoding goes on while the backend reads."""

    def __init__(self, frame_bytes: int) -> None:
        self.q: queue.Queue[list[bytes] | None] = queue.Queue(
            maxsize=max(2, min(64, BUFFER_BYTES // max(frame_bytes, 1))))
        self.blocked = 0.0  # seconds put() waited for room: the backend's time, not ours
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (msg := self.q.get()) is not None:
            for buf in msg:
                view = memoryview(buf)
                while view:
                    try:
                        view = view[os.write(1, view):]
                    except OSError:  # the backend went away
                        os._exit(0)

    def send(self, kind: bytes, header: dict[str, Any], payload: bytes = b"") -> None:
        t0 = time.monotonic()
        self.q.put(protocol.pack(kind, header, payload))
        self.blocked += time.monotonic() - t0

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()


def _open(data: bytes, req: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    import av

    container_name = req["container"]
    lim = req["limits"]
    try:
        container = av.open(io.BytesIO(data), mode="r", format=DEMUXERS[container_name],
                            options={"enable_drefs": "0", "use_absolute_path": "0"},
                            metadata_errors="ignore")
    except av.error.MemoryError:
        raise Refused("memory", "the video decoder ran out of memory opening the file") from None
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise Refused("invalid", f"not a readable {container_name} file: {_brief(e)}",
                      hint="The file is damaged or cut short; store the whole file.") from None
    if not container.streams.video:
        raise Refused("invalid", f"the {container_name} file has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    codec = getattr(ctx.codec, "canonical_name", None) or ctx.name
    if codec not in lim["codecs"]:
        raise Refused("format", f"video codec {codec} is not allowed",
                      hint=f"pgclip.video_codecs allows {', '.join(lim['codecs'])}; "
                      "re-encode the video, or add the codec to the setting if pgclip supports it.")
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width * height > lim["max_pixels"]:
        raise Refused("limit", f"video frames of {width} x {height} pixels are more than "
                      f"pgclip.max_video_pixels ({lim['max_pixels']})",
                      hint="Downscale the video, or raise pgclip.max_video_pixels.")
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    if duration is not None and duration > lim["max_seconds"]:
        raise Refused("limit", f"the video declares {duration:.1f} s, more than "
                      f"pgclip.max_video_seconds ({lim['max_seconds']:g} s)",
                      hint="Cut the video, or raise pgclip.max_video_seconds.")
    info = {"container": container_name, "codec": codec, "width": width, "height": height,
            "duration_s": duration}
    return container, stream, info


def _brief(e: BaseException) -> str:
    """FFmpeg's reason, without PyAV's errno and file name."""
    text = getattr(e, "strerror", None) or str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


def _rgb(frame: Any) -> Any:
    import numpy as np

    rgb = frame.to_ndarray(format="rgb24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4  # counter-clockwise
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _decode(container: Any, stream: Any, req: dict[str, Any], out: Writer, t0: float) -> dict:
    """Send each kept frame; returns counts for the done message."""
    import av

    lim, fps = req["limits"], float(req["fps"])
    stream.thread_type = "AUTO"
    start = stream.start_time
    tb = stream.time_base or Fraction(1, 1)
    decoded = kept = 0
    next_k = 0  # keep the first frame at or after k / fps
    last_t = -math.inf
    try:
        for frame in container.decode(stream):
            decoded += 1
            if time.monotonic() - t0 - out.blocked > lim["timeout_s"]:
                raise Refused("limit", "decoding the video took longer than "
                              f"pgclip.video_timeout ({lim['timeout_s']:g} s)",
                              hint="Raise pgclip.video_timeout, or embed long videos with "
                              "an async column (clip_worker).")
            if decoded > lim["max_decoded_frames"]:
                raise Refused("limit", "the video has more frames than pgclip.max_video_frames "
                              f"({lim['max_decoded_frames']})",
                              hint="Raise pgclip.max_video_frames, or lower the frame rate.")
            if frame.pts is None:
                continue  # a frame without a time cannot be placed
            if start is None:
                start = frame.pts
            t = float((frame.pts - start) * tb)
            if t > lim["max_seconds"]:
                raise Refused("limit", f"the video runs past pgclip.max_video_seconds "
                              f"({lim['max_seconds']:g} s)",
                              hint="Cut the video, or raise pgclip.max_video_seconds.")
            if frame.width * frame.height > lim["max_pixels"]:
                raise Refused("limit", f"a video frame of {frame.width} x {frame.height} pixels "
                              f"is more than pgclip.max_video_pixels ({lim['max_pixels']})",
                              hint="Downscale the video, or raise pgclip.max_video_pixels.")
            if t < 0 or t <= last_t or t < next_k / fps - GRID_SLACK_S:
                continue
            kept += 1
            if kept > lim["max_samples"]:
                raise Refused("limit", "the video gives more sampled frames than "
                              f"pgclip.max_video_samples ({lim['max_samples']})",
                              hint="Lower the frames kept per second (fps), or raise "
                              "pgclip.max_video_samples.")
            rgb = _rgb(frame)
            out.send(protocol.FRAME, {"t": t, "h": rgb.shape[0], "w": rgb.shape[1]},
                     rgb.tobytes())
            last_t, next_k = t, math.floor((t + GRID_SLACK_S) * fps) + 1
    except av.error.MemoryError:
        raise Refused("memory", "the video decoder ran out of memory") from None
    except MemoryError:
        raise Refused("memory", "the video decoder ran out of memory") from None
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise Refused("invalid", f"the video could not be decoded after {decoded} frames: "
                      f"{_brief(e)}", hint="The file is damaged; re-encode it.") from None
    if kept == 0:
        raise Refused("invalid", f"the video has no decodable frames ({decoded} decoded)",
                      hint="The file is damaged or has no pictures; re-encode it.")
    return {"decoded": decoded, "kept": kept}


def _serve(req: dict[str, Any], data: bytes) -> None:
    lim = req["limits"]
    soft = int(lim["memory_bytes"])
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (soft if hard < 0 else min(soft, hard), hard))
    # CPU time: the wall-time limit on every core, from now (the process serves many videos);
    # past it the kernel sends SIGXCPU, which the backend reports as pgclip.video_timeout.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent = usage.ru_utime + usage.ru_stime
    cpu = math.ceil(spent + float(lim["timeout_s"]) * (os.cpu_count() or 1)) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu if hard < 0 else min(cpu, hard), hard))
    t0 = time.monotonic()
    frame_bytes = 3 * int(lim["max_pixels"])
    out = Writer(frame_bytes)
    try:
        container, stream, info = _open(data, req)
        out.send(protocol.INFO, info)
        if req["op"] == "frames" and not defers(info["duration_s"], req.get("defer_above")):
            with container:
                counts = _decode(container, stream, req, out, t0)
        else:
            container.close()
            counts = {"decoded": 0, "kept": 0}
        out.send(protocol.DONE, counts)
    except Refused as e:
        out.send(protocol.ERROR, {"kind": e.kind, "message": e.message, "hint": e.hint,
                                  "detail": e.detail})
    except MemoryError:
        out.send(protocol.ERROR, {"kind": "memory", "message": "the video decoder ran out of "
                                  "memory", "hint": "Raise pgclip.video_memory, or store a "
                                  "smaller video.", "detail": None})
    except Exception as e:  # noqa: BLE001 - PyAV raises more than FFmpegError on hostile files
        out.send(protocol.ERROR, {"kind": "invalid", "message": "the video could not be decoded: "
                                  f"{type(e).__name__}: {_brief(e)}", "detail": None,
                                  "hint": "The file is damaged; re-encode it."})
    finally:
        out.close()


def main() -> None:
    _harden()
    import av  # noqa: F401 - loaded before the first request, not during it

    av.logging.set_level(None)  # FFmpeg's messages would go to the server log
    while True:
        prefix = _read_exact(protocol.PREFIX.size)
        if prefix is None:
            return  # the backend closed the pipe
        kind, head_len, payload_len = protocol.parse_prefix(prefix, MAX_REQUEST)
        head, data = _read_exact(head_len), _read_exact(payload_len)
        if kind != protocol.REQUEST or head is None or data is None:
            return
        _serve(protocol.parse_header(head), data)
        del data


if __name__ == "__main__":  # pragma: no cover - started by sandbox.py
    main()
    sys.exit(0)
