"""VectorIndex over an in-memory source: build, search, catch-up, checks, concurrency."""

# ruff: noqa: E741  (I: faiss's name for the id matrix)
from __future__ import annotations

import threading

import numpy as np
import pytest

from services.index import IndexNotReadyError, IndexOutOfSyncError, VectorIndex
from tests.memory_vector_source import MemoryVectorSource, clustered_unit_vectors

D_ = 32
LEVEL, VERSION = "segment", "v1"


def make(tmp_path, n=2_000, seed=0, **kwargs):
    src = MemoryVectorSource(D_)
    xb = clustered_unit_vectors(n, D_, n_clusters=20, seed=seed)
    ids = src.add(LEVEL, VERSION, xb)
    vi = VectorIndex(LEVEL, VERSION, D_, tmp_path, src, **kwargs)
    return src, vi, ids, xb


def top1(vi, x):
    D, I = vi.search(x[None, :], 1)
    return int(I[0, 0]), float(D[0, 0])


def test_build_search_finds_the_right_id(tmp_path):
    src, vi, ids, xb = make(tmp_path)
    report = vi.load_or_build()
    assert not report.loaded_from_snapshot and report.rows_read == len(ids)
    assert vi.ntotal == len(ids) == src.count(LEVEL, VERSION)
    D, I = vi.search(xb[[5, 17, 1999]], 10)
    assert I.dtype == np.int64 and D.dtype == np.float32 and I.shape == (3, 10)
    np.testing.assert_array_equal(I[:, 0], ids[[5, 17, 1999]])
    np.testing.assert_allclose(D[:, 0], 1.0, atol=1e-5)
    assert (np.diff(D, axis=1) <= 1e-6).all()  # best first
    m = vi.manifest
    assert (m.factory, m.watermark, m.count, m.recall_at_10) == ("IDMap2,Flat", ids[-1], 2000, 1.0)


def test_sync_adds_above_watermark_and_applies_tombstones(tmp_path):
    src, vi, ids, xb = make(tmp_path)
    vi.load_or_build()
    rows_before = src.rows_read
    new_xb = clustered_unit_vectors(300, D_, n_clusters=5, seed=9)
    new_ids = src.add(LEVEL, VERSION, new_xb)
    gone = ids[[0, 10, 20]]
    src.delete(LEVEL, VERSION, gone)
    src.delete(LEVEL, VERSION, new_ids[:2])  # deleted before the index ever saw them

    result = vi.sync()
    assert (result.added, result.removed, result.rebuilt_reason) == (298, 3, None)
    assert src.rows_read - rows_before == 298  # only the rows above the watermark were read
    assert vi.ntotal == result.ntotal == src.count(LEVEL, VERSION) == 2000 + 300 - 5
    assert vi.manifest.watermark == new_ids[-1]
    assert top1(vi, new_xb[100])[0] == new_ids[100]
    assert top1(vi, xb[0])[0] != ids[0]  # the deleted vector is no longer found
    _, I = vi.search(np.concatenate([xb[gone], new_xb[:2]]), 50)
    assert not np.isin(I, np.concatenate([gone, new_ids[:2]])).any()

    again = vi.sync()
    assert (again.added, again.removed) == (0, 0)


def test_delete_racing_the_build_is_replayed(tmp_path):
    """The build reads max_tombstone_seq() first; a row deleted after it was read is
    removed by the catch-up that follows the build."""
    src, vi, ids, xb = make(tmp_path)
    real_iter = src.iter_vectors

    def iter_then_delete(*args, **kwargs):
        for batch in real_iter(*args, **kwargs):
            yield batch
            if len(batch.ids) and batch.ids[0] == ids[0]:
                src.delete(LEVEL, VERSION, ids[:1])  # after the row was handed out

    src.iter_vectors = iter_then_delete
    report = vi.load_or_build()
    assert report.removed == 1
    assert vi.ntotal == src.count(LEVEL, VERSION) == len(ids) - 1
    assert top1(vi, xb[0])[0] != ids[0]


def test_search_boundary_checks(tmp_path):
    _, vi, ids, xb = make(tmp_path, n=50)
    with pytest.raises(IndexNotReadyError):
        vi.search(xb[:1], 1)
    vi.load_or_build()
    with pytest.raises(TypeError, match="float32"):
        vi.search(xb[:1].astype(np.float64), 1)
    with pytest.raises(TypeError, match="numpy"):
        vi.search(xb[:1].tolist(), 1)
    with pytest.raises(ValueError, match="shape"):
        vi.search(xb[0], 1)  # 1-D
    with pytest.raises(ValueError, match="shape"):
        vi.search(xb[:1, :16], 1)
    bad = xb[:1].copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vi.search(bad, 1)
    for k in (0, -3):
        with pytest.raises(ValueError, match="k must be > 0"):
            vi.search(xb[:1], k)
    for k in (2.0, "3", True):
        with pytest.raises(TypeError, match="k must be an int"):
            vi.search(xb[:1], k)
    # more than ntotal: padded the faiss way, documented as I = -1, D = -inf
    D, I = vi.search(xb[:2], 60)
    assert I.shape == (2, 60) and (I[:, 50:] == -1).all() and np.isneginf(D[:, 50:]).all()
    assert set(I[0, :50]) == set(ids)


def test_bad_vectors_from_the_source_raise(tmp_path):
    src = MemoryVectorSource(D_)
    src.add(LEVEL, VERSION, np.full((10, D_), 0.5, np.float32))  # not unit norm
    vi = VectorIndex(LEVEL, VERSION, D_, tmp_path, src)
    with pytest.raises(ValueError, match="unit"):
        vi.load_or_build()


def test_constructor_checks(tmp_path):
    src = MemoryVectorSource(D_)
    with pytest.raises(ValueError, match="level"):
        VectorIndex("frame", VERSION, D_, tmp_path, src)
    with pytest.raises(ValueError, match="safe"):
        VectorIndex(LEVEL, "../etc", D_, tmp_path, src)
    with pytest.raises(ValueError, match="dim"):
        VectorIndex(LEVEL, VERSION, 0, tmp_path, src)


def test_inconsistent_source_raises_rather_than_serving(tmp_path):
    src, vi, _, _ = make(tmp_path, n=100)
    src.count = lambda level, version, max_id=None: 101  # disagrees with iter_vectors()
    with pytest.raises(IndexOutOfSyncError, match="store has 101"):
        vi.load_or_build()
    with pytest.raises(IndexNotReadyError):
        vi.search(np.zeros((1, D_), np.float32), 1)


def test_rows_committed_during_a_sync_are_not_a_misalignment(tmp_path):
    """A busy ingest commits rows between a catch-up and the count: the index compares
    itself with the rows up to its watermark, so it is not rebuilt (it was, under load)."""
    src, vi, _, _ = make(tmp_path, n=100)
    vi.load_or_build()
    real_count = src.count
    seeds = iter(range(100, 200))

    def count_while_rows_arrive(level, version, max_id=None):
        src.add(LEVEL, VERSION, clustered_unit_vectors(5, D_, n_clusters=2, seed=next(seeds)))
        return real_count(level, version, max_id=max_id)

    src.count = count_while_rows_arrive
    result = vi.sync()
    assert result.rebuilt_reason is None
    src.count = real_count
    assert vi.sync().rebuilt_reason is None and vi.ntotal == src.count(LEVEL, VERSION)


def test_empty_collection(tmp_path):
    vi = VectorIndex(LEVEL, VERSION, D_, tmp_path, MemoryVectorSource(D_))
    vi.load_or_build()
    D, I = vi.search(np.ones((1, D_), np.float32), 3)
    assert vi.ntotal == 0 and (I == -1).all()


def test_searches_run_concurrently_with_sync_and_rebuild(tmp_path):
    """Searchers never fail nor see an id the store never had, while syncs add, remove and
    finally swap in an IVF index (the collection passes the exact threshold)."""
    src, vi, ids, xb = make(tmp_path, n=1_500, exact_threshold=3_000)
    vi.load_or_build()
    known = set(ids.tolist())
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0]

    def searcher(seed):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                D, I = vi.search(xb[rng.integers(0, len(xb), 8)], 5)
                assert I.shape == (8, 5) and I.min() >= 0
                assert set(I.ravel().tolist()) <= known
                searches[0] += 1
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)
                return

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        reasons = []
        for step in range(12):
            new = src.add(LEVEL, VERSION, clustered_unit_vectors(300, D_, seed=100 + step))
            known.update(new.tolist())
            src.delete(LEVEL, VERSION, new[:10])
            result = vi.sync()
            reasons.append(result.rebuilt_reason)
            assert vi.ntotal == src.count(LEVEL, VERSION)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert searches[0] > 0
    assert any(r and "exact threshold" in r for r in reasons)
    assert vi.manifest.factory.startswith("IVF")


def test_a_sync_skips_the_count_for_a_while_after_one_matched(tmp_path, monkeypatch):
    """recount_idle_s: syncs do not count the store's rows (a full count per level) until
    the interval has passed, whether they move rows (an ingest) or not; a row committed
    late below the watermark is then found, and the index rebuilt with it."""
    src, vi, ids, xb = make(tmp_path, n=500, recount_idle_s=30.0)
    vi.load_or_build()
    counts = []
    count = src.count
    monkeypatch.setattr(src, "count", lambda *a, **kw: counts.append(1) or count(*a, **kw))
    for _ in range(5):
        assert vi.sync().added == 0
    assert counts == []  # idle, and the load's count matched a moment ago
    new_xb = clustered_unit_vectors(10, D_, n_clusters=2, seed=3)
    new_ids = src.add(LEVEL, VERSION, new_xb)
    assert vi.sync().added == 10 and counts == []  # rows moved, caught up, not counted
    assert top1(vi, new_xb[3])[0] == new_ids[3]
    vi._counted_at -= 31.0  # the interval has passed
    vi.sync()
    assert len(counts) == 1
    vi.sync()
    assert len(counts) == 1


def test_without_recount_interval_every_sync_counts(tmp_path, monkeypatch):
    src, vi, ids, xb = make(tmp_path, n=500)
    vi.load_or_build()
    counts = []
    count = src.count
    monkeypatch.setattr(src, "count", lambda *a, **kw: counts.append(1) or count(*a, **kw))
    for _ in range(3):
        vi.sync()
    assert len(counts) == 3
