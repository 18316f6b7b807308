"""Errors that map to SQL errors: each carries a SQLSTATE, and a hint for the user."""

from __future__ import annotations


class PgclipError(Exception):
    """Base class; ``sql_api`` turns it into ``ERROR`` with these fields."""

    sqlstate = "XX000"

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail


class InvalidParameter(PgclipError):
    """A value the caller passed (or a setting) is not acceptable."""

    sqlstate = "22023"  # invalid_parameter_value


class InvalidImage(InvalidParameter):
    """Bytes that are not a decodable image."""


class ModelNotFound(PgclipError):
    """No such model architecture."""

    sqlstate = "22023"


class WeightsUnavailable(PgclipError):
    """The weights for a model cannot be found or fetched."""

    sqlstate = "58P01"  # undefined_file


class LimitExceeded(PgclipError):
    """An input over a configured size limit."""

    sqlstate = "54000"  # program_limit_exceeded
