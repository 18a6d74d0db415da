"""The coalescer of single searches (services/api/coalesce.py): a call alone is computed at
once; calls that arrive while a round is computed are answered together in the next one,
by key; an error reaches every caller of its batch and no one else; nothing hangs."""

from __future__ import annotations

import threading
import time

import pytest

from services.api.coalesce import Coalescer

WAIT_S = 30.0  # generous: the tests wait on progress, this only bounds a hang


def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class Recorder:
    """compute: records each batch; the first round waits for `release` (so that others
    queue up behind it); raises for a key in `failing`."""

    def __init__(self, failing: tuple = ()) -> None:
        self.batches: list[tuple] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.failing = failing
        self._first = True

    def __call__(self, key, items):
        if self._first:
            self._first = False
            self.entered.set()
            assert self.release.wait(WAIT_S)
        self.batches.append((key, list(items)))
        if key in self.failing:
            raise ValueError(f"bad key {key}")
        return [(key, item * 10) for item in items]


def _submit_all(c: Coalescer, calls: list[tuple]) -> tuple[list, list[threading.Thread]]:
    answers: list = [None] * len(calls)

    def one(i: int, key, item) -> None:
        try:
            answers[i] = c.submit(key, item)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i, k, x)) for i, (k, x) in enumerate(calls)]
    for t in threads:
        t.start()
    return answers, threads


def test_a_call_alone_is_computed_at_once_as_a_batch_of_one():
    rec = Recorder()
    rec.release.set()
    c = Coalescer(rec)
    assert c.submit("k", 1) == ("k", 10)
    assert c.submit("k", 2) == ("k", 20)
    assert rec.batches == [("k", [1]), ("k", [2])]
    assert (c.rounds, c.items) == (2, 2)


def test_calls_arriving_during_a_round_are_answered_together_by_key():
    rec = Recorder()
    c = Coalescer(rec)
    first, [t0] = _submit_all(c, [("a", 0)])
    assert rec.entered.wait(WAIT_S)  # the first round is being computed
    later = [("a", 1), ("b", 2), ("a", 3), ("b", 4), ("a", 5)]
    answers, threads = _submit_all(c, later)
    _until(lambda: len(c._queue) == len(later), "the later calls to queue up")
    rec.release.set()
    for t in [t0, *threads]:
        t.join(WAIT_S)
    assert first == [("a", 0)]
    assert answers == [(k, x * 10) for k, x in later]
    # one round for the first call, then ONE more for all five: a batch per key
    assert c.rounds == 2
    assert rec.batches[1:] == [("a", [1, 3, 5]), ("b", [2, 4])]


def test_an_error_reaches_every_caller_of_its_batch_and_no_other():
    rec = Recorder(failing=("bad",))
    c = Coalescer(rec)
    first, [t0] = _submit_all(c, [("ok", 0)])
    assert rec.entered.wait(WAIT_S)
    later = [("bad", 1), ("ok", 2), ("bad", 3)]
    answers, threads = _submit_all(c, later)
    _until(lambda: len(c._queue) == len(later), "the later calls to queue up")
    rec.release.set()
    for t in [t0, *threads]:
        t.join(WAIT_S)
    assert first == [("ok", 0)]
    assert isinstance(answers[0], ValueError) and isinstance(answers[2], ValueError)
    assert answers[1] == ("ok", 20)
    assert c.submit("ok", 7) == ("ok", 70)  # the coalescer goes on: no one holds the lead


def test_a_long_queue_is_taken_max_batch_at_a_time_and_everyone_is_answered():
    rec = Recorder()
    c = Coalescer(rec, max_batch=2)
    _, [t0] = _submit_all(c, [("k", 0)])
    assert rec.entered.wait(WAIT_S)
    later = [("k", i) for i in range(1, 6)]
    answers, threads = _submit_all(c, later)
    _until(lambda: len(c._queue) == len(later), "the later calls to queue up")
    rec.release.set()
    for t in [t0, *threads]:
        t.join(WAIT_S)
        assert not t.is_alive()
    assert answers == [("k", x * 10) for _, x in later]
    assert [len(items) for _, items in rec.batches] == [1, 2, 2, 1]


@pytest.mark.parametrize("callers", [8, 64])
def test_many_callers_at_once_never_hang_and_get_their_own_answers(callers):
    c = Coalescer(lambda key, items: [(key, item) for item in items])
    answers, threads = _submit_all(c, [(i % 3, i) for i in range(callers * 20)])
    for t in threads:
        t.join(WAIT_S)
        assert not t.is_alive()
    assert answers == [(i % 3, i) for i in range(callers * 20)]
    assert c.items == callers * 20
