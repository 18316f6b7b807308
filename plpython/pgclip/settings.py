"""pgclip's settings (PostgreSQL custom GUCs ``pgclip.*``) as a typed value.

``sql_api`` reads the raw strings from the server; parsing, validation and defaults live here
so that they can be tested without PostgreSQL. Every invalid value is an error that names the
setting and the value; none is silently replaced by its default.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pgclip import checksums
from pgclip.errors import AdminOnlyFormat, InvalidParameter
from pgclip.images import (
    DEFAULT_FORMATS,
    FORMAT_ALIASES,
    USER_FORMATS,
    ImageLimits,
    is_admin_only,
    pillow_formats,
)
from pgclip.units import parse_int
from pgclip.video import limits as video_limits

NAMES = (
    "model", "pretrained", "device", "precision",
    "max_image_bytes", "max_image_pixels", "image_formats", "max_text_chars",
    "checkpoint_sha256", "torch_threads", *video_limits.NAMES,
)
DEFAULT_MAX_TEXT_CHARS = 10_000
DEFAULT_BATCH_SIZE = 32
MAX_BATCH_SIZE = 4096


@dataclass(frozen=True)
class Settings:
    model: str = ""
    pretrained: str = ""
    device: str = "auto"
    precision: str = "auto"
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    # SHA-256 digests every loaded checkpoint file must have (empty: none pinned).
    checkpoint_pins: frozenset[str] = frozenset()
    # Threads of this backend's torch (0: torch's default, one per core). Sessions that embed
    # side by side (parallel backfills, workers) each want fewer, or they oversubscribe cores.
    torch_threads: int = 0
    video: video_limits.VideoSettings = field(default_factory=video_limits.VideoSettings)


def parse_formats(raw: str | None, admin_formats: Collection[str] = ()) -> tuple[str, ...]:
    """The ``pgclip.image_formats`` allowlist: Pillow format names, comma-separated.

    Args:
        raw: the setting's value; empty or None means :data:`images.DEFAULT_FORMATS`.
        admin_formats: formats outside :data:`images.USER_FORMATS` that an administrator has
            enabled through a channel that ordinary sessions cannot change.

    Raises:
        InvalidParameter: a name Pillow does not know, or a list without names (22023).
        AdminOnlyFormat: a format with a risky decoder not in ``admin_formats`` (42501).
    """
    if raw is None or raw.strip() == "":
        return DEFAULT_FORMATS
    names: list[str] = []
    for part in re.split(r"[,\s]+", raw.strip()):
        if not part:
            continue
        name = part.upper()
        name = FORMAT_ALIASES.get(name, name)
        if name not in pillow_formats():
            raise InvalidParameter(
                f'pgclip.image_formats names an unknown image format "{part}"',
                detail=f'The setting is "{raw}".',
                hint=f"Use Pillow's format names, e.g. {', '.join(DEFAULT_FORMATS)}.",
            )
        if is_admin_only(name) and name not in {f.upper() for f in admin_formats}:
            raise AdminOnlyFormat(
                f"pgclip.image_formats names {name}, a format whose decoder only an "
                "administrator can enable",
                detail=f'The setting is "{raw}".',
                hint=f"Remove {name} from pgclip.image_formats; formats any session may "
                f"enable: {', '.join(USER_FORMATS)}.",
            )
        if name not in names:
            names.append(name)
    if not names:
        raise InvalidParameter(f'pgclip.image_formats names no format: "{raw}"',
                               hint="Use e.g. JPEG,PNG, or RESET pgclip.image_formats.")
    return tuple(names)


def parse(raw: Mapping[str, str | None], *, admin_formats: Collection[str] = (),
          admin_pins: str | None = None) -> Settings:
    """Build :class:`Settings` from ``{name: value-or-None}`` (names without the prefix).

    ``admin_formats``: see :func:`parse_formats`. Every embedding call parses the session's
    settings, which rarely change: the result of the same values is reused (it is immutable;
    an invalid value raises every time).
    """
    return _parse(tuple(raw.get(n) for n in NAMES), tuple(admin_formats), admin_pins)


@functools.lru_cache(maxsize=64)
def _parse(values: tuple[str | None, ...], admin_formats: tuple[str, ...],
           admin_pins: str | None) -> Settings:
    raw = dict(zip(NAMES, values, strict=True))
    base = ImageLimits()
    return Settings(
        model=(raw.get("model") or "").strip(),
        pretrained=(raw.get("pretrained") or "").strip(),
        device=(raw.get("device") or "").strip() or "auto",
        precision=(raw.get("precision") or "").strip() or "auto",
        image_limits=ImageLimits(
            max_bytes=parse_int("max_image_bytes", raw.get("max_image_bytes"), base.max_bytes,
                                units=True),
            max_pixels=parse_int("max_image_pixels", raw.get("max_image_pixels"), base.max_pixels),
            formats=parse_formats(raw.get("image_formats"), admin_formats),
        ),
        max_text_chars=parse_int("max_text_chars", raw.get("max_text_chars"),
                                 DEFAULT_MAX_TEXT_CHARS),
        # An administrator's pins (clip_config) win: a session may not loosen them.
        checkpoint_pins=checksums.parse_pins(admin_pins or raw.get("checkpoint_sha256")),
        torch_threads=parse_torch_threads(raw.get("torch_threads")),
        video=video_limits.parse(raw),
    )


MAX_TORCH_THREADS = 1024


def parse_torch_threads(raw: str | None) -> int:
    """``pgclip.torch_threads``: 0 or empty for torch's default, else 1 to 1024."""
    if raw is None or raw.strip() in ("", "0"):
        return 0
    value = parse_int("torch_threads", raw, 0)
    if value > MAX_TORCH_THREADS:
        raise InvalidParameter(
            f"pgclip.torch_threads must be at most {MAX_TORCH_THREADS}, got {value}",
            hint="Use about the number of cores divided by the sessions that embed at once.",
        )
    return value


def int_between(raw: str | None, low: int, high: int) -> int | None:
    """``raw`` as an integer from ``low`` to ``high``, or None if it is not one."""
    try:
        value = int((raw or "").strip())
    except ValueError:
        return None
    return value if low <= value <= high else None


def parse_batch_size(raw: str | None) -> int:
    """``pgclip.batch_size``: rows per model call in triggers and backfills.

    Read only where rows are embedded (not in :func:`parse`), so that a bad value does not
    stop queries that embed no rows.

    Raises:
        InvalidParameter: anything but an integer from 1 to :data:`MAX_BATCH_SIZE`.
    """
    value = int_between(raw, 1, MAX_BATCH_SIZE) if raw not in (None, "") else DEFAULT_BATCH_SIZE
    if value is None:
        raise InvalidParameter(
            f'invalid pgclip.batch_size "{raw}"',
            hint=f"Use an integer between 1 and {MAX_BATCH_SIZE} (default {DEFAULT_BATCH_SIZE}).",
        )
    return value
