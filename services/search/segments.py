"""The candidates' segment rows from memory, where the serving indexes hold them: the
catalogue says which segment ids make up a video (in time order, with their times), the
segment-level index gives their vectors (an exact index or a fast-scan one keeps the full
vectors). What re-ranking and the placing of video-level hits read, without SQL.

    held_segment_rows(catalogue, index, video_ids) -> ({video id: SegmentRows}, missing)

`missing`: the videos memory cannot answer for (no places yet, or an index of compressed
codes only); the caller reads those from SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from services.index import Catalogue
from services.store import SegmentRows


class HeldVectors(Protocol):
    def vectors(self, ids: np.ndarray) -> np.ndarray | None: ...


def held_segment_rows(
    catalogue: Catalogue, index: HeldVectors | None, video_ids: Sequence[int]
) -> tuple[dict[int, SegmentRows], list[int]]:
    found: dict[int, SegmentRows] = {}
    missing: list[int] = []
    if index is None:
        return found, list(video_ids)
    for vid in video_ids:
        ids, places = catalogue.segments_of(vid)
        xb = index.vectors(ids) if len(ids) else None
        if xb is None:
            missing.append(vid)
            continue
        found[vid] = SegmentRows(ids, places.start_s, places.end_s, xb)
    return found, missing
