"""Segment rows from memory: the catalogue's per-video segment ids, in time order, kept
through adds and deletes, and the index's held vectors; SQL only for what memory lacks."""

from __future__ import annotations

import numpy as np

from services.index import Catalogue
from services.search.segments import held_segment_rows
from services.store import VectorPlaces


def places(ids, videos, index):
    return VectorPlaces(np.array(ids, np.int64), np.array(videos, np.int64),
                        np.array(index, np.int32), np.array(index, float) * 4.0,
                        np.array(index, float) * 4.0 + 4.0)  # fmt: skip


class Held:
    """An index holding vectors for some ids (row = id as a one-hot-ish marker)."""

    def __init__(self, held):
        self.held = set(held)

    def vectors(self, ids):
        if not set(ids.tolist()) <= self.held:
            return None
        return np.stack([np.full(4, float(i), np.float32) for i in ids])


def test_segments_of_groups_by_video_in_time_order_across_batches_and_deletes():
    c = Catalogue("v1")
    # video 7's segments arrive in two syncs, interleaved with video 8's (a concurrent
    # ingest), and its ids are not in time order (segment 2 got the smaller id)
    c.add_places("segment", places([1, 2, 3, 4], [7, 8, 7, 8], [2, 0, 0, 1]))
    c.add_places("segment", places([5, 9], [7, 9], [1, 0]))
    ids, p = c.segments_of(7)
    assert ids.tolist() == [3, 5, 1] and p.segment_index.tolist() == [0, 1, 2]
    assert p.start_s.tolist() == [0.0, 4.0, 8.0]
    assert c.segments_of(8)[0].tolist() == [2, 4]
    assert c.segments_of(404)[0].tolist() == []
    assert c.drop_vectors("segment", np.array([5, 9])) == {7, 9}
    assert c.segments_of(7)[0].tolist() == [3, 1] and c.segments_of(9)[0].tolist() == []
    c.add_places("video", places([1], [7], [-1]))  # video-level places are not segments
    assert c.segments_of(7)[0].tolist() == [3, 1]


def test_held_segment_rows_reads_memory_and_names_what_it_lacks():
    c = Catalogue("v1")
    c.add_places("segment", places([1, 2, 3, 4, 5], [7, 7, 8, 8, 8], [0, 1, 0, 1, 2]))
    rows, missing = held_segment_rows(c, Held([1, 2, 3, 4]), [7, 8, 9])
    assert set(rows) == {7} and missing == [8, 9]  # 8: id 5 not held; 9: no places
    assert rows[7].ids.tolist() == [1, 2] and rows[7].xb[:, 0].tolist() == [1.0, 2.0]
    assert rows[7].end_s.tolist() == [4.0, 8.0]
    assert held_segment_rows(c, None, [7]) == ({}, [7])  # no segment index: all from SQL
