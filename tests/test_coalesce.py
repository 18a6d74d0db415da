"""The coalescer of single searches (services/api/coalesce.py): a call alone is computed at
once; calls that arrive while a round is computed are answered together in the next one;
keys do not wait on each other; an error reaches every caller of its batch; a queued call
whose deadline passes leaves the queue; nothing hangs."""

from __future__ import annotations

import threading
import time

import pytest

from services.api.call import Call
from services.api.coalesce import Coalescer
from services.errors import DeadlineExceededError

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


def _behind_a_held_round(c: Coalescer, rec: Recorder, first: tuple, later: list[tuple]):
    """`first` submitted and its round held; `later` submitted and queued behind it; the
    round released and everyone answered -> (first's answer, later's answers)."""
    head, [t0] = _submit_all(c, [first])
    assert rec.entered.wait(WAIT_S)  # the first round is being computed
    answers, threads = _submit_all(c, later)
    _until(lambda: c.queued() == len(later), "the later calls to queue up")
    rec.release.set()
    for t in [t0, *threads]:
        t.join(WAIT_S)
        assert not t.is_alive()
    return head[0], answers


def test_a_call_alone_is_computed_at_once_as_a_batch_of_one():
    rec = Recorder()
    rec.release.set()
    c = Coalescer(rec)
    assert c.submit("k", 1) == ("k", 10)
    assert c.submit("k", 2) == ("k", 20)
    assert rec.batches == [("k", [1]), ("k", [2])]
    assert (c.rounds, c.items) == (2, 2)


def test_calls_arriving_during_a_round_are_answered_together_in_one_batch():
    rec = Recorder()
    c = Coalescer(rec)
    later = [("a", i) for i in range(1, 6)]
    first, answers = _behind_a_held_round(c, rec, ("a", 0), later)
    assert first == ("a", 0)
    assert answers == [("a", x * 10) for _, x in later]
    # one round for the first call, then ONE more for all five
    assert c.rounds == 2
    assert rec.batches == [("a", [0]), ("a", [1, 2, 3, 4, 5])]


def test_a_slow_key_does_not_hold_up_the_calls_of_another():
    rec = Recorder()
    c = Coalescer(rec)
    first, [t0] = _submit_all(c, [("slow", 0)])
    assert rec.entered.wait(WAIT_S)  # "slow"'s round is held
    assert c.submit("other", 1) == ("other", 10)  # answered meanwhile, in its own lane
    rec.release.set()
    t0.join(WAIT_S)
    assert first == [("slow", 0)]


def test_an_error_reaches_every_caller_of_its_batch_each_its_own_copy():
    rec = Recorder(failing=("bad",))
    c = Coalescer(rec)
    first, answers = _behind_a_held_round(c, rec, ("bad", 0), [("bad", 1), ("bad", 2)])
    assert isinstance(first, ValueError)
    assert all(isinstance(a, ValueError) and "bad key" in str(a) for a in answers)
    assert answers[0] is not answers[1]  # raised in two threads: not one shared object
    assert c.submit("ok", 7) == ("ok", 70)  # the coalescer goes on: no one holds a lead


def test_a_queued_call_whose_deadline_passes_leaves_the_queue_with_that_error():
    rec = Recorder()
    c = Coalescer(rec)
    first, [t0] = _submit_all(c, [("k", 0)])
    assert rec.entered.wait(WAIT_S)
    deadline = time.monotonic() + 0.3  # passes while the round ahead is still held
    errors: list = []

    def queued() -> None:
        try:
            c.submit("k", 1, Call(time_remaining=lambda: deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    t1 = threading.Thread(target=queued)
    t1.start()
    t1.join(WAIT_S)
    assert not t1.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DeadlineExceededError)
    assert c.queued() == 0  # it left the queue: no round computes it
    rec.release.set()
    t0.join(WAIT_S)
    assert first == [("k", 0)] and rec.batches == [("k", [0])]
    assert c.submit("k", 2) == ("k", 20)


def test_a_call_handed_the_lead_as_its_deadline_passes_still_leads(monkeypatch):
    """The race of a queued call's timed-out wait with the hand-over of the lead to it:
    leaving the queue then would leave the lane with no leader, and the calls queued
    behind it would wait forever. Made certain here: the call's wait reports a timeout
    only once the lead has reached it."""
    from services.api import coalesce

    real_wait = coalesce._Slot.wait
    late = []

    def wait(slot, timeout):
        if slot.item != 1 or late:  # only the first wait of the call with the deadline
            return real_wait(slot, timeout)
        assert real_wait(slot, None)  # the lead arrives ...
        late.append(slot.lead)
        slot.wake()  # (still to be taken, as when the timeout fired first)
        return False  # ... just as its deadline passed

    monkeypatch.setattr(coalesce._Slot, "wait", wait)
    rec = Recorder()
    c = Coalescer(rec)
    first, [t0] = _submit_all(c, [("k", 0)])
    assert rec.entered.wait(WAIT_S)
    expired = Call(time_remaining=lambda: 0.0)
    answers: list = [None, None]
    t1 = threading.Thread(
        target=lambda: answers.__setitem__(0, c.submit("k", 1, expired)), daemon=True
    )
    t1.start()
    _until(lambda: c.queued() == 1, "the call with the deadline to queue")
    t2 = threading.Thread(target=lambda: answers.__setitem__(1, c.submit("k", 2)), daemon=True)
    t2.start()
    _until(lambda: c.queued() == 2, "a second call to queue behind it")
    rec.release.set()
    for t in (t0, t1, t2):
        t.join(WAIT_S)
        assert not t.is_alive()  # nobody left waiting for a leader
    assert late == [True] and answers == [("k", 10), ("k", 20)]
    assert rec.batches == [("k", [0]), ("k", [1, 2])]


def test_a_long_queue_is_taken_max_batch_at_a_time_and_everyone_is_answered():
    rec = Recorder()
    c = Coalescer(rec, max_batch=2)
    later = [("k", i) for i in range(1, 6)]
    _, answers = _behind_a_held_round(c, rec, ("k", 0), later)
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
