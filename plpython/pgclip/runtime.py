"""Import torch safely inside a PostgreSQL backend.

A backend is not an ordinary Python process: PostgreSQL's JIT may already have loaded LLVM into
it, and many backends share the same cores. Every ``import torch`` in pgclip goes through
:func:`import_torch`, which refuses to import after the JIT (that order crashes the server),
chooses an OpenMP wait policy that suits shared cores, makes MKL's results independent of where
the weights lie in memory, and times the first import, the largest part of a backend's cold
start.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from pgclip.errors import JitConflict

# Either one in the server's environment decides OpenMP's wait policy instead of pgclip.
_OPENMP_WAIT_SETTINGS = {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"}
# MKL's strict reproducible mode: results that do not depend on the alignment of the arrays.
_MKL_STRICT_REPRODUCIBLE = "AUTO,STRICT"

_torch_imported = False
_threads_default: int | None = None  # torch's own choice, read at import
_threads_wanted = 0  # pgclip.torch_threads of the latest call (0: torch's default)
# Seconds the first ``import torch`` took in this process, until a model's timings report it.
_import_seconds_unreported: float | None = None
# Called before the first import (sql_api installs pgclip.admission's wait for a model slot);
# it raises to refuse. The import is what a backend cannot give back until it exits.
_import_gate: Callable[[], None] | None = None


def set_import_gate(gate: Callable[[], None] | None) -> None:
    global _import_gate
    _import_gate = gate


def import_torch() -> Any:
    """``import torch``; the first time, after the checks above and timed.

    Raises:
        JitConflict: LLVM is already loaded in this backend.
        whatever the import gate raises (NoModelSlot).
    """
    global _torch_imported, _import_seconds_unreported
    if not _torch_imported:
        if "torch" not in sys.modules:
            _refuse_after_llvm_jit()
        if _import_gate is not None:
            _import_gate()
        if "torch" not in sys.modules:
            if not _OPENMP_WAIT_SETTINGS & set(os.environ):
                # Before OpenMP starts: idle threads sleep instead of spinning. With the default
                # (spinning), a backend whose cores are busy with other backends ran batch-1
                # forward passes 2 to 7 times slower; on idle cores this costs ~1.4x at batch 1.
                os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        # Weights mapped from a checkpoint (pgclip.mapped_load) are often only 4-byte aligned,
        # and MKL's batch-1 matrix products then round differently from the same weights in
        # open_clip's 64-byte aligned copies: the two load paths must give the same numbers.
        # MKL reads this at its first call (the first forward pass), so it takes effect even
        # when torch was imported earlier. Measured on ViT-B-32 and RN50: no cost.
        os.environ.setdefault("MKL_CBWR", _MKL_STRICT_REPRODUCIBLE)
        t = time.perf_counter()
        import torch

        _import_seconds_unreported = time.perf_counter() - t
        _torch_imported = True
        global _threads_default
        _threads_default = torch.get_num_threads()
        _apply_threads(torch)
    import torch

    return torch


def use_threads(n: int) -> None:
    """pgclip.torch_threads: how many threads this backend's torch uses (0: its default),
    applied now if torch is imported, else at the import."""
    global _threads_wanted
    if n != _threads_wanted:
        _threads_wanted = n
        if _torch_imported:
            import torch

            _apply_threads(torch)


def _apply_threads(torch: Any) -> None:
    want = _threads_wanted or _threads_default
    if want and torch.get_num_threads() != want:
        torch.set_num_threads(want)


def take_import_seconds() -> float:
    """Seconds the first ``import torch`` took, once: later calls return 0 (the import happens
    before a model load starts its clock, so the first load reports it)."""
    global _import_seconds_unreported
    seconds, _import_seconds_unreported = _import_seconds_unreported or 0.0, None
    return seconds


def _refuse_after_llvm_jit() -> None:
    """PostgreSQL's JIT loads libLLVM into the backend when a query's cost passes
    jit_above_cost (pgclip's functions are costly, so large scans do). Importing torch after
    that crashes the backend (seen: SIGSEGV in free(); torch carries LLVM code of its own), which
    restarts the whole cluster; the other order is safe. Refuse with an error instead."""
    try:
        with open("/proc/self/maps") as maps:
            llvm = next((line.split()[-1] for line in maps
                         if "libLLVM" in line or "llvmjit" in line), None)
    except OSError:
        return
    if llvm:
        raise JitConflict(
            "PostgreSQL's JIT compiler (LLVM) is already loaded in this backend, and loading "
            "torch after it would crash the server",
            detail=f"loaded: {llvm}",
            hint="Turn JIT off where pgclip runs: ALTER DATABASE <db> SET jit = off (or "
            "ALTER ROLE, or SET jit = off in the session), or make pgclip's first call in a "
            "session a cheap one such as SELECT clip_model_info().",
        )
