"""A change counter shared by the API processes that serve one port on one host (`sora
serve --api-processes N`): how a delete through one process reaches the others' searches
at once, where their own index keepers would see it only at their next sync.

    DeleteVideo, process A   commit; A's catalogue forgets the video; bump()
    Search, process B        value() moved since B last looked?  catch up from SQL (the
                             tombstones and DELETED status the delete committed) first

So a search that starts after DeleteVideo returned, in any process, does not return the
video (while SQL answers: a catch-up that cannot read it leaves the search to what is
loaded, and is tried again after the sync interval; index_keeper.py).

One 8-byte file under $SORA_HOME, mapped by each process: reading it is one unpack,
nothing per search reaches SQL unless a delete happened. Increments take an flock (two
deletes at once lose neither). Across hosts there is no such signal: a replica
on another host drops a deleted video at its next sync ($SORA_INDEX_SYNC_INTERVAL).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_COUNTER = struct.Struct("<q")


class ChangeSignal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():  # the first process sizes it; later ones find it sized
            if os.fstat(self._fd).st_size < _COUNTER.size:
                os.ftruncate(self._fd, _COUNTER.size)
        self._map = mmap.mmap(self._fd, _COUNTER.size)

    def value(self) -> int:
        """The number of changes signalled so far (by any process)."""
        return _COUNTER.unpack_from(self._map)[0]

    def bump(self) -> None:
        """Signal a change that this process has committed and applied."""
        with self._locked():
            _COUNTER.pack_into(self._map, 0, self.value() + 1)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
