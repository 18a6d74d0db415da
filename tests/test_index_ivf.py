"""Past the exact threshold: an IVF index (fast-scan codes with an exact re-rank; IVF,Flat
where the dimension is odd), trained on the stored vectors, nprobe tuned,
recall@10 against exact measured and stored, nprobe saved and applied after a load."""

# ruff: noqa: E741
from __future__ import annotations

import faiss
import numpy as np
import pytest

from services.index import VectorIndex, recall_at_k
from tests.memory_vector_source import MemoryVectorSource, clustered_unit_vectors

D_ = 64
LEVEL, VERSION = "segment", "v1"


@pytest.fixture(scope="module")
def ivf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ivf")
    src = MemoryVectorSource(D_)
    # 500 overlapping clusters in 64-d: nprobe=1 finds ~half the neighbours
    xb = clustered_unit_vectors(50_000, D_, n_clusters=500, spread=1.5, seed=1)
    ids = src.add(LEVEL, VERSION, xb)
    vi = VectorIndex(LEVEL, VERSION, D_, folder, src, exact_threshold=10_000)
    report = vi.load_or_build()
    return src, ids, xb, folder, vi, report


def queries(n=500, sample_seed=2):
    """New vectors from the stored vectors' clusters: queries the build never saw."""
    return clustered_unit_vectors(
        n, D_, n_clusters=500, spread=1.5, seed=1, sample_seed=sample_seed
    )


@pytest.mark.slow
def test_ivf_chosen_and_recall_measured(ivf):
    src, ids, xb, _, vi, report = ivf
    m = vi.manifest
    # fast-scan codes (4 bits per 2 dims) re-ranked exactly over the held vectors
    assert m.factory == "IVF256,PQ32x4fs,RFlat" and m.kind == "ivf_fastscan" and m.nlist == 256
    assert 1 <= m.search_params["nprobe"] <= 256 and m.search_params["k_factor"] >= 4
    assert m.recall_at_10 >= 0.95 and m.n_at_build == 50_000
    assert report.rows_read == 100_000  # two passes: sample, then add

    xq = queries()
    D_exact, pos = faiss.knn(xq, xb, 20, metric=faiss.METRIC_INNER_PRODUCT)
    _, I = vi.search(xq, 10)
    recall = recall_at_k(I, ids[pos], 10, D_exact)
    assert recall >= 0.95, recall  # holds on queries the build never saw
    nprobe = m.search_params["nprobe"]
    assert nprobe >= 2  # the data is hard enough that nprobe=1 would not do


@pytest.mark.slow
def test_nprobe_saved_and_applied_after_load(ivf):
    src, ids, xb, folder, vi, _ = ivf
    xq = queries(n=200, sample_seed=7)
    D1, I1 = vi.search(xq, 10)
    rows = src.rows_read
    loaded = VectorIndex(LEVEL, VERSION, D_, folder, src, exact_threshold=10_000)
    report = loaded.load_or_build()
    assert report.loaded_from_snapshot and src.rows_read == rows
    assert loaded.manifest.search_params == vi.manifest.search_params
    assert loaded.manifest.recall_at_10 == vi.manifest.recall_at_10
    D2, I2 = loaded.search(xq, 10)
    np.testing.assert_array_equal(I1, I2)  # nprobe=1 (faiss's default) would differ
    np.testing.assert_allclose(D1, D2)


@pytest.mark.slow
def test_set_nprobe_overrides_the_tuned_value(ivf):
    src, ids, xb, _, vi, _ = ivf
    tuned = vi.manifest.search_params["nprobe"]
    xq = queries(n=500, sample_seed=8)  # 200 queries: recall's sampling error is ~0.01
    D_exact, pos = faiss.knn(xq, xb, 20, metric=faiss.METRIC_INNER_PRODUCT)
    vi.set_nprobe(1)
    try:
        assert vi.manifest.search_params["nprobe"] == 1
        low = recall_at_k(vi.search(xq, 10)[1], ids[pos], 10, D_exact)
        assert low < 0.8  # fewer lists visited: fewer neighbours found
    finally:
        vi.set_nprobe(tuned)
    assert recall_at_k(vi.search(xq, 10)[1], ids[pos], 10, D_exact) >= 0.95
    with pytest.raises(ValueError):
        vi.set_nprobe(0)
    with pytest.raises(TypeError):
        vi.set_nprobe(4.0)


@pytest.mark.slow
def test_ivf_catches_up_and_shrinks_back_to_exact(ivf):
    src, ids, xb, folder, vi, _ = ivf
    new = src.add(LEVEL, VERSION, clustered_unit_vectors(100, D_, n_clusters=2, seed=5))
    src.delete(LEVEL, VERSION, ids[:100])
    result = vi.sync()
    assert (result.added, result.removed, result.rebuilt_reason) == (100, 100, None)
    assert vi.ntotal == src.count(LEVEL, VERSION)
    assert vi.search(xb[:1], 1)[1][0, 0] != ids[0]
    assert new[0] in vi.search(src_vectors(src, new[:1]), 5)[1][0]

    src.delete(LEVEL, VERSION, ids[100:46_000])  # 4100 left: under half the threshold
    result = vi.sync()
    assert "half the exact threshold" in result.rebuilt_reason
    assert vi.manifest.factory == "IDMap2,Flat" and vi.ntotal == src.count(LEVEL, VERSION)
    with pytest.raises(ValueError, match="exact"):
        vi.set_nprobe(8)


def src_vectors(src, wanted):
    batch = next(src.iter_vectors(LEVEL, VERSION, after_id=int(wanted[0]) - 1, batch_size=1))
    return batch.xb


@pytest.mark.slow
def test_odd_dimension_builds_ivf_flat(tmp_path):
    """Fast-scan codes cover 2 dims each: an odd dimension gets full vectors in the lists."""
    src = MemoryVectorSource(63)
    xb = clustered_unit_vectors(12_000, 63, n_clusters=50, spread=1.5, seed=3)
    ids = src.add(LEVEL, VERSION, xb)
    vi = VectorIndex(LEVEL, VERSION, 63, tmp_path, src, exact_threshold=5_000)
    vi.load_or_build()
    assert vi.manifest.kind == "ivf_flat" and vi.manifest.recall_at_10 >= 0.95
    xq = clustered_unit_vectors(200, 63, n_clusters=50, spread=1.5, seed=3, sample_seed=4)
    D_exact, pos = faiss.knn(xq, xb, 20, metric=faiss.METRIC_INNER_PRODUCT)
    assert recall_at_k(vi.search(xq, 10)[1], ids[pos], 10, D_exact) >= 0.95


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQ8", "IDMap2,Flat"])
def test_admitted_bits_limit_a_search_and_keep_the_index_nprobe(factory):
    """faiss_index.search with `admitted`: only those ids, at the index's own nprobe (a
    SearchParametersIVF left at its default would search one list)."""
    from services.index import faiss_index as fi

    xb = clustered_unit_vectors(4_000, 16, n_clusters=64, spread=1.5, seed=3)
    ids = np.arange(5, 5 + 2 * len(xb), 2, dtype=np.int64)
    index = faiss.index_factory(16, factory, faiss.METRIC_INNER_PRODUCT)
    index.train(xb)
    index.add_with_ids(xb, ids)
    if "IVF" in factory:
        faiss.extract_index_ivf(index).nprobe = 64  # every list
    keep = (ids // 2) % 3 == 0
    per_id = np.zeros(int(ids.max()) + 1, bool)
    per_id[ids[keep]] = True
    xq = clustered_unit_vectors(100, 16, n_clusters=64, spread=1.5, seed=3, sample_seed=4)
    _, I = fi.search(index, xq, 10, np.packbits(per_id, bitorder="little"))
    assert per_id[I].all()
    D_exact, pos = faiss.knn(xq, xb[keep], 10, metric=faiss.METRIC_INNER_PRODUCT)
    assert recall_at_k(I, ids[keep][pos], 10, D_exact) >= (0.97 if "SQ8" in factory else 0.999)


def test_filtered_nprobe_widens_with_the_filter_selectivity():
    from services.index.faiss_index import filtered_nprobe

    assert filtered_nprobe(7, 1024, 1.0) == 7  # no filter
    assert filtered_nprobe(7, 1024, 1 / 16) == 14  # 16^1/4 = 2
    assert filtered_nprobe(7, 1024, 1 / 4) == 10  # 9.9, rounded up
    assert filtered_nprobe(7, 20, 1e-6) == 20  # never past nlist
    assert filtered_nprobe(7, 4096, 1e-6) == 56  # at most 8x however few it admits
    assert filtered_nprobe(7, 1024, 0.0) == 7  # admits nothing: nothing to find further out


def test_a_selective_filter_keeps_its_recall_by_visiting_more_lists(monkeypatch):
    """At the nprobe tuned for unfiltered searches a filter's nearest admitted vectors lie
    in lists it does not visit; the search widens nprobe by the share the bits admit."""
    from services.index import faiss_index as fi

    xb = clustered_unit_vectors(20_000, 32, n_clusters=200, spread=1.5, seed=5)
    ids = np.arange(1, len(xb) + 1, dtype=np.int64)
    index = faiss.index_factory(32, "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(xb)
    index.add_with_ids(xb, ids)
    faiss.extract_index_ivf(index).nprobe = 2
    keep = ids % 16 == 0  # a sixteenth of the ids
    per_id = np.zeros(len(xb) + 1, bool)
    per_id[ids[keep]] = True
    bits = np.packbits(per_id, bitorder="little")
    assert fi.admitted_count(bits) == keep.sum()
    xq = clustered_unit_vectors(300, 32, n_clusters=200, spread=1.5, seed=5, sample_seed=6)
    D_exact, pos = faiss.knn(xq, xb[keep], 10, metric=faiss.METRIC_INNER_PRODUCT)

    def recall() -> float:
        _, I = fi.search(index, xq, 10, bits)
        assert per_id[np.maximum(I, 0)].all()
        return recall_at_k(I, ids[keep][pos], 10, D_exact)

    widened = recall()
    _, I = fi.search(index, xq, 10)
    D_all, pos_all = faiss.knn(xq, xb, 10, metric=faiss.METRIC_INNER_PRODUCT)
    unfiltered = recall_at_k(I, ids[pos_all], 10, D_all)
    monkeypatch.setattr(fi, "FILTER_NPROBE_EXPONENT", 0.0)
    at_tuned = recall()
    assert faiss.extract_index_ivf(index).nprobe == 2  # the index's own is left alone
    assert widened >= at_tuned + 0.05, (widened, at_tuned)
    assert widened >= unfiltered - 0.05, (widened, unfiltered)  # about the unfiltered recall


def test_a_filter_array_is_counted_once_and_a_new_one_again(monkeypatch):
    """selector_params counts the bits that widen nprobe once per array (a filter's bits
    are searched with many times); another array, even at the same address, is counted."""
    from services.index import faiss_index as fi

    calls = []
    real = fi.admitted_count
    monkeypatch.setattr(fi, "admitted_count", lambda b: calls.append(1) or real(b))
    monkeypatch.setattr(fi, "_COUNTS", {})
    quarter = np.packbits(np.arange(4096) % 4 == 0, bitorder="little")
    xb = clustered_unit_vectors(4096, 8, n_clusters=8, spread=1.5, seed=3)
    index = faiss.index_factory(8, "IVF8,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(xb)
    index.add(xb)
    selector = faiss.IDSelectorBitmap(8 * len(quarter), faiss.swig_ptr(quarter))
    widths = {fi.selector_params(index, selector, quarter).nprobe for _ in range(3)}
    assert widths == {fi.filtered_nprobe(1, 8, 0.25)} and len(calls) == 1
    assert fi.counted(quarter) == 1024 and len(calls) == 1
    half = np.packbits(np.arange(4096) % 2 == 0, bitorder="little")
    assert fi.counted(half) == 2048 and len(calls) == 2
    del quarter, half
    ends = np.arange(4096)
    for n in range(3 * fi._COUNTS_MAX):  # freed at once, reused addresses: counted afresh
        fresh = np.packbits(ends < n, bitorder="little")
        assert fi.counted(fresh) == n
    assert len(fi._COUNTS) <= fi._COUNTS_MAX
