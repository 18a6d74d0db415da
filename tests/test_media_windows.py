"""Window planning, sample times and the time warp behind exact frame selection (pure)."""

from __future__ import annotations

import math

import pytest

from sora_encoder.media import Window, plan_windows
from sora_encoder.media.sampling import scaled_size, tick_expression, warp_pieces
from sora_encoder.media.windows import check_windows


def spans(windows: list[Window]) -> list[float]:
    """Flattened (start, end) pairs, for pytest.approx."""
    return [x for w in windows for x in (w.start_s, w.end_s)]


@pytest.mark.parametrize(
    ("duration", "segment", "min_last", "expected"),
    [
        (10.0, 4.0, 0.5, [(0, 4), (4, 8), (8, 10)]),  # the last window is shorter
        (8.0, 4.0, 0.5, [(0, 4), (4, 8)]),  # an exact multiple: no empty window
        (2.5, 4.0, 0.5, [(0, 2.5)]),  # shorter than a segment: one window
        (0.2, 4.0, 0.5, [(0, 0.2)]),  # even shorter than min_last_s
        (8.3, 4.0, 0.5, [(0, 4), (4, 8.3)]),  # a 0.3-s tail is merged
        (8.3, 4.0, 0.0, [(0, 4), (4, 8), (8, 8.3)]),  # unless merging is off
        (3.0, 1.2, 0.5, [(0, 1.2), (1.2, 2.4), (2.4, 3.0)]),
        (12.000000001, 4.0, 0.5, [(0, 4), (4, 8), (8, 12.000000001)]),  # float noise
    ],
)
def test_plan_windows(
    duration: float, segment: float, min_last: float, expected: list[tuple[float, float]]
) -> None:
    windows = plan_windows(duration, segment, min_last_s=min_last)
    assert spans(windows) == pytest.approx([x for pair in expected for x in pair])
    assert [w.index for w in windows] == list(range(len(expected)))
    assert windows[-1].end_s == duration  # the plan covers the whole video, exactly


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_plan_windows_refuses_bad_durations(bad: float) -> None:
    with pytest.raises(ValueError):
        plan_windows(bad)


def test_sample_times_are_centres_of_equal_sub_intervals() -> None:
    assert Window(0, 0.0, 4.0).sample_times(4) == pytest.approx([0.5, 1.5, 2.5, 3.5])
    assert Window(3, 8.0, 9.0).sample_times(2) == pytest.approx([8.25, 8.75])
    times = Window(0, 4.0, 8.0).sample_times(16)
    assert times[0] == pytest.approx(4.125) and times[-1] == pytest.approx(7.875)


@pytest.mark.parametrize(
    "windows",
    [
        [Window(0, 0, 4), Window(1, 3, 6)],  # overlap
        [Window(0, 4, 8), Window(1, 0, 4)],  # out of order
        [Window(0, 2, 2)],  # empty
        [Window(0, -1, 2)],  # before the start
    ],
)
def test_check_windows_refuses(windows: list[Window]) -> None:
    with pytest.raises(ValueError):
        check_windows(windows)


def tick(pieces: list, t: float) -> float:
    """Reference evaluation of the warp minus the half-slot shift (see sampling.py)."""
    p = [q for q in pieces if q.start_s <= t][-1] if t >= pieces[0].start_s else pieces[0]
    return p.slot0 + (t - p.start_s) * p.rate - 0.5


@pytest.mark.parametrize(
    "windows",
    [
        plan_windows(10.0),
        plan_windows(3.0, 1.2),
        [Window(0, 1.0, 1.5), Window(1, 2.0, 2.2), Window(2, 2.2, 3.0)],  # gap, then adjacent
    ],
)
def test_every_sample_lands_on_its_integer_tick(windows: list[Window]) -> None:
    frames = 8
    pieces = warp_pieces(windows, frames)
    ticks = [tick(pieces, t) for w in windows for t in w.sample_times(frames)]
    assert ticks == pytest.approx(list(range(len(windows) * frames)), abs=1e-9)
    # Monotonic over the whole time line, so "last frame before the tick" stays exact.
    grid = [i * 0.01 for i in range(0, 1100)]
    values = [tick(pieces, t) for t in grid]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))


def test_plan_windows_warp_has_at_most_two_pieces() -> None:
    assert len(warp_pieces(plan_windows(3600.0 + 1.7), 16)) == 2
    assert len(warp_pieces(plan_windows(3600.0), 16)) == 1


def test_tick_expression_depth_is_logarithmic() -> None:
    # 1000 windows separated by gaps: 1999 pieces, but nesting stays shallow.
    windows = [Window(i, 2.0 * i, 2.0 * i + 1.0) for i in range(1000)]
    expr = tick_expression(windows, 4)
    depth = max_depth = 0
    for ch in expr:
        depth += ch == "("
        depth -= ch == ")"
        max_depth = max(max_depth, depth)
    assert max_depth < 3 * math.ceil(math.log2(2000)) + 5


@pytest.mark.parametrize(
    ("aspect", "size", "expected"),
    [
        (4 / 3, 112, (149, 112)),
        (3 / 4, 112, (112, 149)),
        (1.0, 112, (112, 112)),
        (16 / 9, 64, (114, 64)),
        (720 * 32 / 27 / 480, 112, (199, 112)),  # anamorphic DVD: display aspect 16:9
    ],
)
def test_scaled_size_keeps_display_aspect(
    aspect: float, size: int, expected: tuple[int, int]
) -> None:
    assert scaled_size(aspect, size) == expected
