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

    holds_vectors = True

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


def info(vid, collection, status=None):
    from services.index import VideoInfo
    from services.store import VideoStatus

    return VideoInfo(vid, f"/v/{vid}.mp4", f"{vid:064x}", 1, status or VideoStatus.READY,
                     collection=collection)  # fmt: skip


def test_filter_flags_are_built_once_and_follow_every_change():
    from services.search.filters import admit, admitted_share
    from services.search.types import SearchOptions
    from services.store import VideoStatus

    c = Catalogue("v1")
    c.apply_videos([info(v, "a" if v % 2 else "b") for v in range(1, 9)])
    c.add_places("video", places(list(range(1, 9)), list(range(1, 9)), [-1] * 8))
    opts = SearchOptions(collection="a")
    calls = []
    real = c.filter_mask

    def counting(key, predicate):
        calls.append(key)
        return real(key, predicate)

    c.filter_mask = counting
    tested = []
    import services.search.filters as filters_module

    real_passes = filters_module.passes

    def counting_passes(i, o, e):
        tested.append(i.id)
        return real_passes(i, o, e)

    filters_module.passes, restore = counting_passes, real_passes
    try:
        ids = np.arange(1, 9)
        assert admit(c, "video", ids, opts).tolist() == [1, -1, 3, -1, 5, -1, 7, -1]
        assert admitted_share(c, opts) == 0.5
        assert sorted(tested) == list(range(1, 9))  # the first search: one pass, all videos
        tested.clear()
        # one video moves to "a", one leaves it, one is deleted, one is no longer READY,
        # and a new one arrives past the mask's end
        c.apply_videos([info(2, "a"), info(7, "b"), info(12, "a")], touched=[])
        c.remove_video(3)
        c.apply_videos([info(5, "a", VideoStatus.DELETED)])
        c.add_places("video", places([12], [12], [-1]))
        assert sorted(set(tested)) == [2, 7, 12]  # only the changed videos re-tested
        tested.clear()
        got = admit(c, "video", np.array([1, 2, 3, 5, 7, 12]), opts)
        assert got.tolist() == [1, 2, -1, -1, -1, 12]
        assert tested == []  # a search with the kept flags tests no video
    finally:
        filters_module.passes = restore


def test_appended_places_leave_views_readers_hold_unchanged_and_are_not_copied_each_time():
    """A sync appends places into spare room of the arrays (no copy of every row per
    sync); a search holding the places from before still sees exactly what it saw, and
    drops (tombstones) and lookups stay right across appends and growth."""
    c = Catalogue("v1")
    c.add_places("segment", places([1, 2], [7, 7], [0, 1]))
    before = c.places("segment", np.array([1, 2, 3]))
    t = c._places["segment"]  # what a search in flight holds
    held = [t.ids, t.video_ids, t.segment_index, t.start_s, t.end_s]
    held_copy = [x.copy() for x in held]
    grown = []
    for i in range(3, 40):  # one place per sync, as a slow ingest
        c.add_places("segment", places([i], [7 + i % 3], [i]))
        grown.append(c._places["segment"])
    for kept, copy in zip(held, held_copy, strict=True):
        assert np.array_equal(kept, copy)
    assert before.video_id.tolist() == [7, 7, -1]
    # most appends wrote into room the arrays already had: shared with the sync before
    in_place = sum(
        np.shares_memory(a.ids, b.ids) for a, b in zip(grown[:-1], grown[1:], strict=True)
    )
    assert in_place >= len(grown) - 8, in_place  # a doubling now and then (log2 of 39)
    got = c.places("segment", np.arange(0, 42))
    assert got.video_id.tolist() == [-1, 7, 7] + [7 + i % 3 for i in range(3, 40)] + [-1, -1]
    assert got.segment_index[3:40].tolist() == list(range(3, 40))
    assert c.drop_vectors("segment", np.array([2, 20])) == {7, 9}
    c.add_places("segment", places([40], [8], [40]))
    got = c.places("segment", np.array([1, 2, 20, 21, 40]))
    assert got.video_id.tolist() == [7, -1, -1, 7, 8] and c.vector_count("segment") == 38
