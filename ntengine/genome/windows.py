"""Window planning: where on a record each model input starts and ends."""

from __future__ import annotations

from typing import NamedTuple

from ntengine.config import NTConfig


class Window(NamedTuple):
    record: str
    start: int  # 0-based, inclusive
    end: int  # exclusive


def default_window_bp(config: NTConfig) -> int:
    """Longest window that always fits the context: 6 bp per token after the `<cls>`."""
    return 6 * (config.max_positions - 1)


def plan_windows(record: str, length: int, window: int, stride: int | None = None) -> list[Window]:
    """Windows of `window` bp starting every `stride` bp (default: no overlap) on [0, length).

    The last window may be shorter. With stride <= window every base is covered; a
    larger stride samples the record, leaving gaps.
    """
    stride = stride or window
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    last = max(length - window, 0)  # the first start at or past this reaches the end
    return [Window(record, s, min(s + window, length)) for s in range(0, last + stride, stride) if s < length]
