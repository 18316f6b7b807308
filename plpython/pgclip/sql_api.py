"""The SQL-facing layer: the only module that touches ``plpy`` or reads settings.

Each PL/Python function body imports this module and calls one function, passing ``plpy``.
Errors from the rest of the package become SQL errors with their SQLSTATE and hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pgclip
from pgclip import embedding, images, loading, settings
from pgclip.errors import InvalidParameter, PgclipError

_settings_plan: Any = None


def check_version(plpy: Any, expected: str) -> None:
    """The SQL script and the Python package must come from the same release."""
    if pgclip.__version__ != expected:
        plpy.error(
            f"pgclip Python package is version {pgclip.__version__}, "
            f"but the extension's SQL is version {expected}",
            hint="Run ALTER EXTENSION pgclip UPDATE, or reinstall the matching package.",
            sqlstate="0A000",
        )


@contextmanager
def _sql_errors(plpy: Any) -> Iterator[None]:
    try:
        yield
    except PgclipError as e:
        fields = {"detail": e.detail, "hint": e.hint}
        plpy.error(e.message, sqlstate=e.sqlstate, **{k: v for k, v in fields.items() if v})


def current_settings(plpy: Any) -> settings.Settings:
    global _settings_plan
    if _settings_plan is None:
        cols = ", ".join(
            f"pg_catalog.current_setting('pgclip.{n}', true) AS {n}" for n in settings.NAMES
        )
        _settings_plan = plpy.prepare(f"SELECT {cols}")
    return settings.parse(plpy.execute(_settings_plan)[0])


def _model(s: settings.Settings) -> loading.LoadedModel:
    return loading.get_model(loading.model_key(s.model, s.pretrained, s.device, s.precision))


def _check_text(text: str, s: settings.Settings) -> None:
    if len(text) > s.max_text_chars:
        raise images.ImageTooLarge(  # same SQLSTATE: program_limit_exceeded
            f"text is {len(text)} characters, more than pgclip.max_text_chars ({s.max_text_chars})",
            hint="Raise pgclip.max_text_chars, or shorten the text (CLIP reads only its first "
            "~77 tokens).",
        )


def embed_text(plpy: Any, text: str) -> str:
    with _sql_errors(plpy):
        s = current_settings(plpy)
        _check_text(text, s)
        return embedding.to_vector_literal(embedding.embed_texts(_model(s), [text])[0])


def embed_image(plpy: Any, data: bytes) -> str:
    with _sql_errors(plpy):
        s = current_settings(plpy)
        img = images.decode_image(data, s.image_limits)
        return embedding.to_vector_literal(embedding.embed_images(_model(s), [img])[0])


def model_info(plpy: Any) -> dict[str, Any]:
    import open_clip
    import torch

    with _sql_errors(plpy):
        lm = _model(current_settings(plpy))
        return {
            "model": lm.key.model,
            "pretrained": lm.key.pretrained or _default_tag(lm.key.model),
            "weights": lm.weights,
            "embedding_dim": lm.embed_dim,
            "device": lm.key.device,
            "dtype": lm.key.precision,
            "context_length": lm.context_length,
            "image_size": lm.image_size,
            "logit_scale": lm.logit_scale,
            "load_seconds": lm.load_seconds,
            "pgclip_version": pgclip.__version__,
            "torch_version": torch.__version__,
            "open_clip_version": open_clip.__version__,
        }


def _default_tag(model: str) -> str:
    from pgclip import registry

    tag = registry.DEFAULT_TAGS.get(model)
    if tag is None:
        raise InvalidParameter(f'no default pretrained tag for "{model}"')
    return tag
