"""Which build of the CPU kernels runs, and what this CPU can do.

ntengine._C carries the CPU kernels built for every x86-64 ISA level (baseline, avx2,
avx512, avx512_bf16) and runs the widest this CPU supports, decided by cpuid at run
time, never by the build machine. ``NTENGINE_CPU_ISA=<level>`` forces a narrower one
(an error if the CPU lacks it): what an AVX2 machine would run, on an AVX-512 one (cap
oneDNN the same way with ``ONEDNN_MAX_CPU_ISA=AVX2``).
"""

from __future__ import annotations

import contextlib
import os

LEVELS = ("baseline", "avx2", "avx512", "avx512_bf16")
ENV = "NTENGINE_CPU_ISA"
_applied = False


def _lib():
    try:  # ntengine._C directly, not through ops: the tokenizer asks too, without torch
        from ntengine import _C
    except ImportError:
        _C = None
    if _C is None or not hasattr(_C, "cpu_isa"):
        raise RuntimeError("ntengine._C was built without the CPU kernels: reinstall with `pip install -e .`")
    return _C


def _apply_env() -> None:
    """Honour NTENGINE_CPU_ISA once, with an error that says what is wrong."""
    global _applied
    if _applied:
        return
    level = os.environ.get(ENV, "").strip().lower()
    if level:
        try:
            _lib().set_cpu_isa(level)
        except (ValueError, RuntimeError) as err:
            raise RuntimeError(f"{ENV}={level}: {err}") from None
    _applied = True


def isa() -> str:
    """The level the CPU kernels run at."""
    _apply_env()
    return _lib().cpu_isa()


def supported() -> list[str]:
    """The levels this CPU runs (and this build has), narrowest first."""
    return list(_lib().cpu_isa_supported())


@contextlib.contextmanager
def forced(level: str):
    """Run the CPU kernels at `level` inside the block (tests, benchmarks)."""
    previous = isa()
    _lib().set_cpu_isa(level)
    try:
        yield
    finally:
        _lib().set_cpu_isa(previous)


def onednn_bf16() -> bool:
    """oneDNN has bf16 GEMMs here: AVX-512 (or AMX) in the CPU, and not capped below it by us."""
    import torch

    return LEVELS.index(isa()) >= LEVELS.index("avx512") and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def info() -> dict:
    """What to paste into a bug report about the CPU side."""
    import torch

    lib = _lib()
    return {"cpu": lib.cpu_model(), "flags": list(lib.cpu_flags()), "isa": isa(), "isa_supported": supported(),
            "isa_forced": os.environ.get(ENV) or None, "threads": torch.get_num_threads(),
            "onednn": torch.backends.mkldnn.is_available(),
            "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or None}
