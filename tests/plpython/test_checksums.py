"""pgclip.checksums: SHA-256 pinning of checkpoint files."""

from __future__ import annotations

import hashlib
import os

import pytest

from pgclip import checksums, loading, registry
from pgclip.errors import ChecksumMismatch, InvalidParameter

TINY_SHA = hashlib.sha256(registry.TINY_WEIGHTS.read_bytes()).hexdigest()


def test_parse_pins() -> None:
    assert checksums.parse_pins(None) == frozenset()
    assert checksums.parse_pins(f" {TINY_SHA.upper()} , ") == {TINY_SHA}
    with pytest.raises(InvalidParameter):
        checksums.parse_pins("abc")


def test_verify_accepts_pinned_and_refuses_other(tmp_path) -> None:
    checksums.verify(str(registry.TINY_WEIGHTS), frozenset({TINY_SHA}))
    checksums.verify(str(registry.TINY_WEIGHTS), frozenset())  # nothing pinned
    with pytest.raises(ChecksumMismatch) as exc:
        checksums.verify(str(registry.TINY_WEIGHTS), frozenset({"0" * 64}))
    assert exc.value.sqlstate == "XX001" and TINY_SHA in exc.value.message


def test_file_replaced_by_rename_is_hashed_again(tmp_path) -> None:
    p = tmp_path / "w.bin"
    p.write_bytes(b"one")
    first = checksums.sha256_of(str(p))
    tmp = tmp_path / "w.new"
    tmp.write_bytes(b"two")
    os.replace(tmp, p)
    assert checksums.sha256_of(str(p)) != first


def test_loader_refuses_unpinned_checkpoint_and_cache_hits() -> None:
    key = loading.model_key(registry.TINY_MODEL, "", "cpu", "fp32")
    try:
        loading.set_pins(frozenset({TINY_SHA}))
        assert loading.get_model(key).embed_dim == 64
        loading.set_pins(frozenset({"f" * 64}))
        with pytest.raises(ChecksumMismatch):
            loading.get_model(key)  # cached, but no longer pinned
    finally:
        loading.set_pins(frozenset())
