"""RefinedIndex: IVF with 4-bit fast-scan PQ codes for the first pass, then an exact
re-rank of the best candidates over the full vectors it holds beside the codes.

    search(xq, k):  base (IVF{nlist},PQ{d/2}x4fs)  -> base_k(k) candidates per query row
                    held vectors of those ids       -> exact inner products, best k
    add / remove:   the codes go in / out of the IVF lists; the full vectors are appended
                    to (ids, vectors) arrays, a removed id's row is only marked dead and
                    dropped at the next compaction (the base never returns it again)

Why: at 10^6 vectors an IVF,Flat search scans nprobe lists of full 1-KB vectors, about
1 ms of CPU a query at recall@10 0.95, so 2 cores top out near 2,000 queries/s. Fast-scan
PQ reads 64-byte codes (4 bits per 2 dimensions) with SIMD table look-ups, several times
less CPU, but its scores are coarse; re-ranking k_factor x k of its candidates exactly
brings recall to the IVF,Flat level and makes the scores exact inner products again, so
copy thresholds and min_score mean what they meant. Measured at 10^6 x 256 clustered
vectors on 2 cores, batches of 256 queries: IVF1024,PQ128x4fs k_factor 4 nprobe 16,
recall@10 0.980, 12,400 queries/s (one query alone 0.27 ms); IVF4096,Flat nprobe 24,
recall 0.979, 2,970/s (0.62 ms). 4 bits per 4 dimensions was faster but reached 0.88 at
k_factor 4 and needed 8 for 0.95.

faiss has IndexRefineFlat for this, but it takes neither add_with_ids nor remove_ids, and
the index must hold SQL row ids; hence the held rows here (numpy arrays, ids -> rows by
an id table, id_positions.py), re-ranked by faiss's knn_inner_products_by_idx.

Concurrency: like a faiss CPU index, searches may run together, and mutations must be
serialised against searches by the caller (VectorIndex's read/write lock).
"""

# ruff: noqa: E741  (I is faiss's name for the id matrix; names follow the maths)

from __future__ import annotations

import io

import faiss
import numpy as np

from .id_positions import IdPositions, positions_for
from .npz_map import map_member, write_npz

K_FACTORS = (4, 8, 16, 32)  # candidates re-ranked per result wanted: the build tunes nprobe
# at each and keeps the fastest pair that reaches the target (faiss_index.tune)
DEFAULT_K_FACTOR = K_FACTORS[0]
MAX_BASE_K = 8192  # candidates per query row re-ranked at most (see base_k)
COMPACT_DEAD_FRACTION = 0.25  # compact the held vectors when this share of rows is dead


class RefinedIndex:
    """A faiss-like index (ntotal, d, train, add_with_ids, remove_ids, search)."""

    def __init__(self, base: faiss.Index, k_factor: int = DEFAULT_K_FACTOR) -> None:
        self.base = base
        self.d = int(base.d)
        self.metric_type = base.metric_type
        self.k_factor = int(k_factor)
        self._ids = np.zeros(0, np.int64)  # held rows' ids, strictly increasing
        # Held rows [0, nb): read-only, a snapshot's mapping after read() (shared with
        # every process that maps the same file), else empty; rows [nb, n): owned, grown
        # with headroom (capacity >= n - nb). nb = len(self._base).
        self._base = np.zeros((0, self.d), np.float32)
        self._vectors = np.zeros((0, self.d), np.float32)
        self._live = np.zeros(0, bool)
        self._dead = 0
        self._positions: IdPositions | None = None  # ids -> rows, made for self._ids

    # ------------------------------------------------------------------ faiss-like
    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.base.is_trained)

    def train(self, xt: np.ndarray) -> None:
        self.base.train(xt)

    def add_with_ids(self, xb: np.ndarray, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        if len(self._ids) and ids[0] <= self._ids[-1]:
            raise ValueError(f"ids must grow: {int(ids[0])} after {int(self._ids[-1])}")
        self.base.add_with_ids(xb, ids)
        n, m = len(self._ids) - len(self._base), len(ids)  # owned rows, new rows
        if n + m > len(self._vectors):  # grow by half again: amortised O(1) appends
            grown = np.empty((max(n + m, len(self._vectors) * 3 // 2, 1024), self.d), np.float32)
            grown[:n] = self._vectors[:n]
            self._vectors = grown
        self._vectors[n : n + m] = xb
        before, self._ids = self._ids, np.concatenate([self._ids, ids])
        if self._positions is not None and self._positions.ids is before:
            self._positions = self._positions.extended(self._ids)
        self._live = np.concatenate([self._live, np.ones(m, bool)])

    def remove_ids(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        removed = int(self.base.remove_ids(ids))
        pos = np.searchsorted(self._ids, ids)
        inside = pos < len(self._ids)
        pos, ids = pos[inside], ids[inside]
        hit = np.unique(pos[(self._ids[pos] == ids) & self._live[pos]])
        self._live[hit] = False
        self._dead += len(hit)
        if self._dead > COMPACT_DEAD_FRACTION * max(1, len(self._ids)):
            self._compact()
        return removed

    def base_k(self, k: int) -> int:
        """Candidates fetched from the codes for k results: k_factor x k, but past
        MAX_BASE_K only k itself (a filtered batch asking for thousands per query would
        otherwise gather k_factor x as many rows; its head is still re-ranked from a
        pool of at least k)."""
        return max(k, min(k * self.k_factor, MAX_BASE_K))

    def search(
        self, xq: np.ndarray, k: int, params: faiss.SearchParameters | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """D (nq, k) exact inner products, best first; I (nq, k) ids, -1 / -inf padded.
        `params`: the codes' search's (faiss_index.selector_params: an id selector, tested
        by the codes' scan, so every candidate re-ranked is one that may be returned).

        Both passes run in faiss's C++ without the GIL (the codes' search, then
        knn_inner_products_by_idx over the candidates' rows); the Python between them is
        two array calls. A re-rank written in numpy held the GIL for ~0.15 ms a query, and
        8 threads searching together then answered fewer queries than one (measured)."""
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        kb = self.base_k(k)
        _, I0 = self.base.search(xq, kb, params=params)  # (nq, kb), -1 only at a row's end
        rows = self._find(I0)[0]  # each id's row in the held vectors
        if not rows_full(I0):  # padded rows (fewer candidates than kb)
            rows[I0 < 0] = -1  # the re-rank stops at a row's first -1
        D, R = self._rerank(xq, rows, k)
        if rows_full(R):  # k results for every query: the usual case
            return D, self._ids[R]
        found = R >= 0
        I = np.where(found, self._ids[np.where(found, R, 0)], -1) if len(self._ids) else R
        D[~found] = -np.inf
        return D, I

    def _rerank(self, xq: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k of each query over its candidate rows (-1 ends a query's list)."""
        nb, n = len(self._base), len(self._ids)
        if nb == 0 or nb == n:  # all rows in one array: the usual case
            return _knn(xq, self._base if nb else self._vectors, rows, k)
        # rows in both (vectors added since the snapshot was mapped: a server under
        # ingest): each candidate's inner product from the array that holds it, in faiss,
        # then the best k of them. Half the array calls of a top k per part merged after
        # (27 -> 14 us a query, measured), which every search paid while an ingest ran.
        mapped = rows < nb  # padding (-1) too: -1 in both parts' rows, so -inf in both
        D = np.maximum(
            _inner_products(xq, self._base, np.where(mapped, rows, -1)),
            _inner_products(xq, self._vectors, np.where(mapped, -1, rows - nb)),
        )
        nq, kb = rows.shape
        best = np.argsort(-D, axis=1, kind="stable")[:, :k]  # (nq, k) places in the lists
        at = best + (np.arange(nq, dtype=np.int64) * kb)[:, None]  # ... in the flat arrays
        return D.take(at), rows.take(at)  # past a short list: -inf and row -1, as _knn's

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, found) of ids, same shape: a table indexed by id (id_positions.py);
        searchsorted into 10^6 ids took a third of a batch's time."""
        self._positions = positions_for(self._positions, self._ids)
        return self._positions.find(ids)

    # ------------------------------------------------------------------ held vectors
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The held vectors of `ids` (each must be held: KeyError otherwise), (n, d)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self._ids) == 0:
            raise KeyError(f"ids not held: {ids[:5].tolist()}")
        pos, ok = self._find(ids)
        if not ok.all() or not self._live[pos].all():
            raise KeyError(f"ids not held: {ids[~ok][:5].tolist()}")
        nb = len(self._base)
        if nb == 0:
            return self._vectors[pos]
        out = np.empty((len(pos), self.d), np.float32)
        mapped = pos < nb
        out[mapped] = self._base[pos[mapped]]
        out[~mapped] = self._vectors[pos[~mapped] - nb]
        return out

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the rows not removed, in id order (views when none is dead
        and the rows are in one array)."""
        n, nb = len(self._ids), len(self._base)
        owned = self._vectors[: n - nb]
        if nb == 0:
            vectors = owned
        else:
            vectors = self._base if nb == n else np.concatenate([self._base, owned])
        if self._dead == 0:
            return self._ids, vectors
        return self._ids[self._live], vectors[self._live]

    @property
    def mapped_rows(self) -> int:
        """Rows read from a snapshot's mapping (shared with other processes), not owned;
        0 also for a snapshot whose vectors could not be mapped (unaligned: written by
        np.savez before this layout) and were copied."""
        return len(self._base) if isinstance(self._base, np.memmap) else 0

    def _compact(self) -> None:
        ids, vectors = self.live()  # copies (some rows are dead)
        self._ids, self._vectors = ids.copy(), np.ascontiguousarray(vectors)
        self._base = np.zeros((0, self.d), np.float32)  # owned from now on
        self._live = np.ones(len(self._ids), bool)
        self._dead = 0

    # ------------------------------------------------------------------ files
    def to_bytes(self) -> memoryview:
        """One file (npz): the base's faiss serialisation, the live rows' ids and vectors,
        k_factor (a view of the buffer). The vectors are written from the mapped and the
        owned rows in turn (no concatenated copy), on a 64-byte boundary (npz_map), so
        that read() can map them."""
        n, nb = len(self._ids), len(self._base)
        parts = [self._base, self._vectors[: n - nb]]
        if self._dead:
            parts = [parts[0][self._live[:nb]], parts[1][self._live[nb:]]]
        buf = io.BytesIO()
        write_npz(buf, {"faiss": faiss.serialize_index(self.base), "ids": self._ids[self._live],
                        "k_factor": np.int64(self.k_factor)}, "vectors", parts)  # fmt: skip
        return buf.getbuffer()

    @classmethod
    def read(cls, path: str) -> RefinedIndex:
        """The index of an npz file, its kept vectors mapped read-only from the file (not
        copied: processes that read the same snapshot share those pages); vectors added
        later are owned (see _base)."""
        with np.load(path, allow_pickle=False) as z:
            index = cls(faiss.deserialize_index(z["faiss"]), int(z["k_factor"]))
            ids = z["ids"].astype(np.int64, copy=False)
        vectors = map_member(path, "vectors")
        n, d = len(ids), index.d
        if ids.ndim != 1 or vectors.shape != (n, d) or n != index.ntotal:
            raise ValueError(f"{n} ids, vectors {vectors.shape}, {index.ntotal} codes of {d}-d")
        if n > 1 and (np.diff(ids) <= 0).any():
            raise ValueError("held ids are not strictly increasing")
        if not 1 <= index.k_factor <= 1024:
            raise ValueError(f"k_factor {index.k_factor}")
        if vectors.dtype != np.float32:
            raise ValueError(f"vectors are {vectors.dtype}, not float32")
        index._base = vectors if n else np.zeros((0, d), np.float32)
        # owned room for the first catch-ups (untouched pages cost no memory)
        index._vectors = np.empty((max(1024, n // 8), d), np.float32)
        index._ids = ids
        index._live = np.ones(n, bool)
        return index


def _knn(xq: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int):
    """faiss's exact inner products of each query with its rows of `vectors` (rows (nq,
    kb), -1 ends a list) -> D (nq, k), R (nq, k) rows, -1 past a short list. In C++,
    without the GIL: a numpy re-rank held it for ~0.15 ms a query (measured)."""
    nq, kb = rows.shape
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    D = np.empty((nq, k), np.float32)
    R = np.empty((nq, k), np.int64)
    faiss.knn_inner_products_by_idx(
        faiss.swig_ptr(xq), faiss.swig_ptr(vectors), faiss.swig_ptr(rows),
        xq.shape[1], nq, len(vectors), kb, k, faiss.swig_ptr(D), faiss.swig_ptr(R),
        kb,  # the stride of `rows` (its default, -1, does not mean "nsubset" here)
    )  # fmt: skip
    return D, R


def rows_full(M: np.ndarray) -> bool:
    """Whether every row of an (n, k) id / position matrix ends with an entry >= 0 (faiss
    pads a short row with -1 at its end): for one row a scalar read, not a reduction
    (numpy's min() goes through its Python wrappers: several microseconds a search)."""
    if len(M) == 1:
        return bool(M[0, -1] >= 0)
    return len(M) == 0 or bool(M[:, -1].min() >= 0)


def _inner_products(xq: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(nq, kb) inner products of each query with its rows of `vectors` (rows (nq, kb)),
    -inf where a row is -1 (wherever it is). In faiss's C++, without the GIL; the output
    starts at -inf because faiss versions differ on what they write for a -1 (-inf, or
    nothing)."""
    nq, kb = rows.shape
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.full((nq, kb), -np.inf, np.float32)
    faiss.fvec_inner_products_by_idx(
        faiss.swig_ptr(out), faiss.swig_ptr(xq), faiss.swig_ptr(vectors),
        faiss.swig_ptr(rows), xq.shape[1], nq, kb,
    )  # fmt: skip
    return out


def is_refined_file(path: str) -> bool:
    """An npz (zip) file, as RefinedIndex writes; faiss files start otherwise."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"
