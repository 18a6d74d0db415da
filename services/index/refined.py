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
        self._vectors = np.zeros((0, self.d), np.float32)  # capacity >= len(self._ids)
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
        n, m = len(self._ids), len(ids)
        if n + m > len(self._vectors):  # grow by half again: amortised O(1) appends
            grown = np.empty((max(n + m, len(self._vectors) * 3 // 2, 1024), self.d), np.float32)
            grown[:n] = self._vectors[:n]
            self._vectors = grown
        self._vectors[n : n + m] = xb
        self._ids = np.concatenate([self._ids, ids])
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

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """D (nq, k) exact inner products, best first; I (nq, k) ids, -1 / -inf padded.

        Both passes run in faiss's C++ without the GIL (the codes' search, then
        knn_inner_products_by_idx over the candidates' rows); the Python between them is
        two array calls. A re-rank written in numpy held the GIL for ~0.15 ms a query, and
        8 threads searching together then answered fewer queries than one (measured)."""
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        nq, kb = len(xq), self.base_k(k)
        _, I0 = self.base.search(xq, kb)  # (nq, kb), -1 only at a row's end
        rows = self._rows_of(I0)  # each id's row in the held vectors
        if nq and I0[:, -1].min() < 0:  # padded rows (fewer candidates than kb)
            rows[I0 < 0] = -1  # the re-rank stops at a row's first -1
        D = np.empty((nq, k), np.float32)
        R = np.empty((nq, k), np.int64)
        faiss.knn_inner_products_by_idx(
            faiss.swig_ptr(xq), faiss.swig_ptr(self._vectors), faiss.swig_ptr(rows),
            self.d, nq, len(self._ids), kb, k, faiss.swig_ptr(D), faiss.swig_ptr(R),
            kb,  # the stride of `rows` (its default, -1, does not mean "nsubset" here)
        )  # fmt: skip
        if nq == 0 or R[:, -1].min() >= 0:  # k results for every query: the usual case
            return D, self._ids[R]
        found = R >= 0
        I = np.where(found, self._ids[np.where(found, R, 0)], -1) if len(self._ids) else R
        D[~found] = -np.inf
        return D, I

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of held ids (ids the base returned), same shape: a table indexed by id
        (id_positions.py); searchsorted into 10^6 ids took a third of a batch's time."""
        self._positions = positions_for(self._positions, self._ids)
        return self._positions.find(ids)[0]

    # ------------------------------------------------------------------ held vectors
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The held vectors of `ids` (each must be held: KeyError otherwise), (n, d)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self._ids) == 0:
            raise KeyError(f"ids not held: {ids[:5].tolist()}")
        self._positions = positions_for(self._positions, self._ids)
        pos, ok = self._positions.find(ids)
        if not ok.all() or not self._live[pos].all():
            raise KeyError(f"ids not held: {ids[~ok][:5].tolist()}")
        return self._vectors[pos]

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the rows not removed, in id order (views when none is dead)."""
        n = len(self._ids)
        if self._dead == 0:
            return self._ids, self._vectors[:n]
        return self._ids[self._live], self._vectors[:n][self._live]

    def _compact(self) -> None:
        ids, vectors = self.live()
        self._ids, self._vectors = ids.copy(), np.ascontiguousarray(vectors)
        self._live = np.ones(len(self._ids), bool)
        self._dead = 0

    # ------------------------------------------------------------------ files
    def to_bytes(self) -> memoryview:
        """One file (npz): the base's faiss serialisation, the live rows, k_factor (a view
        of the buffer: no second copy of the 1 GB of vectors at 10^6)."""
        ids, vectors = self.live()
        buf = io.BytesIO()
        np.savez(buf, faiss=faiss.serialize_index(self.base), ids=ids, vectors=vectors,
                 k_factor=np.int64(self.k_factor))  # fmt: skip
        return buf.getbuffer()

    @classmethod
    def read(cls, path: str) -> RefinedIndex:
        with np.load(path, allow_pickle=False) as z:
            index = cls(faiss.deserialize_index(z["faiss"]), int(z["k_factor"]))
            ids = z["ids"].astype(np.int64, copy=False)
            vectors = z["vectors"]
        n, d = len(ids), index.d
        if ids.ndim != 1 or vectors.shape != (n, d) or n != index.ntotal:
            raise ValueError(f"{n} ids, vectors {vectors.shape}, {index.ntotal} codes of {d}-d")
        if n > 1 and (np.diff(ids) <= 0).any():
            raise ValueError("held ids are not strictly increasing")
        if not 1 <= index.k_factor <= 1024:
            raise ValueError(f"k_factor {index.k_factor}")
        # room to grow: the first catch-up after a load appends without copying it all
        index._vectors = np.empty((n + max(1024, n // 8), d), np.float32)
        index._vectors[:n] = vectors
        index._ids = ids
        index._live = np.ones(n, bool)
        return index


def is_refined_file(path: str) -> bool:
    """An npz (zip) file, as RefinedIndex writes; faiss files start otherwise."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"
