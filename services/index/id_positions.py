"""Where ids sit in a strictly increasing id array (the catalogue's places, the fast-scan
index's held rows): by a table indexed by id - first id while the ids are dense, as SQL
ids are (one int32 an id), else by searchsorted.

Why: a search looks up every id FAISS returned, and binary search into 10^6 ids misses
the cache at each step: in a 256-query packed batch, searchsorted took a third of the
server's time in the index and a tenth in the catalogue; the table's gather a few percent.
"""

from __future__ import annotations

import numpy as np

MAX_SPAN = 4  # a table while last - first + 1 <= MAX_SPAN x count, else searchsorted


class IdPositions:
    """Positions of ids in `ids` (strictly increasing; not copied: the caller replaces,
    never changes, an array it has looked up with; `ids is` tells which one this is for)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._first = int(ids[0]) if len(ids) else 0
        span = int(ids[-1]) - self._first + 1 if len(ids) else 0
        self._table: np.ndarray | None = None
        if 0 < span <= MAX_SPAN * len(ids) and len(ids) < 2**31:
            self._table = np.full(span, -1, np.int32)
            self._table[ids - self._first] = np.arange(len(ids), dtype=np.int32)

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found) for ids (any shape): positions are valid indexes into the
        array wherever found (clipped elsewhere)."""
        n = len(self.ids)
        if n == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        if self._table is not None:
            at = ids - self._first
            inside = (at >= 0) & (at < len(self._table))
            pos = self._table[np.where(inside, at, 0)].astype(np.int64)
            found = inside & (pos >= 0)
            return np.where(found, pos, 0), found
        pos = np.minimum(np.searchsorted(self.ids, ids), n - 1)
        return pos, self.ids[pos] == ids


def positions_for(cached: IdPositions | None, ids: np.ndarray) -> IdPositions:
    """`cached` when it was made for this very array, else a new one."""
    return cached if cached is not None and cached.ids is ids else IdPositions(ids)
