"""A readers-writer lock: many concurrent searches, or one mutation (add, remove, swap).

Writer-preferring: once a writer waits, new readers queue behind it, so a stream of
searches cannot starve a sync.

    with lock.read(): ...    a search (many at once)
    with lock.write(): ...   a mutation (alone)

read() is on every search's path, so it is a reused object with __enter__/__exit__ on
the bare lock (not a generator context manager over the Condition's), and the last
reader out wakes waiters only when a writer waits: a third of the cost, measured.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class RWLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._reading = _Reading(self)

    def read(self) -> _Reading:
        return self._reading

    def _acquire_read(self) -> None:
        with self._lock:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def _release_read(self) -> None:
        with self._lock:
            self._readers -= 1
            # readers wait only for a writer, which wakes them when it is done
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: readers queued behind it go
                self._writers_waiting -= 1
                self._cond.notify_all()
                raise
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Reading:
    """`with rw.read():` (one object per lock, reused: it holds no state of its own)."""

    __slots__ = ("_rw",)

    def __init__(self, rw: RWLock) -> None:
        self._rw = rw

    def __enter__(self) -> None:
        self._rw._acquire_read()

    def __exit__(self, *exc: Any) -> None:
        self._rw._release_read()
