"""The SQL-facing layer: the only package that touches ``plpy`` or reads settings.

Each PL/Python function body imports one module of this package and calls one function,
passing ``plpy``; one module per concern (``embed``, ``search``, ``tagging``, ...), and
:mod:`.catalog` for what they ask PostgreSQL. This ``__init__`` holds what they share:
settings, the current model, and turning :class:`PgclipError` into SQL errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pgclip
from pgclip import loading, registry, runtime, settings, texts
from pgclip.errors import PgclipError
from pgclip.sql_api import admission, catalog

_error_class: Any = None


def raise_error(
    plpy: Any, message: str, sqlstate: str, detail: str | None = None, hint: str | None = None
) -> None:
    """Raise an SQL ERROR reading ``pgclip: <message>`` with this SQLSTATE, detail and hint.

    plpy.error() would prefix the message with ``plpy.Error:``; PL/Python prints a
    ``plpy.Error`` subclass from the builtins module by its bare class name instead.
    """
    global _error_class
    if _error_class is None:
        _error_class = type("pgclip", (plpy.Error,), {"__module__": "builtins"})
    err = _error_class(message)
    err.sqlstate = sqlstate
    err.detail = detail
    err.hint = hint
    raise err


def check_version(plpy: Any, expected: str) -> None:
    """The SQL script and the Python package must come from the same release."""
    if pgclip.__version__ != expected:
        raise_error(
            plpy,
            f"the pgclip Python package is version {pgclip.__version__}, "
            f"but the extension's SQL is version {expected}",
            "0A000",
            hint="Run ALTER EXTENSION pgclip UPDATE, or reinstall the matching package.",
        )


@contextmanager
def sql_errors(plpy: Any) -> Iterator[None]:
    try:
        yield
    except PgclipError as e:
        raise_error(plpy, e.message, e.sqlstate, e.detail, e.hint)


def current_settings(plpy: Any, schema: str | None = None) -> settings.Settings:
    """The session's pgclip.* settings, plus what the administrator allows in clip_config
    (in pgclip's ``schema``, if the caller has looked it up already)."""
    schema = schema or catalog.extension_schema(plpy)
    cols = ", ".join(
        f"pg_catalog.current_setting('pgclip.{n}', true) AS {n}" for n in settings.NAMES
    )
    admin = ", ".join(
        f"(SELECT c.value FROM {schema}.clip_config c "
        f"WHERE c.name OPERATOR(pg_catalog.=) '{name}') AS admin_{name}"
        for name in ("admin_image_formats", "checkpoint_sha256")
    )
    row = plpy.execute(catalog.plan(plpy, ("settings", schema), f"SELECT {cols}, {admin}"))[0]
    admin_formats = [
        f.strip() for f in (row["admin_admin_image_formats"] or "").split(",") if f.strip()
    ]
    s = settings.parse(row, admin_formats=admin_formats, admin_pins=row["admin_checkpoint_sha256"])
    admission.install_gate(plpy)  # before anything can import torch
    loading.set_pins(s.checkpoint_pins)  # applies to every model this call then uses
    runtime.use_threads(s.torch_threads)
    return s


def fit_name(head: str, tail: str) -> str:
    """``head + tail`` within PostgreSQL's 63-byte names (NAMEDATALEN - 1), keeping ``tail``
    whole and cutting ``head`` at a character boundary. Names are limited in UTF-8 bytes, not
    characters: cut by characters, PostgreSQL would cut the tail off and two names collide."""
    room = 63 - len(tail.encode())
    return head.encode()[:room].decode("utf-8", "ignore") + tail


def current_model(s: settings.Settings) -> loading.LoadedModel:
    return loading.get_model(loading.model_key(s.model, s.pretrained, s.device, s.precision))


def bound_model(model: str, pretrained: str, s: settings.Settings) -> loading.LoadedModel:
    """The model a column or tagging was set up with (they record the tag it resolved to);
    device and precision follow the session. A recorded default tag is keyed as the session's
    empty pgclip.pretrained is, so that one backend loads the model (and caches queries) once."""
    if pretrained == registry.DEFAULT_TAGS.get(model):
        pretrained = ""
    return loading.get_model(loading.model_key(model, pretrained, s.device, s.precision))


def check_text(text: str, s: settings.Settings) -> None:
    texts.check_text(text, s.max_text_chars)
