"""A match between two videos, as the review tools take it: plain data, no proto.

    Match(query=Side(...), target=Side(...), score, copy_score, is_copy)
    match.aligned_times(n) -> n (query time, target time) pairs across the matched ranges

The ranges are matched linearly: the query's start lands on the target's start and its
end on the target's end (a copy played faster or slower stretches evenly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Side:
    """One video of a match and its matched range."""

    name: str  # what a person calls it: its title, else its file name
    start_s: float
    end_s: float
    path: Path | None = None  # the media file on this machine; None: not here (no stills)
    fps: float | None = None  # the media's own frame rate (timeline export)
    duration_s: float | None = None
    video_id: int | None = None
    uri: str = ""

    def __post_init__(self) -> None:
        if not self.end_s >= self.start_s >= 0.0:
            raise ValueError(f"{self.name}: range {self.start_s}-{self.end_s} s is not a range")

    @property
    def span_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Match:
    query: Side
    target: Side
    score: float
    copy_score: float | None = None
    is_copy: bool | None = None

    def aligned_times(self, n: int) -> list[tuple[float, float]]:
        """n (query s, target s) pairs at the centres of n equal parts of the query range."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        q, t = self.query, self.target
        rate = t.span_s / q.span_s if q.span_s > 0 else 0.0
        out = []
        for i in range(n):
            tq = q.start_s + (i + 0.5) / n * q.span_s
            out.append((tq, t.start_s + (tq - q.start_s) * rate))
        return out

    def verdict(self) -> str:
        """A short label: the score, and the copy verdict when there is one."""
        text = f"score {self.score:.3f}"
        if self.copy_score is not None:
            text += f", copy score {self.copy_score:+.3f}"
        if self.is_copy is not None:
            text += ", COPY" if self.is_copy else ", not a copy"
        return text
