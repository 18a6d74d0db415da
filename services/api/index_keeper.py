"""The API's FAISS indexes: the IndexSet of the model version searches serve, kept in step
with SQL by one background thread.

    every interval_s, or at once after request_sync() (a delete):
        configured version (resolved once, lazily: e.g. the encoder's)
        serving = serving_model_version(SQL, configured)
        same as now?  IndexSet.sync(save=False)           catch up: new ids, tombstones
        changed?      IndexSet(new).sync() while the old set keeps answering, then swap
        first success -> ready (health SERVING via on_ready)
    snapshots are written at most every save_interval_s when something changed (or
    SAVE_COST_FACTOR x the last write's seconds, when longer), and at stop (by one API
    process of a host: save_snapshots; the others only read them)

Searches do not wait on the loop's syncs: they read the current IndexSet reference
(`serving()`: version, indexes, catalogue) and search its VectorIndex (which has its own
read/write lock); hits are filtered and described by its catalogue, in memory. Deleted
videos drop out of results before the next sync anyway: DeleteVideo calls forget_video()
once its transaction has committed, which takes the video out of the serving catalogue
(and out of a fresh IndexSet being built for a new version, before it is swapped in). One
exception, catch_up(): a search that finds the keeper serving nothing, or a READY video
without vectors of the serving version, syncs once in its own thread (coalesced with any
sync that began after it asked), so a video is searchable as soon as its job SUCCEEDED.

Several API processes on one host (`sora serve --api-processes N`) each keep their own;
a delete through one is signalled to the others (change_signal.py), whose next search
catches up first, so no process returns a video once DeleteVideo has returned (while SQL
answers: a search whose catch-up cannot read it is served from what is loaded, and the
catch-up is tried again after interval_s).

A failing sync (database down) is logged once, retried each interval, and leaves the last
loaded index serving; before the first success `ready` stays False.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.errors import UnavailableError
from services.index import Catalogue, IndexSet, LevelStatus, VectorIndex
from services.store import Level, Store, serving_model_version, versions_fingerprint

from .change_signal import ChangeSignal

logger = logging.getLogger(__name__)

# Under a steady ingest every periodic save writes every snapshot again: at 10^6 vectors
# ~4.4 s of CPU (serialise, zip, checksum), much of it holding the GIL, so every 60 s was
# 7 % of a core taken from searches. Periodic saves wait at least this many times the last
# write's CPU seconds (4.4 s -> 220 s: ~2 %), at most SAVE_WAIT_MAX x save_interval_s; a
# restart then catches up more rows from SQL.
SAVE_COST_FACTOR = 50.0
SAVE_WAIT_MAX = 10.0


def _cpu_clock() -> float:
    """The calling thread's CPU seconds (what a snapshot write costs the process)."""
    return time.thread_time()


def _unsaved(fresh: IndexSet, statuses: list[LevelStatus]) -> bool:
    """Whether a freshly opened set holds rows its snapshots lack. A build was saved by
    load_or_build; a snapshot it loaded lacks what the load caught up (rows added or
    deleted while the process was down) and what the sync after it moved. Before, every
    fresh set counted as unsaved, and a minute after each start the writer rewrote every
    snapshot (seconds of CPU and ~1 GB at 10^6)."""
    loads = [index.last_load for index in fresh.indexes.values()]
    caught_up = any(r is not None and r.loaded_from_snapshot and (r.added or r.removed)
                    for r in loads)  # fmt: skip
    return caught_up or any(s.added or s.removed for s in statuses)


VersionSource = str | Callable[[], str | None] | None


@dataclass(frozen=True)
class Serving:
    """What one search reads, taken once: the version, its indexes and its catalogue."""

    version: str | None  # None: no vectors in SQL yet
    indexes: dict[Level, VectorIndex]
    catalogue: Catalogue | None


class IndexKeeper:
    def __init__(
        self,
        store: Store,
        snapshot_dir: Path,
        *,
        configured_version: VersionSource = None,
        interval_s: float = 1.0,
        save_interval_s: float = 60.0,
        recount_idle_s: float = 0.0,
        on_ready: Callable[[], None] | None = None,
        changes: ChangeSignal | None = None,
        save_snapshots: bool = True,
    ) -> None:
        """changes: the signal shared with the other API processes of this host (deletes
        made there are caught up before a search here); save_snapshots: False in all but
        one of them (one writer of the snapshot files)."""
        self.store = store
        self.changes = changes
        self._changes_seen = changes.value() if changes is not None else 0
        self._changes_retry_at = float("-inf")
        self.save_snapshots = save_snapshots
        self.recount_idle_s = recount_idle_s  # see VectorIndex
        self.snapshot_dir = Path(snapshot_dir)
        self.interval_s = interval_s
        self.save_interval_s = save_interval_s
        self.on_ready = on_ready
        self._configured_source = configured_version
        self._configured: str | None = None
        self._configured_resolved = not callable(configured_version)
        if isinstance(configured_version, str):
            self._configured = configured_version
        self._set: IndexSet | None = None
        self._ready = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one sync at a time
        # videos deleted since the running sync began: replayed on a fresh IndexSet's
        # catalogue before it is swapped in (its reads may predate the delete)
        self._forget_lock = threading.Lock()
        self._forgotten: set[int] = set()
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._last_save = time.monotonic()
        self._save_cpu_s = 0.0  # CPU seconds the last snapshot write took
        self._failing = False
        self._synced_from = float("-inf")  # monotonic time the last completed sync began
        self.syncs = 0  # completed syncs (tests wait on it)
        self._version_fingerprint: tuple | None = None  # see _serving_version
        self._version_checked_at = float("-inf")
        self._version_answer: str | None = None

    # ------------------------------------------------------------------ reads
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def model_version(self) -> str | None:
        """The version searches serve (None: no vectors in SQL yet)."""
        current = self._set
        return current.model_version if current is not None else None

    @property
    def configured_version(self) -> str | None:
        return self._configured

    def current(self) -> tuple[str | None, dict[Level, VectorIndex]]:
        """(serving model version, its indexes by level) or UNAVAILABLE before the first
        load. A level with no vectors yet has no index."""
        self._check_ready()
        current = self._set
        if current is None:
            return None, {}
        return current.model_version, dict(current.indexes)

    def _check_ready(self) -> None:
        if not self._ready.is_set():
            raise UnavailableError(
                "the search index is still loading; retry in a few seconds "
                "(health reports SERVING once it is loaded)"
            )

    def serving(self) -> Serving:
        """current(), with the catalogue; UNAVAILABLE before the first load."""
        self._check_ready()
        if self.changes is not None:
            self._catch_up_changes()
        current = self._set  # one reference: version, indexes and catalogue agree
        if current is None:
            return Serving(None, {}, None)
        return Serving(current.model_version, dict(current.indexes), current.catalogue)

    def _catch_up_changes(self) -> None:
        """Another API process deleted a video (the change signal moved): sync its
        committed tombstones and status before this search. If SQL cannot be read, search
        on (a search must not fail because the database is down) and try again after
        interval_s; the loop's own syncs also pick the delete up once SQL answers."""
        assert self.changes is not None
        seen = self.changes.value()
        if seen == self._changes_seen or time.monotonic() < self._changes_retry_at:
            return
        try:
            self.catch_up()
        except Exception:  # noqa: BLE001 - serve what is loaded; the loop retries too
            logger.warning("could not catch up a delete made by another API process; "
                           "retrying in %.1f s", self.interval_s, exc_info=True)  # fmt: skip
            self._changes_retry_at = time.monotonic() + self.interval_s
            return
        self._changes_seen = seen

    def forget_video(self, video_id: int) -> None:
        """A video deleted in SQL (committed): gone from every search from now on (the
        catalogue), and its vectors out of the served indexes (as its tombstones will)."""
        with self._forget_lock:
            self._forgotten.add(int(video_id))
            current = self._set
            if current is not None and current.catalogue is not None:
                current.catalogue.remove_video(video_id)
        try:
            if current is not None and current.catalogue is not None:
                for level, index in current.indexes.items():
                    ids = current.catalogue.vector_ids_of(level, video_id)
                    if index.remove(ids):
                        self._dirty = True
        finally:
            if self.changes is not None:  # the other API processes catch up before their
                self.changes.bump()  # next search, whatever happened to this one's index

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sora-index-keeper", daemon=True)
        self._thread.start()

    def stop(self, *, save: bool = True, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if save:
            with self._lock:
                self._save(force=False)

    def request_sync(self) -> None:
        """Sync soon (after a write that changes what is searchable)."""
        self._wake.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def catch_up(self) -> None:
        """Sync in the caller's thread, unless a sync that began after this call has already
        finished: concurrent callers share one sync. A search calls it when SQL may hold
        vectors the index has not seen yet (see the module docstring)."""
        self._sync(after=time.monotonic())

    def sync_once(self) -> None:
        """One sync in the caller's thread (the background loop calls this)."""
        self._sync()

    def _sync(self, *, after: float | None = None) -> None:
        """Sync, or with `after` do nothing when a sync that began after it has finished."""
        with self._lock:
            if after is not None and self._synced_from >= after:
                return
            started = time.monotonic()
            with self._forget_lock:  # deletes committed before this sync's reads
                self._forgotten.clear()
            version = self._serving_version()
            current = self._set
            if version is None:
                self._set = None
            elif current is None or current.model_version != version:
                fresh = IndexSet(self.store, version, self.snapshot_dir, catalogue=True,
                                 recount_idle_s=self.recount_idle_s,
                                 writes_snapshots=self.save_snapshots)  # fmt: skip
                statuses = fresh.sync(save=False, count=False)
                with self._forget_lock:
                    assert fresh.catalogue is not None
                    for video_id in self._forgotten:
                        fresh.catalogue.remove_video(video_id)
                    # before the swap: a delete's removal from the fresh set (forget_video,
                    # once it is served) then marks it dirty after this, not before
                    self._dirty = _unsaved(fresh, statuses)
                    self._set = fresh
                logger.info(
                    "serving model version %s (was %s): %s",
                    version,
                    current.model_version if current else None,
                    ", ".join(f"{s.level} {s.ntotal}" for s in statuses) or "no vectors",
                )
            else:
                statuses = current.sync(save=False, count=False)
                if any(s.added or s.removed for s in statuses):
                    self._dirty = True
            if after is None:  # the loop's sync; a catch-up in a search's thread never
                self._save(force=False, periodic=True)  # writes a snapshot (seconds at 10^6)
            self._synced_from = started
            self.syncs += 1
        if not self._ready.is_set():
            self._ready.set()
            logger.info("index loaded (model version %s): serving", self.model_version)
            if self.on_ready is not None:
                self.on_ready()

    # ------------------------------------------------------------------ internals
    def _serving_version(self) -> str | None:
        if not self._configured_resolved:
            try:
                self._configured = self._configured_source()  # type: ignore[operator]
            except Exception:  # noqa: BLE001 - serve what SQL has rather than nothing
                logger.exception(
                    "could not determine the configured model version; serving the version "
                    "that covers the most videos"
                )
            self._configured_resolved = True
        with self.store.ReadSession.begin() as s:
            # the full answer counts every READY video per version (0.13 s of CPU at 10^5
            # videos on SQLite, every second); it is asked again when the last answer is
            # older than recount_idle_s, and before that only when the store's fingerprint
            # moved while the answer is not yet the configured version (a first video, a
            # reindex under way: the switch is prompt). Once the configured version is
            # served, new videos of it (an ingest moves the fingerprint every second) do
            # not change the answer; a version overtaking it, or every video deleted, is
            # seen within recount_idle_s.
            fingerprint = versions_fingerprint(s)
            now = time.monotonic()
            settled = self._version_answer is not None and self._version_answer == self._configured
            if now - self._version_checked_at < self.recount_idle_s and (
                fingerprint == self._version_fingerprint or settled
            ):
                return self._version_answer
            version = serving_model_version(s, self._configured or "")
        self._version_fingerprint, self._version_checked_at = fingerprint, now
        self._version_answer = version
        return version

    def _save(self, *, force: bool, periodic: bool = False) -> None:
        current = self._set
        if current is None or not (self._dirty or force) or not self.save_snapshots:
            return
        # the last write's CPU (not wall time, which a loaded host stretches), and never
        # more than SAVE_WAIT_MAX x the configured interval
        cost_wait = min(SAVE_COST_FACTOR * self._save_cpu_s, SAVE_WAIT_MAX * self.save_interval_s)
        if periodic and time.monotonic() - self._last_save < max(self.save_interval_s, cost_wait):
            return
        started = _cpu_clock()
        for index in current.indexes.values():
            try:
                index.save_snapshot()
            except Exception:  # noqa: BLE001 - a snapshot is an optimisation
                logger.exception("snapshot of %s/%s failed", index.level, index.model_version)
        self._dirty = False
        self._last_save = time.monotonic()
        self._save_cpu_s = _cpu_clock() - started

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
                if self._failing:
                    logger.warning("index sync recovered")
                    self._failing = False
            except Exception:  # noqa: BLE001 - keep serving, retry next round
                if not self._failing:
                    logger.warning(
                        "index sync failed (retrying every %.1f s)", self.interval_s, exc_info=True
                    )
                    self._failing = True
            self._wake.wait(self.interval_s)
            self._wake.clear()
