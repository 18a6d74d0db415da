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
    @property
    def holds_vectors(self) -> bool: ...

    def vectors(self, ids: np.ndarray) -> np.ndarray | None: ...


def held_segment_rows(
    catalogue: Catalogue, index: HeldVectors | None, video_ids: Sequence[int]
) -> tuple[dict[int, SegmentRows], list[int]]:
    """One look-up for all the videos (a batch's hits: thousands of videos): their ids,
    places and vectors gathered at once, then cut per video; a video by itself only when
    the index lacks some vector of the lot (to tell which)."""
    if index is None or not index.holds_vectors:  # codes only: every video from SQL
        return {}, list(video_ids)
    vids = [int(v) for v in video_ids]
    per = [catalogue.segment_ids(v) for v in vids]
    lens = np.array([len(x) for x in per])
    if not lens.any():
        return {}, vids
    ids = np.concatenate(per)
    xb = index.vectors(ids)
    if xb is None:
        return _one_by_one(catalogue, index, vids)
    p = catalogue.places("segment", ids)
    group = np.repeat(np.arange(len(vids)), lens)
    order = np.lexsort((p.segment_index, group))  # by video, then in time order
    cuts = np.cumsum(lens)[:-1]
    parts = zip(*(np.split(x[order], cuts) for x in (ids, p.start_s, p.end_s, xb)), strict=True)
    found: dict[int, SegmentRows] = {}
    missing: list[int] = []
    for vid, n, (i, start, end, x) in zip(vids, lens.tolist(), parts, strict=True):
        if n:
            found[vid] = SegmentRows(i, start, end, x)
        else:
            missing.append(vid)
    return found, missing


def _one_by_one(
    catalogue: Catalogue, index: HeldVectors, vids: list[int]
) -> tuple[dict[int, SegmentRows], list[int]]:
    found: dict[int, SegmentRows] = {}
    missing: list[int] = []
    for vid in vids:
        ids, places = catalogue.segments_of(vid)
        xb = index.vectors(ids) if len(ids) else None
        if xb is None:
            missing.append(vid)
        else:
            found[vid] = SegmentRows(ids, places.start_s, places.end_s, xb)
    return found, missing
