"""The SQL-facing layer: the only package that touches ``plpy`` or reads settings.

Each PL/Python function body imports one module of this package and calls one function,
passing ``plpy``; one module per concern (``embed``, ...). This ``__init__`` holds what they
share: settings, the current model, and turning :class:`PgclipError` into SQL errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pgclip
from pgclip import loading, settings, texts
from pgclip.errors import PgclipError

_settings_plan: Any = None
_schema_plan: Any = None
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


def ext_schema(plpy: Any) -> str:
    """The quoted name of the schema pgclip is installed in (looked up each time: the
    extension may be dropped and created elsewhere within one session)."""
    global _schema_plan
    if _schema_plan is None:
        _schema_plan = plpy.prepare(
            "SELECT pg_catalog.quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension e "
            "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
            "WHERE e.extname OPERATOR(pg_catalog.=) 'pgclip'"
        )
    return plpy.execute(_schema_plan)[0]["s"]


_setting_plans: dict[str, Any] = {}


def setting(plpy: Any, name: str) -> str | None:
    """current_setting(name, missing_ok): NULL for a placeholder no module has defined."""
    plan = _setting_plans.get("get")
    if plan is None:
        plan = _setting_plans["get"] = plpy.prepare(
            "SELECT pg_catalog.current_setting($1, true) AS v", ["pg_catalog.text"])
    return plpy.execute(plan, [name])[0]["v"]


def set_local(plpy: Any, name: str, value: str) -> None:
    """set_config(name, value, is_local): until the end of the current transaction."""
    plan = _setting_plans.get("set")
    if plan is None:
        plan = _setting_plans["set"] = plpy.prepare(
            "SELECT pg_catalog.set_config($1, $2, true)", ["pg_catalog.text", "pg_catalog.text"])
    plpy.execute(plan, [name, value])


def current_settings(plpy: Any) -> settings.Settings:
    """The session's pgclip.* settings, plus what the administrator allows in clip_config."""
    global _settings_plan
    if _settings_plan is None:
        cols = ", ".join(
            f"pg_catalog.current_setting('pgclip.{n}', true) AS {n}" for n in settings.NAMES
        )
        admin = ", ".join(
            f"(SELECT c.value FROM {ext_schema(plpy)}.clip_config c "
            f"WHERE c.name OPERATOR(pg_catalog.=) '{name}') AS admin_{name}"
            for name in ("admin_image_formats", "checkpoint_sha256")
        )
        _settings_plan = plpy.prepare(f"SELECT {cols}, {admin}")
    row = plpy.execute(_settings_plan)[0]
    admin_formats = [
        f.strip() for f in (row["admin_admin_image_formats"] or "").split(",") if f.strip()
    ]
    s = settings.parse(row, admin_formats=admin_formats, admin_pins=row["admin_checkpoint_sha256"])
    loading.set_pins(s.checkpoint_pins)  # applies to every model this call then uses
    return s


def fit_name(head: str, tail: str) -> str:
    """``head + tail`` within PostgreSQL's 63-byte names (NAMEDATALEN - 1), keeping ``tail``
    whole and cutting ``head`` at a character boundary. Names are limited in UTF-8 bytes, not
    characters: cut by characters, PostgreSQL would cut the tail off and two names collide."""
    room = 63 - len(tail.encode())
    return head.encode()[:room].decode("utf-8", "ignore") + tail


def current_model(s: settings.Settings) -> loading.LoadedModel:
    return loading.get_model(loading.model_key(s.model, s.pretrained, s.device, s.precision))


def check_text(text: str, s: settings.Settings) -> None:
    texts.check_text(text, s.max_text_chars)
