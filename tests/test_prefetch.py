"""prefetch: a producer thread a bounded queue ahead of its consumer."""

from __future__ import annotations

import threading

import pytest

from sora_encoder.prefetch import prefetch


def test_items_arrive_in_order():
    assert list(prefetch(lambda: iter(range(10)), depth=2)) == list(range(10))


def test_producer_error_is_raised_in_the_consumer():
    def produce():
        yield 1
        raise ValueError("bad frame")

    it = prefetch(produce)
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad frame"):
        next(it)


def test_consumer_stopping_early_stops_and_joins_the_producer():
    produced = []

    def produce():
        for i in range(1000):
            produced.append(i)
            yield i

    before = threading.active_count()
    it = prefetch(produce, depth=1)
    assert next(it) == 0
    it.close()  # the consumer leaves; the producer must not stay blocked on a full queue
    assert threading.active_count() == before
    assert len(produced) < 10  # bounded: it did not run ahead through the whole source
