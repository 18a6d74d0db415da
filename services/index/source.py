"""The contract between the SQL store (the truth) and the FAISS index (a cache of it):
what the index needs of a store, as a Protocol (`services.store.SqlVectorSource` is the
SQL one, tests/memory_vector_source.py an in-memory one). The data it passes (Level,
VectorBatch, Tombstones) is the store's, so the store never imports the index.

Each searchable vector is one SQL row: a segment (`segments.id`) or a video's mean vector
(`video_embeddings.id`). Its FAISS id IS that row id. Rows only ever get larger ids, so
an index catches up with "rows above my watermark"; deletions are appended to a tombstone
log with its own increasing sequence, so an index catches up with "tombstones above my
tombstone watermark". Vectors of different model versions never share an index.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from services.store import Level, Tombstones, VectorBatch


class VectorSource(Protocol):
    """What the index needs from the store. Implemented over SQL by services.store."""

    def count(self, level: Level, model_version: str, *, max_id: int | None = None) -> int:
        """Live vectors of this level and model version (with id <= max_id when given: an
        index compares itself with the rows up to its watermark, so rows committed after
        its catch-up do not read as a misalignment)."""
        ...

    def max_id(self, level: Level, model_version: str) -> int:
        """Highest live vector id (0 when none)."""
        ...

    def iter_vectors(
        self, level: Level, model_version: str, *, after_id: int = 0, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        """Live vectors with id > after_id, in id order, in batches."""
        ...

    def vectors(self, level: Level, model_version: str, ids: np.ndarray) -> VectorBatch:
        """The live rows among `ids`, in id order (absent ids are left out)."""
        ...

    def identity(self) -> str:
        """A stable id of the store (the database), different for every other store: index
        snapshots record it and are not served over another store."""
        ...

    def tombstones(self, level: Level, model_version: str, *, after_seq: int = 0) -> Tombstones:
        """Vector ids deleted after tombstone sequence `after_seq`."""
        ...

    def max_tombstone_seq(self) -> int:
        """Highest tombstone sequence (0 when none): a fresh index starts from here."""
        ...
