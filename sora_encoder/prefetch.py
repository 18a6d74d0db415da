"""Run a producer in a background thread, a bounded queue ahead of its consumer.

    for item in prefetch(lambda: decode_things(...), depth=2): ...   # consumer side

Used to overlap ffmpeg decoding with model work. The queue is bounded so a fast producer
cannot run ahead and hold a whole long video in memory; an exception in the producer is
raised in the consumer; a consumer that stops early (error, break, close) stops the
producer at its next item and the thread is joined, never left blocked on a full queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(produce: Callable[[], Iterable[T]], *, depth: int = 2, name: str = "prefetch"
             ) -> Iterator[T]:  # fmt: skip
    assert depth >= 1, f"depth must be >= 1, got {depth}"
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in produce():
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # drain so a blocked put() returns and the thread ends
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
