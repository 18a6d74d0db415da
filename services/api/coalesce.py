"""Single searches that arrive while another is being computed are answered together.

Under load (many clients, one search a call) each call paid for its own FAISS search and
its own pass of array code over a handful of ids, with dozens of threads taking turns at
the GIL. Here calls are queued by key (items of one key may share a batch: the same
options and serving state), a lane per key: the first call of a lane computes at once
(one client: no wait, a batch of one); calls that arrive meanwhile queue up, and when it
is done the oldest of them leads the lane's next round with everything queued by then,
as one batch. Only the leader of a round runs; the others sleep on their own event, so
no herd wakes for each round. Lanes are independent: a slow key (a filter that needs
more rounds, a video-level batch reading SQL) never holds up another key's calls.

    submit(key, item, call) -> result  `call` (Call): a queued caller whose deadline passes
                                       leaves the queue with DEADLINE_EXCEEDED
    compute(key, items) -> results     (given to the constructor) one result per item, or
                                       raises: every caller of that batch gets the error
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from services.errors import DeadlineExceededError

from .call import Call

MAX_BATCH = 256  # items a round takes (SearchBatch's limit)


class _Slot:
    __slots__ = ("_woken", "error", "item", "lead", "result")

    def __init__(self, item: Any) -> None:
        self.item = item
        # Held from the start, released to wake the one caller waiting on it: a bare lock
        # (what an Event's Condition builds on each wait, for every call under load)
        self._woken = threading.Lock()
        self._woken.acquire()
        self.lead = False  # woken to lead the lane's next round, not with a result
        self.result: Any = None
        self.error: BaseException | None = None

    def wake(self) -> None:
        """Answered, or handed the lead; each slot is woken at most twice, the second time
        (a leader answered by its own round) after its caller took the first wake."""
        self._woken.release()

    def wait(self, timeout: float | None) -> bool:
        """True once woken; False when `timeout` seconds passed first."""
        return self._woken.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))

    def value(self) -> Any:
        if self.error is not None:
            raise _own_copy(self.error)
        return self.result


def _own_copy(error: BaseException) -> BaseException:
    """A copy for one caller: one exception raised in many threads would share (and grow)
    one traceback. The original where the type cannot be copied (an __init__ that its
    args do not fit)."""
    try:
        return copy.copy(error)
    except Exception:  # noqa: BLE001 - the shared one is still the right error
        return error


class _Lane:
    __slots__ = ("busy", "queue")

    def __init__(self) -> None:
        self.queue: list[_Slot] = []
        self.busy = False  # a round is being computed (or the lead handed on)


class Coalescer:
    def __init__(self, compute: Callable[[Hashable, Sequence[Any]], Sequence[Any]],
                 max_batch: int = MAX_BATCH) -> None:  # fmt: skip
        self._compute = compute
        self._max = max_batch
        self._lock = threading.Lock()
        self._lanes: dict[Hashable, _Lane] = {}  # only lanes with a call in them
        self.rounds = 0  # rounds computed, for tests and the bench
        self.items = 0

    def queued(self) -> int:
        """Calls waiting, over every lane (not those of the rounds being computed)."""
        with self._lock:
            return sum(len(lane.queue) for lane in self._lanes.values())

    def submit(self, key: Hashable, item: Any, call: Call | None = None) -> Any:
        slot = _Slot(item)
        with self._lock:
            lane = self._lanes.setdefault(key, _Lane())
            lane.queue.append(slot)
            lead = not lane.busy
            lane.busy = True
        if not lead:
            self._wait(key, lane, slot, call or Call())
            if not slot.lead:
                return slot.value()
        self._round(key, lane)
        return slot.value()

    def _wait(self, key: Hashable, lane: _Lane, slot: _Slot, call: Call) -> None:
        """Until answered or handed the lead. A call whose deadline passes meanwhile
        leaves the queue with DEADLINE_EXCEEDED if its round has not begun (once begun,
        it is answered). One wait until the deadline, not a poll, so that 64 queued
        callers do not wake to look (a poll every 50 ms measured the same, within the
        noise); a client that cancels without a deadline waits for its round (ms)."""
        timeout = call.remaining()
        while not slot.wait(timeout):
            with self._lock:
                # not taken by a round, nor handed the lead (the hand-over may come just as
                # the wait timed out: leaving then would leave the lane with no leader)
                if slot in lane.queue and not slot.lead:
                    lane.queue.remove(slot)
                    call.check()  # raises DeadlineExceededError
                    raise DeadlineExceededError("the call's deadline passed while queued")
            timeout = None  # taken by a round (or the lead is on its way): soon answered

    def _round(self, key: Hashable, lane: _Lane) -> None:
        """Take the lane's queue (up to max_batch), compute it, hand the lead on."""
        with self._lock:
            batch, lane.queue = lane.queue[: self._max], lane.queue[self._max :]
        try:
            results = self._compute(key, [s.item for s in batch])
            for s, r in zip(batch, results, strict=True):
                s.result = r
        except Exception as exc:  # noqa: BLE001 - each caller of the batch raises it
            for s in batch:
                s.error = exc
        finally:  # whatever happened, the callers are answered and the lead handed on
            with self._lock:
                self.rounds += 1
                self.items += len(batch)
                following = lane.queue[0] if lane.queue else None
                if following is None:
                    lane.busy = False
                    del self._lanes[key]  # an idle lane is dropped (keys come and go)
                else:
                    following.lead = True
            for s in batch:
                if s.result is None and s.error is None:
                    s.error = RuntimeError("the batch was not computed")
                s.wake()
            if following is not None:
                following.wake()
