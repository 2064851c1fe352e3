"""The one timing loop every benchmark uses: several callables timed round-robin (one call
of each per round, the order rotating), so a slow spell of a shared machine hits them all
alike and ratios between them stay meaningful; on CUDA each call is bracketed by events on
the current stream and read after a synchronisation.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

PERCENTILES = (50, 90, 99)


def summarise(seconds) -> dict:
    """Latency statistics of per-call samples, in milliseconds: p50, p90, p99 (numpy's
    linear interpolation), min, max, mean, sd (population), n; the samples themselves too."""
    t = np.asarray(seconds, np.float64) * 1e3
    if t.size == 0:
        raise ValueError("no samples")
    out = {f"p{q}_ms": float(np.percentile(t, q)) for q in PERCENTILES}
    out.update(min_ms=float(t.min()), max_ms=float(t.max()), mean_ms=float(t.mean()), sd_ms=float(t.std()),
               n=int(t.size), samples_ms=[float(x) for x in t])
    return out


class _CpuClock:
    def start(self):
        return time.perf_counter()

    def stop(self, started) -> float:
        return time.perf_counter() - started


class _CudaClock:
    """Events on the current stream: what the GPU spent, without the host's launch jitter
    between calls; `stop` synchronises on the end event."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device

    def start(self):
        begin = self.torch.cuda.Event(enable_timing=True)
        begin.record(self.torch.cuda.current_stream(self.device))
        return begin

    def stop(self, begin) -> float:
        end = self.torch.cuda.Event(enable_timing=True)
        end.record(self.torch.cuda.current_stream(self.device))
        end.synchronize()
        return begin.elapsed_time(end) / 1e3


def clock(device=None):
    """A clock for work on `device` (a torch.device or None for the host)."""
    return _CudaClock(device) if device is not None and device.type == "cuda" else _CpuClock()


def time_round_robin(fns: dict[str, Callable[[], object]], repeats: int | None = None,
                     duration: float | None = None, warmup: int = 1, device=None) -> dict[str, list[float]]:
    """Seconds per call of each function, after `warmup` untimed calls of each: `repeats`
    rounds, or as many as fit in `duration` seconds (at least 3). Returns {name: samples}."""
    if repeats is None and duration is None:
        raise ValueError("give repeats or duration")
    if repeats is not None and repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    timer = clock(device)
    samples: dict[str, list[float]] = {name: [] for name in names}
    t0, r = time.perf_counter(), 0
    while (r < repeats) if repeats is not None else (r < 3 or time.perf_counter() - t0 < duration):
        for name in names[r % len(names):] + names[:r % len(names)]:
            started = timer.start()
            fns[name]()
            samples[name].append(timer.stop(started))
        r += 1
    return samples


def ratio_to(baseline: list[float], other: list[float]) -> dict:
    """Speed of `other` relative to `baseline` from rounds timed together: the median of the
    per-round ratios (which a slow spell shifts least) and their range."""
    ratios = np.asarray(baseline) / np.asarray(other)
    return {"median": float(np.median(ratios)), "min": float(ratios.min()), "max": float(ratios.max())}
