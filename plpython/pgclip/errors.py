"""Errors that map to SQL errors: each carries a SQLSTATE, and a hint for the user."""

from __future__ import annotations


def first_line(e: BaseException) -> str:
    """An exception's first line, for messages that must stay one line."""
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__


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


class ImageTooLarge(LimitExceeded):
    """More bytes or declared pixels than the limits allow."""


class FormatNotAllowed(PgclipError):
    """A recognised image format outside pgclip.image_formats."""

    sqlstate = "0A000"  # feature_not_supported


class ImageOutOfMemory(PgclipError):
    sqlstate = "53200"  # out_of_memory


class AdminOnlyFormat(PgclipError):
    """pgclip.image_formats names a format that only an administrator may enable."""

    sqlstate = "42501"  # insufficient_privilege


class NotRegistered(PgclipError):
    """A table or column that clip_auto_embed has not set up."""

    sqlstate = "42704"  # undefined_object


class UnsupportedTable(PgclipError):
    sqlstate = "0A000"  # feature_not_supported


class WrongType(PgclipError):
    sqlstate = "42804"  # datatype_mismatch


class ChecksumMismatch(PgclipError):
    """A checkpoint file whose SHA-256 is not among the pinned digests."""

    sqlstate = "XX001"  # data_corrupted


class NotInPrerequisiteState(PgclipError):
    sqlstate = "55000"  # object_not_in_prerequisite_state


class JitConflict(NotInPrerequisiteState):
    """PostgreSQL's LLVM JIT was loaded in this backend before torch."""


class NoUsableIndex(NotInPrerequisiteState):
    """No index serves ORDER BY column <=> query on a column whose index is being checked."""


class NotTagged(PgclipError):
    """A table or column that clip_tagging_enable has not set up."""

    sqlstate = "42704"  # undefined_object


class ReadOnlyStandby(PgclipError):
    """A function that writes, called on a hot standby (``pg_is_in_recovery()``)."""

    sqlstate = "25006"  # read_only_sql_transaction


class NoModelSlot(PgclipError):
    """Every model slot (clip_config.max_model_backends) is held, and the wait for one ended."""

    sqlstate = "53000"  # insufficient_resources


class CheckpointMismatch(InvalidParameter, WeightsUnavailable):
    """A checkpoint file whose tensors do not fit the selected model (pgclip.model): a setting
    that does not match the file. Still a WeightsUnavailable to code that catches that."""

    sqlstate = "22023"  # invalid_parameter_value


class CorruptCheckpoint(WeightsUnavailable):
    """A checkpoint file that is truncated or corrupt (broken header, archive or pickle)."""

    sqlstate = "XX001"  # data_corrupted


class TokenizerUnavailable(WeightsUnavailable):
    """A model's tokenizer cannot be built: its vocabulary file, its Hugging Face tokenizer (not
    in the cache, offline) or the package that reads it is missing."""

    sqlstate = "58P01"  # undefined_file


class TextTowerUnavailable(WeightsUnavailable):
    """A Hugging Face text tower (xlm-roberta, NLLB, ...) cannot be built: its model config is
    not in the Hugging Face cache of an offline server."""

    sqlstate = "58P01"  # undefined_file


class InvalidVideo(InvalidParameter):
    """Bytes that are not a decodable video, or that made the decoder process fail."""


class VideoTooLarge(LimitExceeded):
    """A video over one of the pgclip.max_video_* limits or pgclip.video_timeout."""


class VideoOutOfMemory(PgclipError):
    """The decoder process ran out of its memory limit (pgclip.video_memory)."""

    sqlstate = "53200"  # out_of_memory


class NoPrivilege(PgclipError):
    """A role that lacks a privilege pgclip's statements need (named in the hint)."""

    sqlstate = "42501"  # insufficient_privilege


class AlreadyRegistered(PgclipError):
    """Something pgclip records once (a source of a vector column) was asked for again."""

    sqlstate = "42710"  # duplicate_object


class UndefinedColumn(PgclipError):
    """A column named in a call that the table does not have."""

    sqlstate = "42703"  # undefined_column
