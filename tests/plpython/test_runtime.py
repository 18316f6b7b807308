"""pgclip.runtime: importing torch in a backend (JIT refusal, OpenMP and MKL settings, timing)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from pgclip import runtime
from pgclip.errors import JitConflict

# The environment a fresh backend would start with: none of the settings pgclip decides.
_PGCLIP_DECIDES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_CBWR")


def _environment_after_first_load(env: dict[str, str]) -> dict[str, str]:
    """What a fresh process's environment holds after pgclip resolves a device."""
    base = {k: v for k, v in os.environ.items() if k not in _PGCLIP_DECIDES}
    code = ("import json, os; from pgclip import loading; loading.resolve_device('cpu'); "
            f"print(json.dumps({{k: os.environ.get(k) for k in {_PGCLIP_DECIDES!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize(("env", "want"), [
    ({}, "PASSIVE"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
    ({"GOMP_SPINCOUNT": "10000"}, None),
])
def test_openmp_wait_policy_before_torch_import(env: dict[str, str], want: str | None) -> None:
    """Backends sleep instead of spinning in OpenMP unless the server's environment decides."""
    assert _environment_after_first_load(env)["OMP_WAIT_POLICY"] == want


@pytest.mark.parametrize(("env", "want"), [
    ({}, "AUTO,STRICT"),
    ({"MKL_CBWR": "COMPATIBLE"}, "COMPATIBLE"),
])
def test_mkl_strict_reproducible_mode(env: dict[str, str], want: str) -> None:
    """Results independent of the weights' alignment (mapped weights are often 4-byte aligned),
    unless the server's environment decides."""
    assert _environment_after_first_load(env)["MKL_CBWR"] == want


def test_import_seconds_are_reported_once() -> None:
    runtime.import_torch()
    runtime.take_import_seconds()
    assert runtime.take_import_seconds() == 0.0


def test_torch_after_llvm_jit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    maps = ("7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
            "7f20-7f30 r-xp 00000000 08:01 43 /usr/lib/llvm-14/lib/libLLVM-14.so.1\n")
    monkeypatch.setattr(runtime, "open", lambda path: io.StringIO(maps), raising=False)
    with pytest.raises(JitConflict) as exc:
        runtime._refuse_after_llvm_jit()
    assert exc.value.detail == "loaded: /usr/lib/llvm-14/lib/libLLVM-14.so.1"
    assert "jit = off" in exc.value.hint


def test_no_llvm_or_no_proc_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "open", lambda path: io.StringIO("7f00-7f10 r-xp libc.so.6\n"),
                        raising=False)
    runtime._refuse_after_llvm_jit()

    def no_proc(path: str) -> io.StringIO:
        raise FileNotFoundError(path)

    monkeypatch.setattr(runtime, "open", no_proc, raising=False)
    runtime._refuse_after_llvm_jit()


def test_torch_threads_follow_the_setting_and_return_to_the_default() -> None:
    torch = runtime.import_torch()
    default = runtime._threads_default
    assert default and default >= 1
    try:
        runtime.use_threads(1)
        assert torch.get_num_threads() == 1
        runtime.use_threads(0)
        assert torch.get_num_threads() == default
    finally:
        runtime.use_threads(0)
