"""VectorIndex: one FAISS index per (level, model_version), kept in step with SQL.

    load_or_build(): snapshot --verify--> same store? --> catch up --ntotal == count?--> serve
                        | missing, corrupt, mismatched, foreign, or misaligned
                        '--> build_from_source --> catch up --> serve --> save_snapshot
    sync():          catch up (tombstones, new ids) --ntotal == count?--> keep serving
                        | misaligned: rebuild      | past a size rule: rebuild (IVF <-> exact)
    search(xq, k):   read lock -> (D, I) from the served index (a GPU copy when there is one)

Rebuild policy: a rebuild (misalignment, or rebuild_reason() saying the collection grew
past the exact threshold / 16x past what the IVF was trained for) runs inside the sync()
call that notices it, synchronously, while searches keep using the current index; the new
index is caught up, then swapped in under the write lock, then snapshotted. Run sync() on
a background thread (the API's periodic sync loop) to keep it off the request path.
At start, a misaligned snapshot is never served (load_or_build rebuilds first). During a
sync, the index found misaligned keeps answering until its replacement is swapped in (a
few rows off is better than no answers); if the fresh index cannot be aligned either
(IndexOutOfSyncError: the store contradicts itself), nothing is served until a later
sync or load_or_build succeeds. sync() does not write snapshots after a plain catch-up:
call save_snapshot() when it pays (e.g. periodically, or after a large catch-up).

Same store: a snapshot records the store's identity (`source.identity()`: an id kept in
SQL) and digests of ORIGIN_SAMPLE of its rows, (id, vector) hashed: SAMPLE_SPREAD spread
evenly over its ids plus the SAMPLE_TOP highest ones. At load the identity must match (not
a re-created database, not another deployment sharing the folder) and every sampled row
still live in the store must hash the same (not other content under the same ids, e.g. a
restored backup that has since reused ids: they sit at the top, which the sample always
covers). A full digest of the (id, vector) rows would read every vector, as a rebuild
does; the check reads ORIGIN_SAMPLE rows by primary key, so at 10^6 vectors it costs one
identity query and one 64-id look-up at load (~ms), and at save a sorted copy of the
index's ids (8 MB, ~0.1 s) next to faiss writing the index itself. What it can miss: other
content that differs from the snapshot only between sampled ids with the same count;
catch-up's count check (ntotal == count) then still guards against a short or long store.

Locking: `_mutex` serialises the writers (load, sync, rebuild, save); `_rw` lets any
number of searches run together (faiss CPU search is const) and gives each mutation batch
(add / remove) and each swap exclusive access. Source reads and index builds hold no
`_rw` lock. GPU searches are serialised per index (faiss GPU indexes are not re-entrant).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from services.index import faiss_index as fi
from services.index import snapshot
from services.index.factory import (
    DEFAULT_EXACT_THRESHOLD,
    DEFAULT_MEMORY_BUDGET_BYTES,
    RECALL_TARGET,
    IndexChoice,
    rebuild_reason,
)
from services.index.locks import RWLock
from services.index.snapshot import Manifest, SnapshotError
from services.index.source import VectorSource
from services.index.sync import BuildResult, build_from_source, catch_up
from services.store import LEVELS, Level, VectorBatch

log = logging.getLogger(__name__)

ALIGN_ATTEMPTS = 3  # catch-up rounds before a count mismatch is called a misalignment
SAMPLE_SPREAD = 48  # sampled rows spread evenly over a snapshot's ids (see "Same store")
SAMPLE_TOP = 16  # and its highest ids, where a restored database reuses ids


class IndexNotReadyError(RuntimeError):
    """Search before load_or_build(), or after a rebuild that could not be aligned."""


class IndexOutOfSyncError(RuntimeError):
    """A freshly built index still disagrees with source.count(): the store is inconsistent."""


@dataclass(frozen=True)
class LoadReport:
    loaded_from_snapshot: bool  # True: served from the snapshot, no rebuild
    rebuilt_reason: str | None  # why the index was (re)built from the store, if it was
    rows_read: int  # vectors read from the store (build passes + catch-up)
    added: int  # caught up after the load or build
    removed: int
    seconds: float


@dataclass(frozen=True)
class SyncResult:
    added: int  # vectors added to the served index by the catch-up
    removed: int  # vectors removed by tombstones
    rebuilt_reason: str | None  # why a new index was built and swapped in, if one was
    ntotal: int  # vectors served after the sync


@dataclass
class _State:
    index: faiss.Index  # the CPU index: truth for mutations and snapshots
    choice: IndexChoice  # factory and tuned nprobe
    watermark: int
    tombstone_seq: int
    n_at_build: int
    recall_at_10: float
    built_at: str


def _row_digests(rows: VectorBatch) -> dict[str, str]:
    """{str(id): sha256(id as int64, vector as float32 little-endian)[:16]} per row."""
    xb = np.ascontiguousarray(rows.xb, dtype="<f4")
    return {
        str(int(i)): hashlib.sha256(np.int64(i).tobytes() + xb[r].tobytes()).hexdigest()[:16]
        for r, i in enumerate(rows.ids)
    }


class VectorIndex:
    """The searchable copy of one (level, model_version) vector collection."""

    def __init__(
        self,
        level: Level,
        model_version: str,
        dim: int,
        snapshot_dir: Path | str,
        source: VectorSource,
        *,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
        target_recall: float = RECALL_TARGET,
        use_gpu: bool | None = None,
        recount_idle_s: float = 0.0,
        writes_snapshots: bool = True,
    ) -> None:
        """writes_snapshots: False where another process writes this folder's snapshots
        (API processes but one, `sora serve --api-processes`): builds are not saved here.
        recount_idle_s: a sync skips the count check (a count of the store's rows: 0.12 s
        of CPU a level at 10^6 on SQLite, so on an API that syncs every second a fifth of
        a core, all the time) while the last count that matched is younger than this,
        whether its catch-up moved rows or not (under an ingest every sync moves some: an
        API process spent ~0.1 s of CPU a second counting at 20 videos/s). A row committed
        late below the watermark is then found up to this much later. 0: always count."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not 0.0 < target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        snapshot.stem(level, model_version)  # raises on names unsafe for files
        self.level: Level = level
        self.model_version = model_version
        self.dim = dim
        self.snapshot_dir = Path(snapshot_dir)
        self.writes_snapshots = writes_snapshots
        self.source = source
        self.memory_budget_bytes = memory_budget_bytes
        self.exact_threshold = exact_threshold
        self.target_recall = target_recall
        self.placement = fi.Placement(use_gpu)
        self.recount_idle_s = recount_idle_s
        self._counted_at = float("-inf")  # monotonic time of the last count that matched
        self.last_load: LoadReport | None = None
        self._mutex = threading.RLock()
        self._rw = RWLock()
        self._state: _State | None = None
        self._search_index: faiss.Index | None = None
        self._saved: Manifest | None = None

    # ------------------------------------------------------------------ reads
    @property
    def ntotal(self) -> int:
        state = self._state
        return int(state.index.ntotal) if state is not None else 0

    @property
    def manifest(self) -> Manifest:
        """The served index described as a manifest. index_file, sha256 and created_at name
        the last snapshot written of this build ("" if none); it may predate a sync."""
        state = self._state
        if state is None:
            raise IndexNotReadyError("no index loaded: call load_or_build()")
        m = self._manifest_of(state)
        saved = self._saved
        if saved is not None and saved.built_at == state.built_at:
            m = dataclasses.replace(
                m, index_file=saved.index_file, sha256=saved.sha256, created_at=saved.created_at
            )
        return m

    def search(
        self, xq: np.ndarray, k: int, admitted: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product (cosine on unit vectors) for each query row.

        xq: float32 (nq, dim). Returns D (nq, k) float32 scores, best first, and I (nq, k)
        int64 SQL row ids; when fewer than k vectors are found the row ends with I = -1,
        D = -inf (as faiss pads). TypeError / ValueError on a wrong dtype, shape or k.
        `admitted`: only those ids, as bits (faiss_index.search); the CPU copy answers
        (faiss's GPU indexes take no id selector).
        """
        xq = fi.check_queries(xq, self.dim)
        k = fi.check_k(k)
        with self._rw.read():
            state, index = self._state, self._search_index
            if state is None or index is None:
                raise IndexNotReadyError("no index loaded: call load_or_build()")
            if k > fi.GPU_MAX_K or admitted is not None:
                index = state.index  # beyond the GPU's k limit the CPU copy answers
            with self.placement.search_guard(index, state.index):
                return fi.search(index, xq, k, admitted)

    @property
    def holds_vectors(self) -> bool:
        """Whether vectors() can answer at all (full vectors kept, not only codes)."""
        state = self._state
        return state is not None and fi.keeps_vectors(state.index)

    def vectors(self, ids: np.ndarray) -> np.ndarray | None:
        """The stored vectors of `ids` (n, dim) float32 when this index holds full vectors
        (exact, or fast-scan with its re-rank copy) and holds every one of the ids; else
        None (compressed codes, an id not caught up yet): read them from SQL then."""
        ids = np.asarray(ids, dtype=np.int64)
        with self._rw.read():
            state = self._state
            if state is None or len(ids) == 0:
                return None
            return fi.held_vectors(state.index, ids)

    # ------------------------------------------------------------------ writes
    def load_or_build(self) -> LoadReport:
        """Serve the snapshot if it verifies and aligns with the store, else rebuild."""
        t0 = time.perf_counter()
        with self._mutex:
            state: _State | None = None
            reason: str | None = None
            rows = 0
            try:
                state = self._load_snapshot()
            except SnapshotError as e:
                reason = f"snapshot unusable: {e}"
            added = removed = 0
            if state is not None:
                added, removed, misaligned = self._align(state, published=False)
                rows += added
                if misaligned:
                    reason, state = f"snapshot misaligned after catch-up: {misaligned}", None
                else:
                    reason = self._rebuild_reason(state)
                    if reason is not None:
                        state = None
            loaded = state is not None
            if state is None:
                assert reason is not None
                self._log_rebuild(reason)
                state, built_rows, added, removed = self._build_aligned()
                rows += built_rows
            self._publish(state)
            # a build is saved; so is a loaded snapshot of the older layout, whose vectors
            # were copied rather than mapped (the writer's next loads then map them)
            if self.writes_snapshots and (not loaded or fi.unmapped_snapshot(state.index)):
                self.save_snapshot()
            self.last_load = LoadReport(
                loaded, reason, rows, added, removed, time.perf_counter() - t0
            )
            return self.last_load

    def sync(self) -> SyncResult:
        """Catch up with the store; rebuild and swap if misaligned or past a size rule."""
        with self._mutex:
            state = self._state
            if state is None:
                report = self.load_or_build()
                return SyncResult(report.added, report.removed, report.rebuilt_reason, self.ntotal)
            added, removed, misaligned = self._align(state, published=True, quiet_ok=True)
            if added or removed:
                self._replace_search_copy(state)
            reason = f"misaligned: {misaligned}" if misaligned else self._rebuild_reason(state)
            if reason is not None:
                self._log_rebuild(reason)
                try:
                    new_state, _, _, _ = self._build_aligned()
                except IndexOutOfSyncError:
                    if misaligned:  # the served index is wrong too: stop serving it
                        self._publish(None)
                    raise
                self._publish(new_state)
                if self.writes_snapshots:
                    self.save_snapshot()
            return SyncResult(added, removed, reason, self.ntotal)

    def remove(self, ids: np.ndarray) -> int:
        """Remove vector ids from the served index now -> how many went. The API calls it
        for a video whose delete has committed, so searches stop spending k on it; the
        next catch-up reads the same ids as tombstones and finds them gone (harmless).
        Takes only the write lock, not the writers' mutex: a long sync or rebuild does
        not hold a delete up (a rebuild swapped in later catches the tombstones up)."""
        state = self._state
        if state is None or len(ids) == 0:
            return 0
        with self._rw.write():
            n = fi.remove(state.index, np.asarray(ids, dtype=np.int64))
        if n:
            self._replace_search_copy(state)
        return n

    def set_nprobe(self, nprobe: int) -> None:
        """Override the tuned nprobe of an IVF index (kept in the manifest and snapshots).

        The manifest's recall_at_10 still describes the tuned value, not this one.
        """
        if isinstance(nprobe, bool) or not isinstance(nprobe, int):
            raise TypeError(f"nprobe must be an int, got {type(nprobe).__name__}")
        if nprobe <= 0:
            raise ValueError(f"nprobe must be > 0, got {nprobe}")
        with self._mutex:
            state = self._state
            if state is None:
                raise IndexNotReadyError("no index loaded: call load_or_build()")
            if state.choice.exact:
                raise ValueError(f"{state.choice.factory} is exact: it has no nprobe")
            nprobe = min(nprobe, state.choice.nlist)
            with self._rw.write():
                fi.set_nprobe(state.index, nprobe)
                state.choice = dataclasses.replace(state.choice, nprobe=nprobe)
            self._replace_search_copy(state)

    def save_snapshot(self) -> Manifest:
        """Write the served index and its manifest atomically; searches go on meanwhile."""
        with self._mutex:  # no sync, rebuild or other save meanwhile
            state = self._state
            if state is None:
                raise IndexNotReadyError("no index loaded: call load_or_build()")
            # remove() (a DeleteVideo) takes only the write lock: the index is copied to
            # bytes, and its manifest made, under the read lock (searches go on), so the
            # file and its manifest are one state; the disk write happens after it
            with self._rw.read():
                m = dataclasses.replace(self._manifest_of(state), **self._origin(state))
                payload = fi.serialize_index(state.index)
            self._saved = snapshot.save(self.snapshot_dir, payload, m)
            return self._saved

    # ------------------------------------------------------------------ internals
    def _manifest_of(self, state: _State) -> Manifest:
        choice = state.choice
        return Manifest(
            level=self.level,
            model_version=self.model_version,
            dim=self.dim,
            factory=choice.factory,
            kind=choice.kind,
            nlist=choice.nlist,
            search_params=fi.search_params(state.index, choice.nprobe),
            watermark=state.watermark,
            tombstone_seq=state.tombstone_seq,
            count=int(state.index.ntotal),
            n_at_build=state.n_at_build,
            recall_at_10=state.recall_at_10,
            built_at=state.built_at,
            faiss_version=fi.faiss_version(),
        )

    def _load_snapshot(self) -> _State:
        index, m = snapshot.load(self.snapshot_dir, self.level, self.model_version, self.dim)
        self._check_origin(m)
        nprobe = int(m.search_params.get("nprobe", 0))
        fi.set_nprobe(index, nprobe)  # a RefinedIndex's k_factor is in its own file
        choice = IndexChoice(m.factory, m.kind, nprobe, m.nlist, 0, 0)  # type: ignore[arg-type]
        log.info(
            "%s/%s: snapshot %s loaded (%d vectors, %s)",
            self.level,
            self.model_version,
            m.index_file,
            m.count,
            m.factory,
        )
        self._saved = m
        return _State(
            index, choice, m.watermark, m.tombstone_seq, m.n_at_build, m.recall_at_10, m.built_at
        )

    def _origin(self, state: _State) -> dict[str, Any]:
        """The manifest's source_id and sample for `state` (see "Same store")."""
        ids = fi.ids_of(state.index)  # (ntotal,) sorted
        picked = ids
        if len(ids) > SAMPLE_SPREAD + SAMPLE_TOP:
            spread = np.linspace(0, len(ids) - 1, SAMPLE_SPREAD).round().astype(int)
            picked = np.union1d(ids[spread], ids[-SAMPLE_TOP:])
        rows = self.source.vectors(self.level, self.model_version, picked)
        return {"source_id": self.source.identity(), "sample": _row_digests(rows)}

    def _check_origin(self, m: Manifest) -> None:
        """Raise SnapshotError unless the snapshot was made from this store's rows."""
        here = self.source.identity()
        if m.source_id != here:
            raise SnapshotError(
                f"snapshot of another database (its store id {m.source_id or 'unrecorded'}, "
                f"this store's {here})"
            )
        ids = np.array(sorted(int(i) for i in m.sample), dtype=np.int64)
        now = _row_digests(self.source.vectors(self.level, self.model_version, ids))
        differ = sorted(int(i) for i, d in now.items() if m.sample[i] != d)
        if differ:
            raise SnapshotError(
                f"{len(differ)} of {len(now)} sampled rows (ids {differ[:5]}) hold other "
                "vectors in this store than in the snapshot: other content under the same ids"
            )

    def _rebuild_reason(self, state: _State) -> str | None:
        return rebuild_reason(
            state.choice,
            int(state.index.ntotal),
            self.dim,
            self.memory_budget_bytes,
            exact_threshold=self.exact_threshold,
            fastscan=not self.placement.use_gpu,
        )

    def _build(self) -> tuple[_State, BuildResult]:
        result = build_from_source(
            self.source,
            self.level,
            self.model_version,
            self.dim,
            memory_budget_bytes=self.memory_budget_bytes,
            exact_threshold=self.exact_threshold,
            target_recall=self.target_recall,
            fastscan=not self.placement.use_gpu,  # searches run on the GPU's IVF,Flat
        )
        state = _State(
            result.index,
            result.choice,
            result.watermark,
            result.tombstone_seq,
            result.n_at_build,
            result.recall_at_10,
            snapshot.utc_now(),
        )
        return state, result

    def _build_aligned(self) -> tuple[_State, int, int, int]:
        """Build, catch up and check; (state, rows read, added, removed)."""
        state, result = self._build()
        added, removed, misaligned = self._align(state, published=False)
        if misaligned:
            raise IndexOutOfSyncError(
                f"{self.level}/{self.model_version} fresh index misaligned: {misaligned}"
            )
        return state, result.rows_read + added, added, removed

    def _align(
        self, state: _State, *, published: bool, quiet_ok: bool = False
    ) -> tuple[int, int, str | None]:
        """Catch `state` up; (added, removed, None) when ntotal == count, else a reason.

        The store may move between a catch-up and count(); a mismatch is only called a
        misalignment once a catch-up round found nothing new and count() stood still, or
        after ALIGN_ATTEMPTS rounds.
        """
        guard = self._rw.write if published else nullcontext
        added = removed = 0
        mismatch, n_prev = None, None
        for _ in range(ALIGN_ATTEMPTS):
            cu = catch_up(
                state.index,
                self.source,
                self.level,
                self.model_version,
                self.dim,
                watermark=state.watermark,
                tombstone_seq=state.tombstone_seq,
                guard=guard,
            )
            state.watermark, state.tombstone_seq = cu.watermark, cu.tombstone_seq
            added += cu.added
            removed += cu.removed
            recent = time.monotonic() - self._counted_at < self.recount_idle_s
            if quiet_ok and recent:
                return added, removed, None  # the count matched a moment ago
            # Rows up to the watermark only: rows committed since the catch-up (a busy
            # ingest) are not a misalignment, and counting them rebuilt the whole index.
            n_src = self.source.count(self.level, self.model_version, max_id=state.watermark)
            if state.index.ntotal == n_src:
                self._counted_at = time.monotonic()
                return added, removed, None
            mismatch = f"index holds {state.index.ntotal} vectors, store has {n_src}"
            if cu.added == 0 and cu.removed == 0 and n_src == n_prev:
                break  # a still store, and still off
            n_prev = n_src
        return added, removed, mismatch

    def _log_rebuild(self, reason: str) -> None:
        log.warning("%s/%s: rebuilding from SQL (%s)", self.level, self.model_version, reason)

    def _publish(self, state: _State | None) -> None:
        """Swap in a new state (None: stop serving); the GPU copy is made before the swap."""
        search_index = self.placement.place(state.index) if state is not None else None
        with self._rw.write():
            self._state, self._search_index = state, search_index

    def _replace_search_copy(self, state: _State) -> None:
        """After an in-place catch-up: a fresh GPU copy (a no-op on CPU)."""
        if self.placement.use_gpu:
            search_index = self.placement.place(state.index)
            with self._rw.write():
                self._search_index = search_index
