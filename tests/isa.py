"""The CPU ISA levels as pytest params: every level this machine runs, the rest skipped
with the reason (so CI on any CPU checks every kernel build it can)."""

import pytest

from ntengine import cpu

SUPPORTED = cpu.supported()


def isa_params(prefix: str = "") -> list:
    return [pytest.param(level, id=f"{prefix}{level}",
                         marks=pytest.mark.skipif(level not in SUPPORTED,
                                                  reason=f"this CPU runs {SUPPORTED}, not {level}"))
            for level in cpu.LEVELS]
