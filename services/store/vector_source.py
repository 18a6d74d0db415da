"""SqlVectorSource: `services.index.source.VectorSource` over the store's tables.

    level "segment" -> segments          level "video" -> video_embeddings
    WHERE model_version = ? AND id > ? ORDER BY id LIMIT batch   (index (model_version, id))
        -> ids (n,) int64, xb (n, d) float32 from the rows' bytes in one copy

Each call (each batch of iter_vectors) is its own short read transaction, so a long
catch-up neither blocks SQLite's writers nor holds a PostgreSQL snapshot open; keyset
paging on id makes the batches consistent regardless. Correctness of the watermarks relies
on rows committing in id order, which the writers guarantee (`db.lock_vector_log`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session, sessionmaker

from .db import READ_ONLY
from .identity import database_id
from .models import Segment, StoreIdentity, VectorLevel, VectorTombstone, VideoEmbedding
from .segments import decode_vectors

if TYPE_CHECKING:
    from .db import Store

Level = Literal["segment", "video"]
LEVELS: tuple[Level, ...] = ("segment", "video")


@dataclass(frozen=True)
class VectorBatch:
    ids: np.ndarray  # (n,) int64, strictly increasing
    xb: np.ndarray  # (n, d) float32, unit norm


@dataclass(frozen=True)
class Tombstones:
    ids: np.ndarray  # (n,) int64 vector ids removed
    last_seq: int  # highest tombstone sequence read (the new tombstone watermark)


_TABLES: dict[str, Table] = {
    VectorLevel.SEGMENT.value: Segment.__table__,  # type: ignore[dict-item]
    VectorLevel.VIDEO.value: VideoEmbedding.__table__,  # type: ignore[dict-item]
}


def _table(level: Level) -> Table:
    try:
        return _TABLES[level]
    except (KeyError, TypeError):
        raise ValueError(f"level {level!r}: expected one of {sorted(_TABLES)}") from None


class SqlVectorSource:
    """The vectors the FAISS index is built from and kept in sync with."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        write_session_factory: sessionmaker[Session] | None = None,
    ) -> None:
        self._session_factory = session_factory
        # identity() inserts the id on first use; defaults to the read factory (PostgreSQL).
        self._write_factory = write_session_factory or session_factory

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._session_factory() as session:
            # A deferred BEGIN on SQLite: readers do not queue behind the write lock.
            session.connection(execution_options=READ_ONLY)
            yield session

    def count(self, level: Level, model_version: str, *, max_id: int | None = None) -> int:
        t = _table(level)
        with self._read() as s:
            stmt = select(func.count()).select_from(t).where(t.c.model_version == model_version)
            if max_id is not None:
                stmt = stmt.where(t.c.id <= max_id)
            return int(s.scalar(stmt) or 0)

    def max_id(self, level: Level, model_version: str) -> int:
        t = _table(level)
        with self._read() as s:
            return int(
                s.scalar(select(func.max(t.c.id)).where(t.c.model_version == model_version)) or 0
            )

    def iter_vectors(
        self, level: Level, model_version: str, *, after_id: int = 0, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        t = _table(level)
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size}: expected >= 1")
        after = int(after_id)
        while True:
            with self._read() as s:
                rows = s.execute(
                    select(t.c.id, t.c.vector)
                    .where(t.c.model_version == model_version, t.c.id > after)
                    .order_by(t.c.id)
                    .limit(batch_size)
                ).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))  # (n,)
            xb = decode_vectors([r[1] for r in rows])  # (n, d)
            yield VectorBatch(ids=ids, xb=xb)
            if len(rows) < batch_size:
                return
            after = int(ids[-1])

    def vectors(self, level: Level, model_version: str, ids: np.ndarray) -> VectorBatch:
        t = _table(level)
        wanted = sorted({int(i) for i in np.asarray(ids).reshape(-1)})
        with self._read() as s:
            rows = s.execute(
                select(t.c.id, t.c.vector)
                .where(t.c.model_version == model_version, t.c.id.in_(wanted))
                .order_by(t.c.id)
            ).all()
        if not rows:
            return VectorBatch(ids=np.zeros(0, np.int64), xb=np.zeros((0, 0), np.float32))
        ids_out = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))  # (n,)
        return VectorBatch(ids=ids_out, xb=decode_vectors([r[1] for r in rows]))  # (n, d)

    def identity(self) -> str:
        with self._session_factory() as s:
            s.connection(execution_options=READ_ONLY)
            found = s.scalar(select(StoreIdentity.database_id).where(StoreIdentity.id == 1))
        if found is not None:
            return found
        with self._write_factory.begin() as s:
            return database_id(s)

    def tombstones(self, level: Level, model_version: str, *, after_seq: int = 0) -> Tombstones:
        _table(level)  # validates level
        t = VectorTombstone.__table__
        with self._read() as s:
            # Bound the read by the log's head taken first: every tombstone up to it is
            # committed (writers commit in seq order), so returning the head as the new
            # watermark skips nothing, even tombstones of other levels / versions.
            head = int(s.scalar(select(func.max(t.c.seq))) or 0)
            if head <= after_seq:  # nothing logged since: the usual idle sync, one statement
                return Tombstones(ids=np.zeros(0, np.int64), last_seq=int(after_seq))
            ids = s.scalars(
                select(t.c.vector_id)
                .where(
                    t.c.level == VectorLevel(level),
                    t.c.model_version == model_version,
                    t.c.seq > after_seq,
                    t.c.seq <= head,
                )
                .order_by(t.c.seq)
            ).all()
        return Tombstones(ids=np.asarray(ids, dtype=np.int64), last_seq=max(head, int(after_seq)))

    def max_tombstone_seq(self) -> int:
        with self._read() as s:
            return int(s.scalar(select(func.max(VectorTombstone.seq))) or 0)


def vector_source(store: Store) -> SqlVectorSource:
    """The vector source over `store`'s database (reads on its read sessions)."""
    return SqlVectorSource(store.ReadSession, store.Session)
