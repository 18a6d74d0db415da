"""Single searches that arrive while another is being computed are answered together.

Under load (many clients, one search a call) each call paid for its own FAISS search and
its own pass of array code over a handful of ids, with dozens of threads taking turns at
the GIL. Here the first call to arrive computes at once (one client: no wait, a batch of
one); calls that arrive meanwhile queue up, and when it is done the oldest of them leads
the next round with everything queued by then, as one batch (packed.run_packed: one FAISS
search, array code over the whole batch). Only the leader of a round runs; the others
sleep on their own event, so no herd wakes for each round.

    submit(key, item) -> result     key: items of equal keys may share a batch
    compute(key, items) -> results  (given to the constructor) one result per item, or
                                    raises: every item of that batch gets the error
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

MAX_BATCH = 256  # items a round takes (SearchBatch's limit)


class _Slot:
    __slots__ = ("done", "error", "key", "item", "lead", "result")

    def __init__(self, key: Hashable, item: Any) -> None:
        self.key, self.item = key, item
        self.done = threading.Event()
        self.lead = False  # woken to lead the next round, not with a result
        self.result: Any = None
        self.error: BaseException | None = None

    def value(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class Coalescer:
    def __init__(self, compute: Callable[[Hashable, Sequence[Any]], Sequence[Any]],
                 max_batch: int = MAX_BATCH) -> None:  # fmt: skip
        self._compute = compute
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot] = []
        self._busy = False  # a round is being computed (or handed on)
        self.rounds = 0  # rounds computed, for tests and the bench
        self.items = 0

    def submit(self, key: Hashable, item: Any) -> Any:
        slot = _Slot(key, item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return slot.value()
        self._round()
        return slot.value()

    def _round(self) -> None:
        """Take the queue (up to max_batch), compute it by key, hand the lead on."""
        with self._lock:
            batch, self._queue = self._queue[: self._max], self._queue[self._max :]
        try:
            groups: dict[Hashable, list[_Slot]] = {}
            for s in batch:
                groups.setdefault(s.key, []).append(s)
            for key, slots in groups.items():
                try:
                    results = self._compute(key, [s.item for s in slots])
                    for s, r in zip(slots, results, strict=True):
                        s.result = r
                except Exception as exc:  # noqa: BLE001 - each caller of the batch raises it
                    for s in slots:
                        s.error = exc
        finally:  # whatever happened, the callers are answered and the lead handed on
            with self._lock:
                self.rounds += 1
                self.items += len(batch)
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._busy = False
                else:
                    following.lead = True
            for s in batch:
                if s.result is None and s.error is None:
                    s.error = RuntimeError("the batch was not computed")
                s.done.set()
            if following is not None:
                following.done.set()
