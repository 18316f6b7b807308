"""The backend's side of video decoding: a decoder process per backend (:mod:`.child`).

The backend never imports PyAV or FFmpeg. It starts one decoder process on first use and keeps
it for the next videos; it kills it when a video breaks a limit that only the backend can
enforce (wall time, when the decoder stops answering), when the caller stops reading frames (a
cancel, an error while embedding), or when its messages make no sense, and starts a fresh one
for the next video. A decoder that crashes on a hostile file is an SQL error for that video,
never a crashed backend.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pgclip.errors import (
    FormatNotAllowed,
    InvalidVideo,
    PgclipError,
    VideoOutOfMemory,
    VideoTooLarge,
)
from pgclip.video import protocol
from pgclip.video.limits import CONTAINER_ALIASES, USER_CONTAINERS, VideoLimits, sniff

POLL_S = 0.1  # how often ``check`` runs while the decoder works
GRACE_S = 0.5  # past pgclip.video_timeout before the backend kills a silent decoder
_ERRORS: dict[str, type[PgclipError]] = {
    "limit": VideoTooLarge, "format": FormatNotAllowed, "invalid": InvalidVideo,
    "memory": VideoOutOfMemory,
}
_BOOT = ("import sys; sys.path[:0] = sys.argv[1:]; "
         "from pgclip.video import child; child.main()")


def no_check() -> None:
    """The default ``check``: nothing to interrupt outside PostgreSQL."""


@dataclass(frozen=True)
class VideoInfo:
    container: str
    codec: str
    width: int
    height: int
    duration_s: float | None


@dataclass
class DecoderStats:
    """Per-backend counters; clip_backend_stats() shows them."""

    videos: int = 0
    frames: int = 0
    seconds: float = 0.0  # waiting for the decoder
    started: int = 0  # decoder processes started
    killed: int = 0  # ... and killed (cancel, timeout, crash)


stats = DecoderStats()


def _interpreter() -> str:
    """The Python that PL/Python embeds (its venv's wheels are built for it): in a backend,
    sys.executable is the server, not Python."""
    v = sys.version_info
    for candidate in (Path(sys.base_exec_prefix) / "bin" / f"python{v.major}.{v.minor}",
                      Path(sys.executable)):
        if candidate.name.startswith("python") and os.access(candidate, os.X_OK):
            return str(candidate)
    raise InvalidVideo("cannot find the Python interpreter to start the video decoder",
                       hint=f"Install python{v.major}.{v.minor} in {sys.base_exec_prefix}/bin.")


def _paths() -> list[str]:
    """Where the decoder imports pgclip, PyAV and numpy from: where this backend found them."""
    package = str(Path(__file__).resolve().parents[2])
    paths = [package]
    for name in ("av", "numpy"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise InvalidVideo(f"the Python package {name} is not installed",
                               hint="Install pgclip's requirements.txt into its venv "
                               "(make install).")
        site = str(Path(spec.origin).resolve().parents[1])
        if site not in paths:
            paths.append(site)
    return paths


class _Decoder:
    """One decoder process and the pipes to it."""

    def __init__(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MALLOC_ARENA_MAX": "2",
               "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [_interpreter(), "-I", "-c", _BOOT, *_paths()], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
            start_new_session=True, env=env, cwd="/")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd, self.rfd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        stats.started += 1

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()

    def crashed(self, limits: VideoLimits) -> PgclipError:
        try:
            code = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            code = None
        if code == -signal.SIGXCPU:
            return VideoTooLarge(
                "decoding the video used more CPU time than pgclip.video_timeout allows "
                f"({limits.timeout_s:g} s on each core)",
                hint="Raise pgclip.video_timeout, or embed long videos with an async column "
                "(clip_worker).")
        how = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit status {code}")
        return InvalidVideo(
            f"the video decoder process died on this input ({how})",
            detail="It decoded in a separate process, so no session was affected.",
            hint="The file is damaged or not a video FFmpeg can read; re-encode it. A large "
            "video may also need more pgclip.video_memory.",
        )


_decoder: _Decoder | None = None


class _Job:
    """One request: writes the video, reads the answers, enforces the wall time."""

    def __init__(self, limits: VideoLimits, check: Callable[[], None]) -> None:
        global _decoder
        if _decoder is None or _decoder.proc.poll() is not None:
            _decoder = _Decoder()
        self.d = _decoder
        self.limits, self.check = limits, check
        self.waited = 0.0
        self.last_check = time.monotonic()
        self.done = False

    def _wait(self, fd: int, write: bool) -> None:
        t0 = time.monotonic()
        r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], POLL_S)
        now = time.monotonic()
        self.waited += now - t0
        stats.seconds += now - t0
        if now - self.last_check >= POLL_S or not (r or w):
            self.last_check = now
            self.check()
        if self.waited > self.limits.timeout_s + GRACE_S:
            raise VideoTooLarge(
                "decoding the video took longer than pgclip.video_timeout "
                f"({self.limits.timeout_s:g} s)",
                hint="Raise pgclip.video_timeout, or embed long videos with an async column "
                "(clip_worker).")

    def send(self, header: dict[str, Any], payload: bytes) -> None:
        for buf in protocol.pack(protocol.REQUEST, header, payload):
            view = memoryview(buf)
            while view:
                self._wait(self.d.wfd, write=True)
                try:
                    view = view[os.write(self.d.wfd, view[: 1 << 20]):]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    raise self.d.crashed(self.limits) from None

    def _read(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            self._wait(self.d.rfd, write=False)
            chunk = os.read(self.d.rfd, min(left, 1 << 22))
            if not chunk:
                raise self.d.crashed(self.limits)
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def message(self) -> tuple[bytes, dict[str, Any], bytes]:
        max_payload = 3 * self.limits.max_pixels
        try:
            kind, head_len, payload_len = protocol.parse_prefix(
                self._read(protocol.PREFIX.size), max_payload)
            header = protocol.parse_header(self._read(head_len))
        except protocol.ProtocolError as e:
            raise InvalidVideo("the video decoder sent a malformed answer",
                               detail=str(e), hint="The file is probably hostile.") from None
        payload = self._read(payload_len) if payload_len else b""
        if kind == protocol.ERROR:
            self.done = True
            cls = _ERRORS.get(str(header.get("kind")), InvalidVideo)
            raise cls(str(header.get("message"))[:500], hint=header.get("hint"),
                      detail=header.get("detail"))
        return kind, header, payload

    def close(self) -> None:
        """After an unfinished job the decoder may still be sending: kill it."""
        global _decoder
        if not self.done:
            stats.killed += 1
            self.d.kill()
            if _decoder is self.d:
                _decoder = None


def container_of(data: bytes, limits: VideoLimits) -> str:
    """The container ``data`` is in, if allowed; the first checks, made in the backend."""
    if len(data) > limits.max_bytes:
        raise VideoTooLarge(
            f"the video is {len(data)} bytes, more than pgclip.max_video_bytes "
            f"({limits.max_bytes})", hint="Raise pgclip.max_video_bytes, or store a smaller file.")
    kind = sniff(data)
    if kind is None:
        raise InvalidVideo(
            "not a video in a container pgclip reads",
            detail=f"{len(data)} bytes, starting {data[:8].hex(' ') or '(nothing)'}",
            hint=f"Store MP4/MOV, Matroska/WebM or MPEG-TS files ({', '.join(USER_CONTAINERS)}).")
    if kind not in limits.containers:
        aliases = [a for a, k in CONTAINER_ALIASES.items() if k == kind]
        raise FormatNotAllowed(
            f"video container {kind} ({', '.join(aliases)}) is not allowed",
            hint=f"pgclip.video_containers allows {', '.join(limits.containers)}; add {kind} "
            "to it to read such files.")
    return kind


def _request(op: str, data: bytes, fps: float, limits: VideoLimits,
             check: Callable[[], None], defer_above: float | None = None
             ) -> Iterator[tuple[bytes, dict[str, Any], bytes]]:
    container = container_of(data, limits)
    job = _Job(limits, check)
    try:
        job.send({"op": op, "container": container, "fps": fps, "defer_above": defer_above,
                  "limits": dataclasses.asdict(limits)}, data)
        while True:
            kind, header, payload = job.message()
            if kind == protocol.DONE:
                job.done = True
                return
            yield kind, header, payload
    finally:
        job.close()


def probe(data: bytes, limits: VideoLimits, check: Callable[[], None] = no_check) -> VideoInfo:
    """What the container declares (no frame is decoded)."""
    info = None
    for kind, header, _ in _request("probe", data, 1.0, limits, check):
        if kind == protocol.INFO:
            info = _info(header)
    if info is None:
        raise InvalidVideo("the video decoder gave no information about the file")
    return info


def _info(h: dict[str, Any]) -> VideoInfo:
    d = h.get("duration_s")
    return VideoInfo(str(h.get("container")), str(h.get("codec")), int(h.get("width") or 0),
                     int(h.get("height") or 0), None if d is None else float(d))


def info_and_frames(data: bytes, fps: float, limits: VideoLimits,
                    check: Callable[[], None] = no_check, defer_above: float | None = None
                    ) -> tuple[VideoInfo, Iterator[tuple[float, np.ndarray]]]:
    """What the container declares, and ``(t_s, H x W x 3 uint8 RGB)`` of the first frame at or
    after every 1/fps seconds, in time order; t_s counts from the video stream's start
    (pts x time_base - start_time). The frames arrive while the decoder goes on decoding.
    No frames when :func:`limits.defers` the video past ``defer_above`` (the decoder decides
    from what the container declares, so the bytes travel once)."""
    it = _request("frames", data, fps, limits, check, defer_above)
    stats.videos += 1
    first = next(it, None)
    if first is None or first[0] != protocol.INFO:
        it.close()
        raise InvalidVideo("the video decoder gave no information about the file")
    _, header, _ = first

    def rest() -> Iterator[tuple[float, np.ndarray]]:
        for kind, header, payload in it:
            if kind != protocol.FRAME:
                continue
            try:
                t, w, h = float(header["t"]), int(header["w"]), int(header["h"])
            except (KeyError, TypeError, ValueError):
                raise InvalidVideo("the video decoder sent a malformed frame",
                                   hint="The file is probably hostile.") from None
            if w * h * 3 != len(payload) or w * h > limits.max_pixels:
                raise InvalidVideo("the video decoder sent a frame of the wrong size",
                                   hint="The file is probably hostile.")
            stats.frames += 1
            yield t, np.frombuffer(payload, np.uint8).reshape(h, w, 3)

    return _info(header), rest()


def frames(data: bytes, fps: float, limits: VideoLimits,
           check: Callable[[], None] = no_check) -> Iterator[tuple[float, np.ndarray]]:
    """The frames of :func:`info_and_frames`."""
    return info_and_frames(data, fps, limits, check)[1]
