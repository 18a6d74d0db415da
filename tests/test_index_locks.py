"""The index's readers-writer lock: readers together, a writer alone, a waiting writer
ahead of new readers, and the last reader out lets a waiting writer in."""

from __future__ import annotations

import threading
import time

from services.index.locks import RWLock

TIMEOUT = 10.0


def until(predicate, timeout: float = TIMEOUT) -> None:
    """Wait for another thread's progress (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.001)


def test_readers_hold_the_lock_together() -> None:
    rw = RWLock()
    inside = threading.Barrier(3, timeout=TIMEOUT)  # all three readers in at once

    def reader() -> None:
        with rw.read():
            inside.wait()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not inside.broken and all(not t.is_alive() for t in threads)


def test_a_writer_waits_for_the_last_reader_and_then_gets_in() -> None:
    rw = RWLock()
    written = threading.Event()
    first, second = rw.read(), rw.read()
    first.__enter__()
    second.__enter__()

    def writer() -> None:
        with rw.write():
            written.set()

    t = threading.Thread(target=writer)
    t.start()
    until(lambda: rw._writers_waiting == 1)
    first.__exit__(None, None, None)
    assert not written.wait(0.05)  # one reader still in
    second.__exit__(None, None, None)  # the last reader out wakes the writer
    assert written.wait(TIMEOUT)
    t.join(TIMEOUT)


def test_a_waiting_writer_goes_before_new_readers() -> None:
    rw = RWLock()
    order: list[str] = []
    held = rw.read()
    held.__enter__()

    def writer() -> None:
        with rw.write():
            order.append("writer")

    def reader() -> None:
        with rw.read():
            order.append("reader")

    w = threading.Thread(target=writer)
    w.start()
    until(lambda: rw._writers_waiting == 1)
    r = threading.Thread(target=reader)
    r.start()
    until(lambda: len(rw._cond._waiters) == 2)  # the reader waits too, behind the writer
    assert not order
    held.__exit__(None, None, None)
    w.join(TIMEOUT)
    r.join(TIMEOUT)
    assert order == ["writer", "reader"]


def test_a_reader_that_raises_lets_go() -> None:
    rw = RWLock()
    try:
        with rw.read():
            raise ValueError("in the search")
    except ValueError:
        pass
    with rw.write():  # would wait forever for a reader still counted
        assert rw._readers == 0


class _Interrupted(Exception):
    pass


def test_a_writer_interrupted_while_waiting_lets_the_readers_queued_behind_it_in() -> None:
    """A writer whose wait is interrupted (a signal, Ctrl-C) stops holding back the
    readers that queued behind it; they need not wait for the readers already in."""
    import signal

    rw = RWLock()
    held = rw.read()
    held.__enter__()  # a reader in for the whole test
    entered = threading.Event()

    def queued_reader() -> None:
        until(lambda: rw._writers_waiting == 1)
        with rw.read():
            entered.set()

    def interrupt(signum, frame) -> None:
        if len(rw._cond._waiters) < 2:  # the reader has not queued behind the writer yet
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            return
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    r = threading.Thread(target=queued_reader)
    r.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        try:
            with rw.write():
                raise AssertionError("the writer got in while a reader held the lock")
        except _Interrupted:
            pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert entered.wait(TIMEOUT)  # in beside the first reader, which still holds it
    held.__exit__(None, None, None)
    r.join(TIMEOUT)
    with rw.write():  # and nothing is left counted
        assert rw._readers == 0 and rw._writers_waiting == 0
