"""The candidates' segment rows from memory, where the serving indexes hold them: the
catalogue says which segment ids make up a video (in time order, with their times), the
segment-level index gives their vectors (an exact index or a fast-scan one keeps the full
vectors). What re-ranking and the placing of video-level hits read, without SQL.

    held_segment_rows(catalogue, index, video_ids) -> ({video id: SegmentRows}, missing)
    held_segment_block(catalogue, index, video_ids) -> SegmentBlock | None  (one set of
        arrays for them all: what placing a batch's video hits reads)

`missing`: the videos memory cannot answer for (no places yet, or an index of compressed
codes only); the caller reads those from SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.index import Catalogue
from services.store import SegmentRows


class HeldVectors(Protocol):
    @property
    def holds_vectors(self) -> bool: ...

    def vectors(self, ids: np.ndarray) -> np.ndarray | None: ...


@dataclass(frozen=True)
class SegmentBlock:
    """Several videos' segment rows in one set of arrays: video_ids[i]'s rows at
    offsets[i]:offsets[i + 1], in time order (none where memory holds none of its)."""

    video_ids: list[int]
    offsets: np.ndarray  # (n + 1,) int64
    ids: np.ndarray  # (rows,) int64 segment ids
    start_s: np.ndarray  # (rows,) float64
    end_s: np.ndarray  # (rows,) float64
    xb: np.ndarray  # (rows, d) float32

    def rows(self, i: int) -> SegmentRows:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return SegmentRows(self.ids[a:b], self.start_s[a:b], self.end_s[a:b], self.xb[a:b])


def held_segment_block(
    catalogue: Catalogue, index: HeldVectors | None, video_ids: Sequence[int]
) -> SegmentBlock | None:
    """One look-up for all the videos (a batch's hits: thousands of videos): their ids,
    places and vectors gathered at once, grouped by video in time order. None where the
    index holds no vectors or lacks some vector of the lot (held_segment_rows then tells
    which video by itself)."""
    if index is None or not index.holds_vectors:  # codes only
        return None
    vids = [int(v) for v in video_ids]
    per = [catalogue.segment_ids(v) for v in vids]
    lens = np.array([len(x) for x in per], dtype=np.int64)
    offsets = np.zeros(len(vids) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    if not offsets[-1]:
        return SegmentBlock(vids, offsets, np.zeros(0, np.int64), np.zeros(0), np.zeros(0),
                            np.zeros((0, 0), np.float32))  # fmt: skip
    ids = np.concatenate(per)
    p = catalogue.places("segment", ids)
    group = np.repeat(np.arange(len(vids)), lens)
    order = np.lexsort((p.segment_index, group))  # by video, then in time order
    ids = ids[order]
    xb = index.vectors(ids)
    if xb is None:
        return None
    return SegmentBlock(vids, offsets, ids, p.start_s[order], p.end_s[order], xb)


def held_segment_rows(
    catalogue: Catalogue, index: HeldVectors | None, video_ids: Sequence[int]
) -> tuple[dict[int, SegmentRows], list[int]]:
    """The videos' rows from one held_segment_block, cut per video; a video by itself
    only when the index lacks some vector of the lot (to tell which)."""
    if index is None or not index.holds_vectors:  # codes only: every video from SQL
        return {}, list(video_ids)
    block = held_segment_block(catalogue, index, video_ids)
    if block is None:
        return _one_by_one(catalogue, index, [int(v) for v in video_ids])
    found: dict[int, SegmentRows] = {}
    missing: list[int] = []
    for i, (vid, n) in enumerate(zip(block.video_ids, np.diff(block.offsets).tolist(),
                                     strict=True)):  # fmt: skip
        if n:
            found[vid] = block.rows(i)
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
