"""What the developer benchmarks share, on top of `ntengine.bench` (one timing loop, one
machine description): the median/IQR summary they print, a table, JSON output.

Benchmarks compare against a baseline timed in the same process; report ratios, not
absolute times, in issues.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable

from ntengine.bench.machine import machine
from ntengine.bench.timing import time_round_robin

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    return machine()


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict:
    """Wall time of fn() over `repeats` runs after `warmup` untimed ones.

    Returns seconds: {"median", "q1", "q3", "iqr", "min", "times"}.
    """
    return timeit_interleaved({"fn": fn}, repeats, warmup)["fn"]


def timeit_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict:
    """`timeit` of several functions, timed round-robin (`ntengine.bench.timing`)."""
    return {name: _summary(t) for name, t in time_round_robin(fns, repeats=repeats, warmup=warmup).items()}


def _summary(times: list[float]) -> dict:
    # Why "inclusive": with few repeats it keeps the quartiles inside the observed range.
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    return {"median": statistics.median(times), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "min": min(times), "times": times}


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
