"""Shared benchmark helpers: a repeat timer (median + IQR), machine info, JSON output.

Benchmarks compare against a baseline timed in the same process; report ratios, not
absolute times, in issues.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from ntengine.info import package_version

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict:
    """Wall time of fn() over `repeats` runs after `warmup` untimed ones.

    Returns seconds: {"median", "q1", "q3", "iqr", "min", "times"}.
    """
    return timeit_interleaved({"fn": fn}, repeats, warmup)["fn"]


def timeit_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict:
    """`timeit` of several functions, run round-robin (one call of each per round, the
    order rotating): a slow spell of a shared machine then hits every function alike
    instead of whichever ran during it, so ratios between them stay meaningful.

    Returns {name: timeit's dict}.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: _summary(t) for name, t in times.items()}


def _summary(times: list[float]) -> dict:
    # Why "inclusive": with few repeats it keeps the quartiles inside the observed range.
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    return {"median": statistics.median(times), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "min": min(times), "times": times}


def _cpu_model() -> str:
    """The model name, with family/model numbers: VMs often say only "AMD EPYC", and
    family 25 model 1 (Zen 3) vs 17 (Zen 4) is what decides the kernels' speed."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "model name" in fields:
            return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, core counts, OS, and versions of python / numpy / torch."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": package_version("numpy"),
        "torch": package_version("torch"),
        "cpu_flags": _ntengine_cpu().get("flags"),
        "cpu_isa": _ntengine_cpu().get("isa"),  # the CPU kernels' build in use (NTENGINE_CPU_ISA forces it)
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def _ntengine_cpu() -> dict:
    try:
        from ntengine import cpu

        return cpu.info()
    except (ImportError, RuntimeError):
        return {}


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Plain fixed-width table of `columns` from each row (floats with 2 decimals)."""
    cells = [[f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def write_json(path: Path, payload: dict) -> Path:
    """Write payload as indented JSON, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
