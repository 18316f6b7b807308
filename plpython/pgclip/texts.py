"""Limits on query and source texts, checked before tokenising (the tokenizer cleans the
whole string before it truncates to the model's context length)."""

from __future__ import annotations

from pgclip.errors import LimitExceeded


def check_text(text: str, max_chars: int) -> str:
    """``text`` itself, or :class:`LimitExceeded` (54000) naming the limit and the value."""
    if len(text) > max_chars:
        raise LimitExceeded(
            f"text is {len(text)} characters, more than pgclip.max_text_chars ({max_chars})",
            hint="Raise pgclip.max_text_chars, or shorten the text (CLIP reads only its first "
            "~77 tokens).",
        )
    return text
