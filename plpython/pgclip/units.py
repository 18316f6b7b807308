"""Parsing setting values the PostgreSQL way: integers with memory units, durations with time
units, and bounded decimal numbers. Every invalid value is an error naming the setting."""

from __future__ import annotations

import math
import re

from pgclip.errors import InvalidParameter

# PostgreSQL's memory units (powers of 1024).
BYTE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
TIME_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}


def parse_int(name: str, raw: str | None, default: int, *, units: bool = False) -> int:
    """A positive integer (with ``units``: of bytes, optionally with kB, MB, GB, TB)."""
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    found = re.fullmatch(r"([+-]?\d+)\s*([a-zA-Z]*)", text.replace("_", ""))
    unit = found.group(2).lower() if found else ""
    factor = 1 if not unit else BYTE_UNITS.get(unit) if units else None
    if found is None or factor is None:
        raise InvalidParameter(
            f'invalid value for pgclip.{name}: "{raw}"',
            hint="Use a positive integer" + (" of bytes, or one with a unit (kB, MB, GB)."
                                             if units else "."),
        )
    value = int(found.group(1)) * factor
    if value <= 0:
        raise InvalidParameter(f"pgclip.{name} must be positive, got {text}",
                               hint="Use a positive integer.")
    return value


def parse_seconds(name: str, raw: str | None, default: float, *, bare: str = "ms") -> float:
    """A duration: a number with a unit (ms, s, min, h); a bare number is in ``bare`` units
    (milliseconds, as PostgreSQL's own timeouts are, unless the setting says otherwise)."""
    if raw is None or raw.strip() == "":
        return default
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*", raw)
    if found is None:
        raise InvalidParameter(
            f'invalid value for {name}: "{raw}"',
            hint="Use a duration such as 30s, 500ms or 2min"
            + (" (a bare number is milliseconds)." if bare == "ms" else
               f" (a bare number is in {bare})."),
        )
    return float(found.group(1)) * TIME_UNITS[found.group(2) or bare]


def parse_float(name: str, raw: str | None, default: float, low: float, high: float) -> float:
    """A decimal number from ``low`` to ``high`` (inclusive)."""
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise InvalidParameter(
            f'invalid value for {name}: "{raw}"',
            hint=f"Use a number from {low:g} to {high:g}.",
        )
    return value
