"""Cut a video's time line into windows, and where to sample frames inside each (pure).

    |<-- segment_s -->|<-- segment_s -->|<- rest ->|      one clip (and one vector) each
      x  x  x  ...  x                                      T samples per window, at the
                                                           centres of T equal sub-intervals

A sample at time t takes the frame on screen at t: the last frame whose timestamp is <= t
(what a player shows, and what an exact seek to t returns). Times are seconds from the first
video frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A remainder this short would make a clip of near-identical frames and a search hit of a
# few hundredths of a second; it is merged into the window before it instead.
DEFAULT_MIN_LAST_S = 0.5
_EPS = 1e-9


@dataclass(frozen=True)
class Window:
    """One segment of a video: [start_s, end_s) in seconds from the first frame."""

    index: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def sample_times(self, frames: int) -> list[float]:
        """The `frames` sample times: centres of `frames` equal sub-intervals."""
        step = self.duration_s / frames
        return [self.start_s + (i + 0.5) * step for i in range(frames)]


def plan_windows(
    duration_s: float, segment_s: float = 4.0, *, min_last_s: float = DEFAULT_MIN_LAST_S
) -> list[Window]:
    """Windows of `segment_s` covering [0, duration_s); the last one is shorter.

    A video shorter than `segment_s` gives one window. A remainder shorter than `min_last_s`
    is merged into the previous window (which becomes up to `segment_s + min_last_s` long);
    pass `min_last_s=0` to always keep it as its own window.
    """
    if not duration_s > 0 or not math.isfinite(duration_s):
        raise ValueError(f"duration_s must be a positive number, got {duration_s}")
    if not segment_s > 0:
        raise ValueError(f"segment_s must be > 0, got {segment_s}")
    if min_last_s < 0:
        raise ValueError(f"min_last_s must be >= 0, got {min_last_s}")
    full = math.floor(duration_s / segment_s + _EPS)
    rest = duration_s - full * segment_s
    edges = [i * segment_s for i in range(full + 1)]
    if rest > _EPS * max(1.0, duration_s):
        if rest < min_last_s and full >= 1:
            edges[-1] = duration_s  # merge into the last full window
        else:
            edges.append(duration_s)
    else:
        edges[-1] = duration_s  # exact multiple: end exactly at the duration
    return [Window(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def check_windows(windows: Sequence[Window]) -> None:
    """Decoding reads the file once, front to back: windows must be in time order, must not
    overlap, and must not be empty."""
    prev_end = -math.inf
    for w in windows:
        if not w.end_s > w.start_s:
            raise ValueError(f"window {w.index} is empty or reversed: {w.start_s}..{w.end_s}")
        if w.start_s < 0:
            raise ValueError(f"window {w.index} starts before the video: {w.start_s}")
        if w.start_s < prev_end - 1e-6:
            raise ValueError(
                f"window {w.index} ({w.start_s}..{w.end_s}) overlaps or precedes the window "
                "before it; decode overlapping windows in separate calls"
            )
        prev_end = w.end_s
