"""Progress of long jobs: a tqdm bar on a terminal (its ETA from the first update on),
timed log lines elsewhere (CI logs, `nohup`, Slurm: a run-time estimate after the first
update, then a line every 30 s, a summary at the end), nothing when silenced.

Library functions take ``progress=True|False``; the CLI's ``--progress auto|bar|log|off``
and ``-q`` set the process-wide mode with `set_mode`.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("ntengine")

MODES = ("auto", "bar", "log", "off")
LOG_EVERY_S = 30.0  # between log lines, when there is no terminal to draw a bar on
_mode = "auto"


def set_mode(mode: str) -> None:
    """auto (a bar when stderr is a terminal or in Jupyter, else log lines through the
    "ntengine" logger), bar, log or off."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def progress(total: float | None, desc: str, unit: str, enabled: bool = True, initial: float = 0, **bar_options):
    """A tqdm bar, or an object with its update(n) / set_postfix / close / context manager
    that logs, as the process-wide mode says (`enabled=False` silences it). `bar_options`
    go to tqdm."""
    mode = _mode if enabled else "off"
    if mode == "auto":  # notebooks draw tqdm's text bar too, but their stderr is no terminal
        mode = "bar" if sys.stderr.isatty() or "ipykernel" in sys.modules else "log"
    if mode == "bar":
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, dynamic_ncols=True,
                    **bar_options)
    return _LogLines(total, desc, unit, initial, emit=mode == "log")


def _quantity(n: float, unit: str) -> str:
    if unit == "bp":
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if n >= scale:
                return f"{n / scale:.1f} {prefix}bp"
    return f"{n:,.0f} {unit}" if n >= 10 or n == int(n) else f"{n:.2g} {unit}"


def _duration(s: float) -> str:
    return f"{s:.1f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


class _LogLines:
    """tqdm's interface as log lines: a run-time estimate after the first update, a line every
    LOG_EVERY_S (done of total, percent, rate, time left), a summary at close. Silent when
    `emit` is false."""

    def __init__(self, total, desc, unit, initial, emit):
        self.total, self.desc, self.unit, self.n, self.emit = total, desc, unit, initial, emit
        self.postfix: dict = {}
        self._initial, self._t0, self._estimated, self._closed = initial, time.perf_counter(), False, False
        self._last = self._t0

    def _rate(self) -> tuple[float, float]:
        elapsed = time.perf_counter() - self._t0
        return elapsed, (self.n - self._initial) / elapsed if elapsed > 0 else 0.0

    def _left(self, rate: float) -> str:
        return _duration((self.total - self.n) / rate) if rate else "unknown time"

    def update(self, n: float = 1) -> None:
        self.n += n
        if not self.emit:
            return
        now = time.perf_counter()
        elapsed, rate = self._rate()
        if not self._estimated and self.total and self.n > self._initial:
            self._estimated = True
            if self.n >= self.total:  # done in one go: the summary says it all
                return
            log.info(f"{self.desc}: {_quantity(self.n - self._initial, self.unit)} of "
                     f"{_quantity(self.total - self._initial, self.unit)} took {_duration(elapsed)}; "
                     f"about {self._left(rate)} to go")
        elif now - self._last >= LOG_EVERY_S:
            done = _quantity(self.n, self.unit)
            if self.total:
                done += f" of {_quantity(self.total, self.unit)} ({100 * self.n / self.total:.0f}%), " \
                        f"{self._left(rate)} left"
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            log.info(f"{self.desc}: {done}, {_quantity(rate, self.unit)}/s{extra}")
        else:
            return
        self._last = now

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.emit and not self._closed:
            elapsed, rate = self._rate()
            log.info(f"{self.desc}: {_quantity(self.n, self.unit)} in {_duration(elapsed)} "
                     f"({_quantity(rate, self.unit)}/s)")
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
