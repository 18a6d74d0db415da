"""The search stages one by one, without SQL or gRPC: options, retrieve (over-fetch over a
batch), the catalogue and the filter it answers, re-rank order, merge of variants, and the
lazy query thumbnails of moment refinement."""

# ruff: noqa: E741  (I is faiss's name for the id matrix)

from __future__ import annotations

from types import SimpleNamespace

import faiss
import numpy as np
import pytest

from services.errors import InvalidArgumentError
from services.index import Catalogue, VideoInfo
from services.index import faiss_index as fi
from services.search.filters import admit
from services.search.moments import refine_targets
from services.search.options import (
    MAX_BATCH,
    check_batch_size,
    check_options,
    query_matrix,
    query_vector,
)
from services.search.rerank import rank
from services.search.retrieve import MIN_FETCH, OVER_FETCH, query_rows, retrieve
from services.search.types import Hit, Query, SearchOptions
from services.store import VectorPlaces, VideoStatus

D = 8


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def info(vid: int, *, status=VideoStatus.READY, collection=None, tags=()) -> VideoInfo:
    return VideoInfo(vid, f"/v/{vid}.mp4", f"{vid:064x}", 1, status, collection=collection,
                     tags=tuple(tags))  # fmt: skip


def video_places(ids, vids) -> VectorPlaces:
    n = len(ids)
    return VectorPlaces(np.asarray(ids, np.int64), np.asarray(vids, np.int64),
                        np.full(n, -1, np.int32), np.zeros(n), np.zeros(n))  # fmt: skip


# ---------------------------------------------------------------------------- options


def test_options_are_checked_with_messages_that_say_what_to_change():
    assert check_options(SearchOptions(tags=(" a ", "b"))).tags == ("a", "b")
    for bad, needle in [
        (SearchOptions(top_k=0), "top_k 0: expected 1..1000"),
        (SearchOptions(level="frame"), "expected 'video' or 'segment'"),  # type: ignore[arg-type]
        (SearchOptions(min_score=2.0), "cosine in [-1, 1]"),
        (SearchOptions(tags=(" ",)), "non-empty"),
    ]:
        with pytest.raises(
            InvalidArgumentError, match=needle.replace("[", r"\[").replace(".", r"\.")
        ):
            check_options(bad)


def test_checked_options_are_remembered_by_object_never_confused_with_another():
    """check_options keeps its answer for the options object it was given (the servicer
    hands the same one call after call), and keeps that object alive, so a new object is
    never answered for an old one at the same address; options with many asset ids or
    tags are not kept."""
    first = SearchOptions(tags=(" a ",))
    assert check_options(first) is check_options(first)
    for n in range(200):  # objects come and go; addresses are reused
        o = SearchOptions(top_k=n % 7 + 1, tags=(f" t{n} ",))
        assert check_options(o) == SearchOptions(top_k=n % 7 + 1, tags=(f"t{n}",))
        del o
    with pytest.raises(InvalidArgumentError, match="top_k 0"):
        check_options(SearchOptions(top_k=0))
    many = SearchOptions(external_ids=tuple(f" e{i} " for i in range(100)))  # a one-off: not kept
    assert check_options(many) is not check_options(many)
    assert check_options(many).external_ids == tuple(f"e{i}" for i in range(100))


# (pytest's own warning filters go before the module's, which keeps this one off the
# server's log)
@pytest.mark.filterwarnings("ignore:overflow encountered in dot:RuntimeWarning")
def test_query_vectors_come_out_unit_at_any_scale_and_bad_ones_are_refused():
    """One dot product finds the norm; values whose float32 squares overflow or vanish
    are measured again, so a query's scale never decides its direction or a refusal."""
    direction = unit(np.arange(1.0, D + 1.0))
    for scale in (1e-44, 1e-30, 1e-20, 1e-3, 1.0, 1e3, 1e20, 1e30, 1e37):
        values = (direction * np.float32(scale)).astype(np.float32)
        got = query_vector(values, D, "v1")
        assert got.dtype == np.float32 and got is not values
        # (subnormal values carry few digits: their direction only roughly)
        assert np.allclose(got, direction, atol=1e-6 if scale > 1e-40 else 0.1)
        assert abs(float(np.linalg.norm(got.astype(np.float64))) - 1.0) < 1e-5
    largest = query_vector(np.full(D, 3e38, np.float32), D, "v1")  # its norm is past float32's
    assert np.allclose(largest, np.full(D, 1 / np.sqrt(D)), atol=1e-6)
    # the batch path too: a row past float32's squares is measured again, not zeroed
    X = query_matrix([direction * np.float32(1e20), direction], D, "v1")
    assert np.allclose(X, [direction, direction], atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="the query vector is all zeros"):
        query_vector(np.zeros(D, np.float32), D, "v1")
    for bad in (np.nan, np.inf, -np.inf):
        values = direction.copy()
        values[3] = bad
        with pytest.raises(InvalidArgumentError, match="contains NaN or infinity"):
            query_vector(values, D, "v1")


def test_batch_checks_name_the_query_and_the_cap():
    with pytest.raises(InvalidArgumentError, match="the batch is empty: give 1..256"):
        query_matrix([], D, "v1")
    with pytest.raises(InvalidArgumentError, match=r"query 1 of the batch has 7 values; model "
                       r"version v1 makes 8-d vectors"):  # fmt: skip
        query_matrix([np.ones(D), np.ones(D - 1)], D, "v1")
    with pytest.raises(InvalidArgumentError, match="query 0 of the batch is all zeros"):
        query_matrix([np.zeros(D)], D, "v1")
    with pytest.raises(
        InvalidArgumentError, match=f"at most {MAX_BATCH} per call: split it into 2"
    ):
        check_batch_size(MAX_BATCH + 1)
    X = query_matrix([np.ones(D), 2 * np.eye(D)[0]], D, "v1")
    assert X.shape == (2, D) and np.allclose(np.linalg.norm(X, axis=1), 1.0)
    assert query_vector(np.ones(D), None, None).shape == (D,)  # nothing indexed: no dim check


# ---------------------------------------------------------------------------- retrieve


class CountingFlat:
    """An exact faiss index that counts its searches and the rows each had."""

    def __init__(self, xb: np.ndarray, ids: np.ndarray) -> None:
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(xb.shape[1]))
        self.index.add_with_ids(xb, ids)
        self.calls: list[tuple[int, int]] = []

    def search(self, xq: np.ndarray, k: int):
        self.calls.append((len(xq), k))
        return self.index.search(np.ascontiguousarray(xq, dtype=np.float32), k)


def test_a_batch_is_one_index_search_and_gives_each_query_what_it_gets_alone():
    rng = np.random.default_rng(0)
    xb = unit(rng.normal(size=(300, D)))
    ids = np.arange(1000, 1300, dtype=np.int64)
    flat = CountingFlat(xb, ids)
    xq = [unit(rng.normal(size=(1, D))) for _ in range(30)]
    accept_all = lambda q, got: got.copy()  # noqa: E731 - every id passes, as its own video
    batch = retrieve(flat.search, xq, ntotal=300, wanted=[5] * 30, admit=accept_all)
    assert flat.calls == [(30, max(OVER_FETCH * 5, MIN_FETCH))]  # one search, all 30 rows
    for q in range(30):
        alone = retrieve(flat.search, [xq[q]], ntotal=300, wanted=[5], admit=accept_all)[0]
        assert [c.vector_id for c in batch[q].candidates] == [c.vector_id for c in alone.candidates]
        assert [c.score for c in batch[q].candidates] == pytest.approx(
            [c.score for c in alone.candidates], abs=1e-6
        )
        D_, I_ = flat.index.search(xq[q], 20)
        assert [c.vector_id for c in alone.candidates] == I_[0].tolist()


def test_over_fetch_searches_again_only_for_the_queries_that_need_it():
    rng = np.random.default_rng(1)
    xb = unit(rng.normal(size=(500, D)))
    ids = np.arange(1, 501, dtype=np.int64)
    flat = CountingFlat(xb, ids)
    xq = [unit(rng.normal(size=(1, D))) for _ in range(4)]

    # query 2 accepts only ids divisible by 50: 10 of 500, so the first 16 rarely hold 2
    def admit_fn(q, got):
        return np.where(got % 50 == 0, got, -1) if q == 2 else got.copy()

    out = retrieve(flat.search, xq, ntotal=500, wanted=[2] * 4, admit=admit_fn)
    assert flat.calls[0] == (4, 16)
    assert all(n == 1 for n, _ in flat.calls[1:]) and len(flat.calls) >= 2
    assert len(out[2].candidates) >= 2 and all(c.vector_id % 50 == 0 for c in out[2].candidates)
    assert [len(r.candidates) for r in (out[0], out[1], out[3])] == [16, 16, 16]


def test_each_id_keeps_its_best_row_and_scores_under_the_minimum_are_left_out():
    def search(xq, k):
        D_ = np.array([[0.9, 0.5, 0.1], [0.95, 0.4, -np.inf]], np.float32)
        I_ = np.array([[7, 8, 9], [8, 7, -1]], np.int64)
        return D_, I_

    got = retrieve(search, [np.zeros((2, D), np.float32)], ntotal=3, wanted=[1],
                   admit=lambda q, i: i.copy(), min_score=0.3, per_video=False)[0]  # fmt: skip
    assert [(c.vector_id, c.query_row) for c in got.candidates] == [(8, 1), (7, 0)]
    assert [c.score for c in got.candidates] == pytest.approx([0.95, 0.9])
    assert got.returned == 3


def test_segment_level_searches_at_most_32_evenly_spaced_query_rows():
    q = Query(vector=unit(np.ones(D)), segments=unit(np.ones((100, D))),
              times=[(i, i + 1.0) for i in range(100)])  # fmt: skip
    xq, rows = query_rows(q, "segment")
    assert xq.shape == (32, D) and rows[0] == 0 and rows[-1] == 99
    xq, rows = query_rows(q, "video")
    assert xq.shape == (1, D) and rows == [None]


# ---------------------------------------------------------------------------- catalogue + filter


def test_the_catalogue_answers_places_and_filters_from_memory():
    cat = Catalogue("v1")
    cat.add_places("video", video_places([10, 11, 12, 13], [1, 2, 3, 4]))
    cat.apply_videos([
        info(1, collection="a", tags=["red", "big"]),
        info(2, collection="b", tags=["red"]),
        info(3, status=VideoStatus.PROCESSING),  # not servable: left out
        info(4, collection="a"),
    ])  # fmt: skip
    assert len(cat) == 3 and cat.video(3) is None
    ids = np.array([13, 10, 99, 11, 12], np.int64)
    assert cat.places("video", ids).video_id.tolist() == [4, 1, -1, 2, 3]  # 99: unknown

    def passing(**kw):
        exclude = kw.pop("exclude", None)
        return admit(cat, "video", ids, SearchOptions(**kw), exclude).tolist()

    assert passing() == [4, 1, -1, 2, -1]
    assert passing(collection="a") == [4, 1, -1, -1, -1]
    assert passing(tags=("red",)) == [-1, 1, -1, 2, -1]
    assert passing(tags=("red", "big")) == [-1, 1, -1, -1, -1]
    assert passing(exclude=1) == [4, -1, -1, 2, -1]

    cat.remove_video(1)  # the API, after DeleteVideo committed
    assert passing() == [4, -1, -1, 2, -1]
    assert cat.drop_vectors("video", np.array([11, 99])) == {2}  # tombstones
    assert cat.places("video", ids).video_id.tolist() == [4, 1, -1, -1, 3]
    cat.apply_videos([], touched={2})  # a touched video without a row: out
    assert cat.video(2) is None
    for v in (3, 4):  # every video deleted: nothing passes, nothing breaks
        cat.remove_video(v)
    assert len(cat) == 0 and passing() == [-1] * 5
    assert cat.servable(np.array([1, 4, 10**9, -1])).tolist() == [False] * 4
    with pytest.raises(ValueError, match="id order"):
        cat.add_places("video", video_places([12], [3]))


def test_places_appended_by_a_sync_are_found_through_the_same_table_grown_in_place():
    cat = Catalogue("v1")
    cat.add_places("video", video_places(range(10, 30), range(1, 21)))
    cat.apply_videos([info(v) for v in range(1, 31)])
    asked = np.arange(8, 45, dtype=np.int64)
    first = cat.places("video", asked).video_id.tolist()
    assert first == [-1, -1] + list(range(1, 21)) + [-1] * 15
    table = cat._positions["video"]
    cat.add_places("video", video_places(range(30, 40), range(21, 31)))  # an ingest's sync
    grown = cat._positions["video"]
    assert grown is not table and grown._room is table._room  # not made again
    assert cat.places("video", asked).video_id.tolist() == [-1, -1] + list(range(1, 31)) + [-1] * 5
    assert cat._positions["video"] is grown  # the search used it as it was
    assert table.find(asked)[1].sum() == 20  # a search holding the old one: as it was
    cat.drop_vectors("video", np.array([15]))  # a removal: the places and table made again
    assert cat.places("video", np.array([14, 15, 16])).video_id.tolist() == [5, -1, 7]


class MaskedFlat:
    """An exact faiss index behind faiss_index.search (as VectorIndex calls it), recording
    each search's k and whether the filter's bits went with it."""

    def __init__(self, xb: np.ndarray, ids: np.ndarray) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(xb.shape[1]))
        self.index.add_with_ids(xb, ids)
        self.dim, self.calls = xb.shape[1], []

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, xq, k, admitted=None):
        self.calls.append((len(xq), k, admitted is not None))
        return fi.search(self.index, np.ascontiguousarray(xq, np.float32), k, admitted)


def test_a_collection_filter_is_tested_by_the_index_without_over_fetch_and_follows_changes():
    """A collection / tags filter goes to FAISS as bits over vector ids: one search at the
    unfiltered k (no 8x over-fetch), and the exact filtered top k; the bits follow the
    catalogue's changes (a video moved into the collection, one deleted, a new one)."""
    from services.search import packed, pipeline

    rng = np.random.default_rng(3)
    n = 200
    xb = unit(rng.normal(size=(n + 1, D)))
    vids = np.arange(1, n + 1)
    vector_ids = 1000 + vids  # video v's vector id
    cat = Catalogue("v1")
    cat.add_places("video", video_places(vector_ids, vids))
    cat.apply_videos([info(int(v), collection="abcd"[v % 4]) for v in vids])
    flat = MaskedFlat(xb[:n], vector_ids)
    opts = SearchOptions(level="video", top_k=5, collection="a")
    xq = unit(rng.normal(size=(6, D)))
    queries = [Query(vector=x) for x in xq]

    def exact_in_a(x: np.ndarray) -> list[int]:
        ok = [v for v in range(1, len(flat_vectors) + 1)
              if (cat.video(v) is not None and cat.video(v).collection == "a")]  # fmt: skip
        scores = {v: float(flat_vectors[v - 1] @ x) for v in ok}
        return sorted(ok, key=lambda v: -scores[v])[:5]

    flat_vectors = xb[:n]
    run = dict(index=flat, catalogue=cat, load=lambda ids: {}, version="v1")
    results = pipeline.run(queries, opts, **run)
    assert flat.calls == [(6, MIN_FETCH, True)]  # one search, k = max(top_k, 16): no 8x
    for x, r in zip(xq, results, strict=True):
        assert [h.video.id for h in r.hits] == exact_in_a(x)
    cols = packed.run_packed(queries, opts, **run)
    assert flat.calls[-1] == (6, MIN_FETCH, True)
    assert cols.video_ids.tolist() == [h.video.id for r in results for h in r.hits]

    # video 2 moves into "a", the best of "a" for query 0 is deleted, video 201 arrives in "a"
    best = results[0].hits[0].video.id
    cat.apply_videos([info(2, collection="a")])
    cat.remove_video(best)
    flat.index.add_with_ids(xb[n:], np.array([1000 + n + 1], np.int64))
    flat_vectors = xb
    cat.add_places("video", video_places([1000 + n + 1], [n + 1]))
    cat.apply_videos([info(n + 1, collection="a")])
    again = pipeline.run([Query(vector=xq[0]), Query(vector=xb[1]), Query(vector=xb[n])],
                         opts, **run)  # fmt: skip
    assert best not in [h.video.id for r in again for h in r.hits]
    assert [h.video.id for h in again[0].hits] == exact_in_a(xq[0])
    assert again[1].hits[0].video.id == 2  # its own vector: itself first, now in "a"
    assert again[2].hits[0].video.id == n + 1


def test_coalesced_segment_rows_give_the_pipelines_hits_past_deleted_and_unsynced_ids():
    """packed.run_rows (coalesced single searches at segment level) admits a candidate by
    the catalogue's servable videos, without the filter's arrays: a video deleted while
    FAISS still holds its vectors, and ids FAISS holds that the catalogue has not synced,
    are left out, and a row they leave short goes to a further round, as pipeline.run's
    hits (ids, scores, ranges, candidates), with no filter, a collection, and min_score."""
    from services.search import packed, pipeline

    rng = np.random.default_rng(5)
    n, per = 300, 3  # 100 videos of 3 segments
    xb = unit(rng.normal(size=(n + 10, D)))
    vector_ids = np.arange(1, n + 11, dtype=np.int64)  # the last 10 not in the catalogue
    vids = 1 + np.arange(n) // per
    cat = Catalogue("v1")
    cat.add_places("segment", VectorPlaces(
        vector_ids[:n], vids.astype(np.int64), (np.arange(n) % per).astype(np.int32),
        np.arange(n) * 2.0, np.arange(n) * 2.0 + 2.0))  # fmt: skip
    cat.apply_videos([info(int(v), collection="ab"[v % 2]) for v in range(1, n // per + 1)])
    flat = MaskedFlat(xb, vector_ids)
    xq = unit(rng.normal(size=(6, D)))
    near = [xb[n + 2], xb[7], xb[8]]  # an unsynced id's vector; a deleted video's (below)
    queries = [Query(vector=x) for x in [*xq, *near]]
    deleted = [int(vids[7])] + [int(v) for v in rng.choice(np.arange(1, 101), 75, replace=False)]
    for v in deleted:
        cat.remove_video(v)
    run = dict(index=flat, catalogue=cat, load=lambda ids: {}, version="v1")
    for extra in ({}, {"collection": "a"}, {"min_score": 0.2}):
        opts = SearchOptions(level="segment", top_k=5, **extra)
        alone = pipeline.run(queries, opts, **run)
        rows = packed.run_rows(queries, opts, **run)
        for a, b in zip(alone, rows, strict=True):
            assert [(h.video.id, h.segment_id, h.target) for h in b.hits] == [
                (h.video.id, h.segment_id, h.target) for h in a.hits]  # fmt: skip
            assert [h.score for h in b.hits] == pytest.approx([h.score for h in a.hits])
            assert b.candidates == a.candidates
            assert not {h.video.id for h in b.hits} & set(deleted)
            assert all(h.segment_id <= n for h in b.hits)  # no unsynced id
        assert sum(len(r.hits) for r in rows) > 0
        if not extra:  # the deletions left rows short: they got their top 5 all the same
            assert all(len(r.hits) == 5 for r in rows)


def test_a_round_whose_rows_come_back_short_of_k_is_the_last():
    """Rows with fewer than k ids: the lists searched hold no more (an IVF's nprobe lists,
    or what the index's filter admits), so a larger k would find nothing new."""
    calls = []

    def search(xq, k):  # at most 7 ids whatever k (padded with -1)
        calls.append(k)
        D_ = np.full((len(xq), k), -np.inf, np.float32)
        I_ = np.full((len(xq), k), -1, np.int64)
        D_[:, :7], I_[:, :7] = np.linspace(0.9, 0.3, 7), np.arange(1, 8)
        return D_, I_

    got = retrieve(search, [np.zeros((1, D), np.float32)], ntotal=10_000, wanted=[10],
                   admit=lambda q, i: i.copy(), per_video=False)[0]  # fmt: skip
    assert calls == [max(OVER_FETCH * 10, MIN_FETCH)] and len(got.candidates) == 7


# ---------------------------------------------------------------------------- re-rank, merge


def test_aligned_hits_rank_first_then_by_score():
    v = info(1)
    plain, aligned_low, aligned_high = Hit(0.9, v), Hit(0.5, v), Hit(0.7, v)
    aligned_low.alignment_score = aligned_high.alignment_score = 0.5
    assert rank([plain, aligned_low, aligned_high]) == [aligned_high, aligned_low, plain]


# ---------------------------------------------------------------------------- lazy thumbnails


def test_query_thumbnails_are_decoded_only_when_a_hit_will_be_refined(tmp_path):
    calls = []

    def thumbs():
        calls.append(1)
        return None  # undecodable: the ranges stay

    def hit(uri, aligned=True):
        return SimpleNamespace(video=SimpleNamespace(id=1, uri=uri, content_box=None),
                               target=(0.0, 4.0), query=(0.0, 4.0),
                               alignment_score=0.9 if aligned else None)  # fmt: skip

    assert refine_targets([], thumbs) == 0
    assert refine_targets([hit("/nowhere/x.mp4"), hit("https://h/x.mp4")], thumbs) == 0
    local = tmp_path / "x.mp4"
    local.write_bytes(b"x")
    assert refine_targets([hit(str(local), aligned=False)], thumbs) == 0
    assert calls == []  # nothing to refine: nothing decoded
    assert refine_targets([hit(f"file://{local}")], thumbs) == 0
    assert calls == [1]  # one aligned hit with a file here: decoded once


@pytest.mark.parametrize("from_memory", [False, True])
def test_placing_video_hits_loads_a_bounded_number_of_videos_at_a_time(monkeypatch, from_memory):
    """packed.place_video_hits puts each hit on its video's most similar segment, as
    video_hits does, reading at most BATCH_LOAD_MAX_VIDEOS videos' segments per load.
    From memory (`held`: one block of rows for a chunk's videos, scored by array code) the
    same places; a video memory holds no rows of is read by `load`, and only it."""
    from services.search import packed
    from services.search.segments import SegmentBlock
    from services.search.types import SearchResult
    from services.store import SegmentRows

    monkeypatch.setattr(packed, "BATCH_LOAD_MAX_VIDEOS", 2)
    rng = np.random.default_rng(3)
    d = 8
    rows = {  # video v: 3 segments, ids 10v..10v+2, 4 s each
        v: SegmentRows(np.arange(10 * v, 10 * v + 3), np.array([0.0, 4.0, 8.0]),
                       np.array([4.0, 8.0, 12.0]),
                       rng.normal(size=(3, d)).astype(np.float32))
        for v in range(1, 6)
    }  # fmt: skip
    loads: list[list[int]] = []

    def load(video_ids):
        loads.append(list(video_ids))
        return {v: rows[v] for v in video_ids}

    queries = [Query(vector=rng.normal(size=d).astype(np.float32)) for _ in range(2)]
    results = [
        SearchResult([Hit(0.5, info(v)) for v in (1, 2, 3)], "m", 3),
        SearchResult([Hit(0.5, info(v)) for v in (3, 4, 5, 1)], "m", 4),
    ]
    blocks: list[list[int]] = []

    def held(video_ids):  # memory holds the rows of every video but 5
        blocks.append(list(video_ids))
        per = [rows[v] if v != 5 else None for v in video_ids]
        lens = [0 if r is None else len(r.ids) for r in per]
        kept = [r for r in per if r is not None]
        return SegmentBlock(list(video_ids), np.cumsum([0, *lens]),
                            *(np.concatenate([getattr(r, f) for r in kept])
                              for f in ("ids", "start_s", "end_s", "xb")))  # fmt: skip

    packed.place_video_hits(results, queries, load, held=held if from_memory else None)
    assert all(len(chunk) <= 2 for chunk in loads + blocks)
    if from_memory:
        assert sorted({v for chunk in blocks for v in chunk}) == [1, 2, 3, 4, 5]
        assert loads == [[5]]  # the one video memory lacks, once
    else:
        assert sorted({v for chunk in loads for v in chunk}) == [1, 2, 3, 4, 5]
    for result, query in zip(results, queries, strict=True):
        for hit in result.hits:
            r = rows[hit.video.id]
            best = int(np.argmax(r.xb @ query.vector))
            assert hit.segment_id == int(r.ids[best])
            assert hit.target == (float(r.start_s[best]), float(r.end_s[best]))
