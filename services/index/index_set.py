"""The searchable indexes of one model version: a VectorIndex per level, kept in sync with
SQL and snapshotted under the settings' snapshot folder. The API holds one IndexSet, with
its catalogue (services.index.catalogue: the servable videos, kept current by the same
sync); the CLI uses it, without one, to bring the index up to date after an ingest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from services.store import LEVELS, Level, Store, VectorLevel, vector_source
from services.store.segments import stored_dim

from .catalogue import Catalogue, sync_catalogue
from .vector_index import VectorIndex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LevelStatus:
    level: Level
    ntotal: int  # vectors in the index
    sql_count: int | None  # live vectors in SQL (None: not counted, see sync(count=))
    added: int
    removed: int


class IndexSet:
    def __init__(
        self,
        store: Store,
        model_version: str,
        snapshot_dir: Path,
        *,
        catalogue: bool = False,
        recount_idle_s: float = 0.0,
        writes_snapshots: bool = True,
    ) -> None:
        self.store = store
        self.writes_snapshots = writes_snapshots  # see VectorIndex
        self.model_version = model_version
        self.snapshot_dir = Path(snapshot_dir)
        self.recount_idle_s = recount_idle_s  # see VectorIndex
        self.indexes: dict[Level, VectorIndex] = {}
        # the servable videos, synced after the indexes (a search that meets a vector id
        # the catalogue does not know yet leaves it out, as one not yet READY)
        self.catalogue: Catalogue | None = Catalogue(model_version) if catalogue else None

    def _open(self, level: Level) -> VectorIndex | None:
        if level in self.indexes:
            return self.indexes[level]
        with self.store.ReadSession.begin() as s:
            dim = stored_dim(s, VectorLevel(level), self.model_version)
        if dim is None:
            return None  # no vectors of this version yet: nothing to search
        index = VectorIndex(
            level, self.model_version, dim, self.snapshot_dir, vector_source(self.store),
            recount_idle_s=self.recount_idle_s, writes_snapshots=self.writes_snapshots,
        )  # fmt: skip
        report = index.load_or_build()
        logger.info("index %s/%s: %s", level, self.model_version, report)
        self.indexes[level] = index
        return index

    def sync(self, *, save: bool = True, count: bool = True) -> list[LevelStatus]:
        """Catch every level up with SQL (opening it first if needed), then snapshot.
        count=False leaves sql_count None: a count of every live row (0.12 s of CPU a
        level at 10^6 on SQLite) only to report it; the API's keeper, syncing every
        second, skips it (VectorIndex.sync checks alignment on its own schedule)."""
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        out = []
        source = vector_source(self.store)
        for level in LEVELS:
            index = self._open(level)
            if index is None:
                continue
            result = index.sync()
            if save:
                index.save_snapshot()
            out.append(
                LevelStatus(
                    level,
                    index.ntotal,
                    source.count(level, self.model_version) if count else None,
                    result.added,
                    result.removed,
                )
            )
        if self.catalogue is not None:
            sync_catalogue(self.catalogue, self.store)
        return out
