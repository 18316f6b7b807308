"""pgvector's text form ``[x1,x2,...]``, both directions, and scaling to unit length.

PL/Python exchanges ``vector`` values as text: everything pgclip returns to SQL is written by
:func:`to_literal`, and everything it reads from SQL is parsed by :func:`parse`.
"""

from __future__ import annotations

import math

import numpy as np

from pgclip.errors import InvalidParameter

_LITERAL_FORMATS: dict[int, str] = {}


def to_literal(vec: np.ndarray) -> str:
    """pgvector's text form. Each float32 is printed as its exact double value (17 significant
    digits round-trip any double), so it parses back to the same bits; one ``%`` formatting
    of all elements costs less than a ``repr`` per element."""
    values = vec.astype(np.float32).tolist()
    fmt = _LITERAL_FORMATS.get(len(values))
    if fmt is None:
        fmt = "[" + ",".join(["%.17g"] * len(values)) + "]"
        _LITERAL_FORMATS[len(values)] = fmt
    return fmt % tuple(values)


def parse(text: str, what: str = "vector") -> np.ndarray:
    """pgvector's text form ``[1,2,3]`` to float32.

    Raises:
        InvalidParameter: text that is not a vector; ``what`` names it in the message.
    """
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    try:
        vec = np.array(body.split(","), dtype=np.float32) if body else np.zeros(0, np.float32)
    except ValueError:
        raise InvalidParameter(f"{what} is not a vector: {text[:60]!r}",
                               hint="Pass a pgvector vector.") from None
    return vec


def unit(vec: np.ndarray, what: str = "vector") -> np.ndarray:
    """``vec`` scaled to length 1 (float64).

    Raises:
        InvalidParameter: the zero vector, or one with NaN/infinite entries.
    """
    v = np.asarray(vec, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidParameter(f"{what} has no direction (its length is {norm})",
                               hint="Pass a non-zero vector with finite entries.")
    return v / norm
