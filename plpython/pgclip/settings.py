"""pgclip's settings (PostgreSQL custom GUCs ``pgclip.*``) as a typed value.

``sql_api`` reads the raw strings from the server; parsing and defaults live here so that they
can be tested without PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pgclip.errors import InvalidParameter
from pgclip.images import DEFAULT_FORMATS, ImageLimits

NAMES = (
    "model", "pretrained", "device", "precision",
    "max_image_bytes", "max_image_pixels", "image_formats", "max_text_chars",
)
DEFAULT_MAX_TEXT_CHARS = 10_000


@dataclass(frozen=True)
class Settings:
    model: str = ""
    pretrained: str = ""
    device: str = "auto"
    precision: str = "auto"
    image_limits: ImageLimits = ImageLimits()
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS


def _int(name: str, raw: str | None, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f'invalid value for pgclip.{name}: "{raw}"',
                               hint="Use a positive integer.") from None
    if value <= 0:
        raise InvalidParameter(f"pgclip.{name} must be positive, got {value}",
                               hint="Use a positive integer.")
    return value


def parse(raw: Mapping[str, str | None]) -> Settings:
    """Build :class:`Settings` from ``{name: value-or-None}`` (names without the prefix)."""
    formats = raw.get("image_formats")
    fmt = (tuple(f.strip().upper() for f in formats.split(",") if f.strip())
           if formats and formats.strip() else DEFAULT_FORMATS)
    base = ImageLimits()
    return Settings(
        model=(raw.get("model") or "").strip(),
        pretrained=(raw.get("pretrained") or "").strip(),
        device=(raw.get("device") or "auto").strip(),
        precision=(raw.get("precision") or "auto").strip(),
        image_limits=ImageLimits(
            max_bytes=_int("max_image_bytes", raw.get("max_image_bytes"), base.max_bytes),
            max_pixels=_int("max_image_pixels", raw.get("max_image_pixels"), base.max_pixels),
            formats=fmt,
        ),
        max_text_chars=_int("max_text_chars", raw.get("max_text_chars"), DEFAULT_MAX_TEXT_CHARS),
    )
