"""An in-memory VectorSource for tests and benchmarks: the store's contract without SQL.

Ids come from one counter shared by all collections (like SQL row ids); deletions append
to one tombstone log with a global sequence. `rows_read` counts vectors handed out by
iter_vectors, so a test can tell a snapshot load (few rows read) from a rebuild (all).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import numpy as np

from services.store import Level, Tombstones, VectorBatch


class _Collection:
    def __init__(self, dim: int) -> None:
        self.ids = np.zeros(0, np.int64)
        self.xb = np.zeros((0, dim), np.float32)
        self.alive = np.zeros(0, bool)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def consolidate(self) -> None:
        if not self._pending:
            return
        ids = np.concatenate([self.ids] + [p[0] for p in self._pending])
        xb = np.concatenate([self.xb] + [p[1] for p in self._pending])
        alive = np.concatenate([self.alive, np.ones(len(ids) - len(self.alive), bool)])
        order = np.argsort(ids, kind="stable")  # explicit ids may land below the max
        self.ids, self.xb, self.alive = ids[order], xb[order], alive[order]
        self._pending = []

    def append(self, ids: np.ndarray, xb: np.ndarray) -> None:
        self._pending.append((ids, xb))


class MemoryVectorSource:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows_read = 0
        self.store_id = str(uuid.uuid4())  # identity(); a test may copy another's
        self._lock = threading.Lock()
        self._next_id = 1
        self._collections: dict[tuple[str, str], _Collection] = {}
        self._tombstones: list[tuple[int, str, str, int]] = []  # (seq, level, version, id)
        self._counts: dict[tuple[str, str], int] = {}

    def _collection(self, level: str, model_version: str) -> _Collection:
        key = (level, model_version)
        if key not in self._collections:
            self._collections[key] = _Collection(self.dim)
            self._counts[key] = 0
        return self._collections[key]

    # ------------------------------------------------------------- writes (the "store")
    def add(
        self, level: Level, model_version: str, xb: np.ndarray, ids: np.ndarray | None = None
    ) -> np.ndarray:
        """Store unit vectors; returns their new ids. Explicit `ids` (unused ones) simulate
        a row that commits late, below ids already visible."""
        xb = np.ascontiguousarray(xb, dtype=np.float32)
        assert xb.ndim == 2 and xb.shape[1] == self.dim, xb.shape
        with self._lock:
            if ids is None:
                ids = np.arange(self._next_id, self._next_id + len(xb), dtype=np.int64)
            ids = np.asarray(ids, dtype=np.int64)
            assert len(ids) == len(xb)
            self._next_id = max(self._next_id, int(ids.max(initial=0)) + 1)
            self._collection(level, model_version).append(ids, xb.copy())
            self._counts[(level, model_version)] += len(ids)
            return ids

    def delete(self, level: Level, model_version: str, ids: np.ndarray) -> int:
        with self._lock:
            c = self._collection(level, model_version)
            c.consolidate()
            pos = np.searchsorted(c.ids, ids)
            pos = pos[(pos < len(c.ids))]
            pos = pos[np.isin(c.ids[pos], ids) & c.alive[pos]]
            c.alive[pos] = False
            for vid in c.ids[pos]:
                seq = len(self._tombstones) + 1
                self._tombstones.append((seq, level, model_version, int(vid)))
            self._counts[(level, model_version)] -= len(pos)
            return len(pos)

    # ------------------------------------------------------------- the VectorSource
    def count(self, level: Level, model_version: str, *, max_id: int | None = None) -> int:
        with self._lock:
            if max_id is None:
                return self._counts.get((level, model_version), 0)
            c = self._collection(level, model_version)
            c.consolidate()
            return int((c.alive & (c.ids <= max_id)).sum())

    def max_id(self, level: Level, model_version: str) -> int:
        with self._lock:
            c = self._collection(level, model_version)
            c.consolidate()
            live = c.ids[c.alive]
            return int(live[-1]) if len(live) else 0

    def iter_vectors(
        self, level: Level, model_version: str, *, after_id: int = 0, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        start = None
        while True:
            with self._lock:
                c = self._collection(level, model_version)
                c.consolidate()
                if start is None:
                    start = int(np.searchsorted(c.ids, after_id, side="right"))
                stop = min(start + batch_size, len(c.ids))
                keep = c.alive[start:stop]
                ids, xb = c.ids[start:stop][keep], c.xb[start:stop][keep]
            if stop <= start:
                return
            start = stop
            if len(ids):
                self.rows_read += len(ids)
                yield VectorBatch(ids=ids.copy(), xb=xb.copy())

    def vectors(self, level: Level, model_version: str, ids: np.ndarray) -> VectorBatch:
        with self._lock:
            c = self._collection(level, model_version)
            c.consolidate()
            keep = c.alive & np.isin(c.ids, np.asarray(ids, np.int64))
            return VectorBatch(ids=c.ids[keep].copy(), xb=c.xb[keep].copy())

    def identity(self) -> str:
        return self.store_id

    def tombstones(self, level: Level, model_version: str, *, after_seq: int = 0) -> Tombstones:
        with self._lock:
            rows = [
                (seq, vid)
                for seq, lv, mv, vid in self._tombstones[after_seq:]
                if lv == level and mv == model_version
            ]
            last = len(self._tombstones)
        return Tombstones(ids=np.array([vid for _, vid in rows], np.int64), last_seq=last)

    def max_tombstone_seq(self) -> int:
        with self._lock:
            return len(self._tombstones)


def clustered_unit_vectors(
    n: int,
    dim: int,
    *,
    n_clusters: int = 100,
    spread: float = 1.0,
    seed: int = 0,
    sample_seed: int | None = None,
) -> np.ndarray:
    """(n, dim) float32 unit vectors around `n_clusters` random directions.

    `spread` is the noise norm relative to the centre's (1.0: cosine to the centre ~0.7),
    so clusters overlap the way real embeddings do rather than being trivially separable.
    `seed` fixes the centres; another `sample_seed` draws new vectors around the same
    centres (queries from the distribution of the stored vectors).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if sample_seed is not None:
        rng = np.random.default_rng([seed, sample_seed])
    xb = np.empty((n, dim), np.float32)
    step = 65536
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        noise *= spread / np.sqrt(dim)
        xb[lo:hi] = centres[rng.integers(0, n_clusters, hi - lo)] + noise
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    return xb
