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
    """Windows of `window` bp every `stride` bp (default: no overlap) covering [0, length).

    The last window may be shorter; it is never dropped, so every base is covered.
    """
    stride = stride or window
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    starts = range(0, max(length - window, 0) + stride, stride) if length > window else [0]
    windows = [Window(record, s, min(s + window, length)) for s in starts if s < length]
    if windows and windows[-1].end < length:  # stride did not land on the end
        windows.append(Window(record, windows[-1].start + stride, length))
    return windows
