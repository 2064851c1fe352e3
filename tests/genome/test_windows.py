"""Window planning on a record."""

import pytest

from ntengine.config import PRESETS
from ntengine.genome.windows import default_window_bp, plan_windows


@pytest.mark.parametrize(
    "length, window, stride, expected",
    [
        (10, 4, None, [(0, 4), (4, 8), (8, 10)]),
        (10, 4, 3, [(0, 4), (3, 7), (6, 10)]),
        (8, 4, None, [(0, 4), (4, 8)]),
        (3, 4, None, [(0, 3)]),
        (0, 4, None, []),
        (10, 4, 5, [(0, 4), (5, 9)]),  # stride > window samples, leaving gaps
    ],
)
def test_plan_windows(length, window, stride, expected):
    assert [(w.start, w.end) for w in plan_windows("chr", length, window, stride)] == expected


def test_bad_window():
    with pytest.raises(ValueError, match="positive"):
        plan_windows("chr", 10, 0)


def test_default_window_fills_the_context():
    assert default_window_bp(PRESETS["v2-50m"]) == 6 * 2047  # 12,282 bp after <cls>
    assert default_window_bp(PRESETS["v1-500m-human-ref"]) == 6 * 999
