"""Where ids sit in a strictly increasing id array (the catalogue's places, the fast-scan
index's held rows): by a table indexed by id - first id while the ids are dense, as SQL
ids are (one int64 an id), else by searchsorted.

Why: a search looks up every id FAISS returned, and binary search into 10^6 ids misses
the cache at each step: in a 256-query packed batch, searchsorted took a third of the
server's time in the index and a tenth in the catalogue; the table's gather a few percent.
"""

from __future__ import annotations

import numpy as np

MAX_SPAN = 4  # a table while last - first + 1 <= MAX_SPAN x count, else searchsorted
ROOM = 1.5  # a table's buffer holds this many times its span (ids to come, extended())


class IdPositions:
    """Positions of ids in `ids` (strictly increasing; not copied: the caller replaces,
    never changes, an array it has looked up with; `ids is` tells which one this is for)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._first = int(ids[0]) if len(ids) else 0
        span = int(ids[-1]) - self._first + 1 if len(ids) else 0
        # The table is a view of a buffer with room for ids to come (ROOM), which
        # extended() fills: readers of this table never look past its span.
        self._room: np.ndarray | None = None
        self._table: np.ndarray | None = None
        self._extended = False  # extended once: its room is the extension's now
        if 0 < span <= MAX_SPAN * len(ids):
            # int64 (8 MB a million ids): positions come out in the dtype callers index
            # and compute with, no conversion per search
            self._room = np.full(int(span * ROOM), -1, np.int64)
            self._room[ids - self._first] = np.arange(len(ids), dtype=np.int64)
            self._table = self._room[:span]

    def extended(self, ids: np.ndarray) -> IdPositions:
        """Positions for `ids`, which are this one's ids followed by greater ones (the
        caller appended them: an ingest's sync). The new ids' positions are written into
        the table's room, past the span that this one reads, so it stays valid for
        searches holding it: O(new ids), where making the table again cost ~9 ms of CPU a
        million ids (GIL held) at the first search after each sync. A new IdPositions
        where there is no table, no room, or this one was extended already."""
        n = len(self.ids)
        ok = (
            self._room is not None
            and not self._extended
            and 0 < n <= len(ids)
            and int(ids[n - 1]) == int(self.ids[-1])
            and int(ids[0]) == self._first
        )
        span = int(ids[-1]) - self._first + 1 if len(ids) else 0
        if not ok or span > len(self._room) or span > MAX_SPAN * len(ids):  # type: ignore[arg-type]
            return IdPositions(ids)
        assert self._room is not None
        self._extended = True
        self._room[ids[n:] - self._first] = np.arange(n, len(ids), dtype=np.int64)
        out = IdPositions.__new__(IdPositions)
        out.ids, out._first, out._room, out._extended = ids, self._first, self._room, False
        out._table = self._room[:span]
        return out

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found) for ids (any shape): positions are valid indexes into the
        array wherever found (clipped elsewhere)."""
        n = len(self.ids)
        if n == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        if self._table is not None:
            at = np.asarray(ids, dtype=np.int64) - self._first
            # Few array calls, each a few microseconds on a cold cache at a search's sizes:
            # one unsigned comparison tests both ends (a negative offset wraps past the
            # table), and take(mode="clip") reads an edge entry for an outside id, which
            # `inside` then refuses.
            inside = at.view(np.uint64) < len(self._table)
            pos = self._table.take(at, mode="clip")
            found = inside & (pos >= 0)
            return np.where(found, pos, 0), found
        pos = np.minimum(np.searchsorted(self.ids, ids), n - 1)
        return pos, self.ids[pos] == ids


def positions_for(cached: IdPositions | None, ids: np.ndarray) -> IdPositions:
    """`cached` when it was made for this very array, else a new one."""
    return cached if cached is not None and cached.ids is ids else IdPositions(ids)
