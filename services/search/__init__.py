"""Search in stages (pipeline.py draws them): options, retrieve, filter, re-rank; and the
re-ranking's temporal alignment of a query's segments to a candidate's."""

from services.search.alignment import (
    DEFAULT_GAP_PENALTY,
    DEFAULT_THRESHOLD,
    Alignment,
    adaptive_threshold,
    align,
    align_many,
)

__all__ = [
    "DEFAULT_GAP_PENALTY",
    "DEFAULT_THRESHOLD",
    "Alignment",
    "adaptive_threshold",
    "align",
    "align_many",
]
