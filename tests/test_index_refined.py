"""RefinedIndex: fast-scan codes for the first pass, exact re-rank over held vectors, with
SQL ids, removal, and a file round trip."""

# ruff: noqa: E741
from __future__ import annotations

import faiss
import numpy as np
import pytest

from services.index import faiss_index as fi
from services.index.factory import choose_index
from services.index.refined import RefinedIndex
from tests.memory_vector_source import clustered_unit_vectors

D_ = 32


@pytest.fixture
def filled():
    choice = choose_index(6_000, D_, exact_threshold=1_000)
    assert choice.kind == "ivf_fastscan"
    index = fi.new_index(choice, D_)
    xb = clustered_unit_vectors(6_000, D_, n_clusters=20, spread=1.5, seed=1)
    ids = np.arange(10, 10 + 3 * len(xb), 3, dtype=np.int64)  # SQL ids, with gaps
    fi.train(index, xb)
    for lo in range(0, len(xb), 2_000):  # added in batches, as a catch-up does
        fi.add(index, ids[lo : lo + 2_000], xb[lo : lo + 2_000])
    fi.set_nprobe(index, choice.nlist)  # every list: what is left is the codes' error
    return index, ids, xb


def exact(xq, ids, xb, k):
    D, pos = faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)
    return D, ids[pos]


def test_scores_are_exact_inner_products_and_ids_are_sql_ids(filled):
    index, ids, xb = filled
    xq = xb[:50]
    D, I = fi.search(index, xq, 10)
    assert np.isin(I, ids).all()
    rows = {int(i): r for r, i in enumerate(ids)}
    for q in range(len(xq)):  # each score is the query's inner product with that id's vector
        want = np.array([xb[rows[int(i)]] @ xq[q] for i in I[q]], np.float32)
        np.testing.assert_allclose(D[q], want, rtol=1e-5, atol=1e-6)
        assert (np.diff(D[q]) <= 0).all()  # best first
    assert (I[:, 0] == ids[:50]).all()  # each stored vector finds itself first


def test_rerank_recovers_what_the_codes_alone_miss(filled):
    index, ids, xb = filled
    xq = clustered_unit_vectors(300, D_, n_clusters=20, spread=1.5, seed=1, sample_seed=5)
    D_exact, I_exact = exact(xq, ids, xb, 20)
    codes_only = fi.recall_at_k(index.base.search(xq, 10)[1], I_exact, 10, D_exact)
    index.k_factor = 8
    refined = fi.recall_at_k(fi.search(index, xq, 10)[1], I_exact, 10, D_exact)
    assert refined >= 0.97 and refined > codes_only + 0.1, (codes_only, refined)


def test_admitted_ids_are_tested_by_the_codes_scan_and_the_rest_never_come_back(filled):
    """faiss_index.search's `admitted` bits: only those ids, k of them (no over-fetch
    needed), at the recall of an unfiltered search over the admitted ones alone."""
    index, ids, xb = filled
    index.k_factor = 8
    keep = (ids // 3) % 4 == 0  # a quarter, spread over every cluster
    per_id = np.zeros(int(ids.max()) + 1, bool)
    per_id[ids[keep]] = True
    bits = np.packbits(per_id, bitorder="little")
    xq = clustered_unit_vectors(200, D_, n_clusters=20, spread=1.5, seed=1, sample_seed=6)
    D, I = fi.search(index, xq, 10, bits)
    assert (I >= 0).all() and per_id[I].all()  # k admitted ids for every query
    D_exact, I_exact = exact(xq, ids[keep], xb[keep], 10)
    assert fi.recall_at_k(I, I_exact, 10, D_exact) >= 0.95
    rows = {int(i): r for r, i in enumerate(ids)}
    want = np.array([[xb[rows[int(i)]] @ xq[q] for i in I[q]] for q in range(len(xq))])
    np.testing.assert_allclose(D, want, rtol=1e-5, atol=1e-6)  # exact scores still
    nothing = np.zeros_like(bits)
    assert (fi.search(index, xq[:3], 10, nothing)[1] == -1).all()


def test_removed_ids_never_come_back_and_compaction_keeps_the_rest(filled):
    index, ids, xb = filled
    gone = ids[:2_000:2]  # 1,000 of 6,000: past the compaction share with the next batch
    assert fi.remove(index, gone) == len(gone)
    assert fi.remove(index, gone) == 0  # absent ids are ignored
    assert index.ntotal == len(ids) - len(gone)
    _, I = fi.search(index, xb[:2_000:2], 5)
    assert not np.isin(I, gone).any()
    more = ids[3_000:4_000]
    fi.remove(index, more)  # 2,000 dead of 6,000 rows: compacted
    held, vectors = index.live()
    assert len(held) == index.ntotal == len(ids) - 2_000
    np.testing.assert_array_equal(held, fi.ids_of(index))
    keep = ~np.isin(ids, np.concatenate([gone, more]))
    np.testing.assert_array_equal(vectors, xb[keep])
    np.testing.assert_array_equal(index.vectors(ids[keep][:5]), xb[keep][:5])
    with pytest.raises(KeyError):
        index.vectors(gone[:1])
    _, I = fi.search(index, xb[keep][:20], 1)
    assert (I[:, 0] == ids[keep][:20]).all()


def test_ids_must_grow(filled):
    index, ids, xb = filled
    with pytest.raises(ValueError, match="grow"):
        index.add_with_ids(xb[:1], ids[-1:])


def test_file_round_trip_keeps_results_and_k_factor(filled, tmp_path):
    index, ids, xb = filled
    index.k_factor = 16
    fi.remove(index, ids[:10])
    path = str(tmp_path / "x.faiss")
    fi.write_index(index, path)
    back = fi.read_index(path)
    assert isinstance(back, RefinedIndex) and back.k_factor == 16
    assert back.ntotal == index.ntotal and fi.get_nprobe(back) == fi.get_nprobe(index)
    xq = xb[100:140]
    for a, b in zip(fi.search(index, xq, 10), fi.search(back, xq, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fewer_vectors_than_k_pads_with_minus_one():
    choice = choose_index(1_000, D_, exact_threshold=0)
    index = fi.new_index(choice, D_)
    xb = clustered_unit_vectors(1_000, D_, n_clusters=5, spread=1.5, seed=2)
    fi.train(index, xb)
    fi.add(index, np.arange(1, 6, dtype=np.int64), xb[:5])
    fi.set_nprobe(index, choice.nlist)
    D, I = fi.search(index, xb[:2], 8)
    assert (I[:, :5] > 0).all() and (I[:, 5:] == -1).all() and np.isneginf(D[:, 5:]).all()


def test_read_rejects_a_file_whose_rows_disagree(filled, tmp_path):
    """A snapshot whose held rows do not match its codes is refused, not served wrong."""
    import io

    index, ids, xb = filled
    good = np.load(io.BytesIO(bytes(index.to_bytes())))
    cases = {
        "short": dict(good, vectors=good["vectors"][:-1]),
        "unsorted": dict(good, ids=good["ids"][::-1].copy()),
    }
    for name, arrays in cases.items():
        path = tmp_path / f"{name}.faiss"
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        with pytest.raises(RuntimeError, match="unreadable refined index"):
            fi.read_index(str(path))
    (tmp_path / "cut.faiss").write_bytes(bytes(index.to_bytes())[:5000])
    with pytest.raises(RuntimeError):
        fi.read_index(str(tmp_path / "cut.faiss"))


def test_snapshots_saved_while_deletes_run_are_each_one_consistent_state(tmp_path):
    """DeleteVideo removes from the served index under the write lock only; a snapshot
    taken meanwhile must still be one state (its file and manifest agree, it loads)."""
    import threading

    from services.index import VectorIndex, snapshot
    from tests.memory_vector_source import MemoryVectorSource

    src = MemoryVectorSource(D_)
    ids = src.add("segment", "v1", clustered_unit_vectors(6_000, D_, n_clusters=20, seed=4))
    vi = VectorIndex("segment", "v1", D_, tmp_path, src, exact_threshold=1_000)
    vi.load_or_build()
    assert vi.manifest.kind == "ivf_fastscan"
    stop = threading.Event()

    def deleting() -> None:
        for i in ids[:3_000]:  # one id at a time, as many small deletes
            if stop.is_set():
                return
            vi.remove(np.array([i]))

    t = threading.Thread(target=deleting)
    t.start()
    try:
        for _ in range(15):
            saved = vi.save_snapshot()
            index, m = snapshot.load(tmp_path, "segment", "v1", D_)  # raises if torn
            assert index.ntotal == m.count == saved.count
            assert len(index.live()[0]) == index.ntotal
    finally:
        stop.set()
        t.join()


def test_ids_to_rows_by_table_or_by_search_agree_after_adds_and_compaction(filled, monkeypatch):
    """Dense SQL ids map to rows through a table, sparse ones by searchsorted
    (id_positions.py): the same results either way, also once an add or a compaction
    moved the rows (the table made before them is not used after)."""
    import services.index.id_positions as id_positions

    index, ids, xb = filled
    xq = xb[::97]

    def both() -> tuple:
        monkeypatch.setattr(id_positions, "MAX_SPAN", 4)
        by_table = fi.search(index, xq, 10)  # with the table as the mutations left it
        assert index._positions._table is not None  # ids 3 apart: dense enough
        index._positions = None
        monkeypatch.setattr(id_positions, "MAX_SPAN", 1)  # ids 3 apart: too sparse
        by_search = fi.search(index, xq, 10)
        assert index._positions._table is None
        np.testing.assert_array_equal(by_table[1], by_search[1])
        np.testing.assert_array_equal(by_table[0], by_search[0])
        index._positions = None  # a table again, for the next mutation to leave behind
        monkeypatch.setattr(id_positions, "MAX_SPAN", 4)
        fi.search(index, xq[:1], 10)
        return by_table

    D, I = both()
    assert (I[:, 0] == ids[::97]).all()
    fi.add(index, np.array([ids[-1] + 5]), xb[:1])  # a later id: rows grow
    fi.remove(index, ids[: len(ids) // 2])  # past the dead share: compaction moves rows
    assert index._dead == 0 and len(index._ids) == len(ids) - len(ids) // 2 + 1
    D, I = both()
    assert not np.isin(I, ids[: len(ids) // 2]).any()
    assert (I[len(xq) // 2 + 1 :, 0] == ids[::97][len(xq) // 2 + 1 :]).all()


def test_an_add_grows_the_id_table_in_place_and_searches_find_the_added_rows(filled):
    index, ids, xb = filled
    fi.search(index, xb[:3], 10)  # the table of rows is made by a search
    table = index._positions
    new_ids = ids[-1] + 3 * np.arange(1, 6)
    fresh = clustered_unit_vectors(5, D_, n_clusters=20, spread=1.5, seed=1, sample_seed=9)
    fi.add(index, new_ids, fresh)  # an ingest's sync
    assert index._positions is not table and index._positions._room is table._room
    D, I = fi.search(index, np.concatenate([fresh, xb[:3]]), 10)
    assert I[:5, 0].tolist() == new_ids.tolist()  # each added vector finds itself
    assert I[5:, 0].tolist() == ids[:3].tolist()
    index._positions = None  # made again from the ids: the same answers
    np.testing.assert_array_equal(fi.search(index, np.concatenate([fresh, xb[:3]]), 10)[1], I)


def test_a_read_index_maps_its_vectors_and_searches_mapped_and_added_rows_together(
    filled, tmp_path
):
    """read() maps the kept vectors from the file (shared pages, nothing copied); rows
    added after it are owned; a search re-ranks both exactly, held vectors come from
    either, a save writes both, and a compaction makes every row owned."""
    index, ids, xb = filled
    path = tmp_path / "refined.npz"
    path.write_bytes(fi.serialize_index(index))
    got = fi.read_index(str(path))
    assert isinstance(got._base, np.memmap) and got.mapped_rows == len(ids)
    assert got._base.ctypes.data % 64 == 0  # faiss reads it as float*: aligned data
    assert not isinstance(got._vectors, np.memmap)  # room for what comes later: owned
    later = clustered_unit_vectors(600, D_, n_clusters=20, spread=1.5, seed=1, sample_seed=9)
    later_ids = np.arange(ids[-1] + 1, ids[-1] + 1 + len(later), dtype=np.int64)
    fi.add(got, later_ids, later)
    all_ids, all_xb = np.concatenate([ids, later_ids]), np.concatenate([xb, later])
    xq = np.concatenate([xb[::200], later[::40]])
    D, I = fi.search(got, xq, 10)
    D_exact, I_exact = exact(xq, all_ids, all_xb, 10)
    assert (I[:, 0] == I_exact[:, 0]).all()  # every query finds itself, mapped or owned
    rows = {int(i): r for r, i in enumerate(all_ids)}
    for q in range(len(xq)):  # exact scores, best first, from whichever array holds the row
        want = np.array([all_xb[rows[int(i)]] @ xq[q] for i in I[q]], np.float32)
        np.testing.assert_allclose(D[q], want, rtol=1e-5, atol=1e-6)
        assert (np.diff(D[q]) <= 0).all()
    # k past what the codes hold for a query: padded candidate lists in both arrays
    D_all, I_all = fi.search(got, xq[:5], 1700)  # base_k 6800 > 6600 rows
    D_ex, I_ex = exact(xq[:5], all_ids, all_xb, 1700)
    np.testing.assert_allclose(D_all, D_ex, rtol=1e-5, atol=1e-5)
    assert (np.diff(D_all, axis=1) <= 1e-6).all() and (I_all >= 0).all()
    # k past every row held: each id of both arrays once, then -1 / -inf
    D_pad, I_pad = fi.search(got, xq[:2], len(all_ids) + 3)
    for q in range(2):
        assert sorted(I_pad[q, : len(all_ids)].tolist()) == all_ids.tolist()
        tail = slice(len(all_ids), None)
        assert (I_pad[q, tail] == -1).all() and np.isneginf(D_pad[q, tail]).all()
    both = np.array([ids[5], later_ids[7], ids[-1], later_ids[0]])
    np.testing.assert_array_equal(got.vectors(both), all_xb[[rows[int(i)] for i in both]])
    path2 = tmp_path / "again.npz"
    path2.write_bytes(fi.serialize_index(got))
    again = fi.read_index(str(path2))
    assert again.mapped_rows == len(all_ids)
    np.testing.assert_array_equal(fi.search(again, xq, 10)[1], I)
    fi.remove(got, ids[: len(ids) // 2])  # past the dead share: compacted, all owned
    assert got.mapped_rows == 0 and len(got._ids) == len(all_ids) - len(ids) // 2
    D2, I2 = fi.search(got, xq, 10)
    assert not np.isin(I2, ids[: len(ids) // 2]).any()
    np.testing.assert_array_equal(I2[len(xq) // 2 + 1 :, 0], I[len(xq) // 2 + 1 :, 0])


def test_an_npz_written_by_np_savez_is_still_read(filled, tmp_path):
    """Snapshots of the previous format (np.savez: the vectors unaligned in the file)
    load, copied where mapping would give unaligned data, and search the same."""
    index, ids, xb = filled
    ids_live, vectors = index.live()
    path = tmp_path / "old.npz"
    np.savez(path, faiss=faiss.serialize_index(index.base), ids=ids_live, vectors=vectors,
             k_factor=np.int64(index.k_factor))  # fmt: skip
    old = fi.read_index(str(path))
    assert old._base.ctypes.data % 4 == 0
    for a, b in zip(fi.search(index, xb[:30], 10), fi.search(old, xb[:30], 10), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("queries", [1, 3])
def test_a_search_past_every_row_ends_with_minus_one_and_minus_inf(filled, queries):
    """One query or several, fast-scan or exact: k past ntotal gives every id once, then
    padding (-1, -inf; faiss itself pads inner products with -FLT_MAX)."""
    index, ids, xb = filled
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(D_))
    flat.add_with_ids(xb, ids)
    for searched in (index, flat):
        D, I = fi.search(searched, xb[:queries], len(ids) + 4)
        for q in range(queries):
            assert sorted(I[q, : len(ids)].tolist()) == ids.tolist()
            assert (I[q, len(ids) :] == -1).all() and np.isneginf(D[q, len(ids) :]).all()
