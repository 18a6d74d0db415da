"""IdPositions: ids -> positions in a sorted id array, by table or by searchsorted."""

from __future__ import annotations

import numpy as np
import pytest

from services.index.id_positions import IdPositions, positions_for


@pytest.mark.parametrize("step", [1, 3, 50])  # dense (a table) and sparse (searchsorted)
def test_positions_and_misses_match_a_dict(step):
    rng = np.random.default_rng(step)
    ids = np.arange(100, 100 + 3_000 * step, step, dtype=np.int64)
    ids = ids[rng.random(len(ids)) > 0.1]  # some deleted
    where = {int(i): p for p, i in enumerate(ids)}
    p = IdPositions(ids)
    assert (p._table is not None) == (step <= 3)
    asked = np.concatenate([ids[::7], [-1, 0, 99, int(ids[-1]) + 1, 10**12],
                            rng.integers(0, 100 + 3_000 * step, size=500)])  # fmt: skip
    pos, found = p.find(asked.reshape(-1, 2) if len(asked) % 2 == 0 else asked)
    pos, found = pos.reshape(-1), found.reshape(-1)
    for a, q, f in zip(asked.tolist(), pos.tolist(), found.tolist(), strict=True):
        assert f == (a in where), a
        if f:
            assert q == where[a]
        assert 0 <= q < len(ids)  # always a valid index, found or not


def test_empty_and_identity_reuse():
    empty = IdPositions(np.zeros(0, np.int64))
    pos, found = empty.find(np.array([1, 2]))
    assert not found.any()
    ids = np.arange(10, 20, dtype=np.int64)
    p = positions_for(None, ids)
    assert positions_for(p, ids) is p
    assert positions_for(p, ids.copy()) is not p  # another array: made again


def _check(p: IdPositions, ids: np.ndarray, asked: np.ndarray) -> None:
    """p answers `asked` as a dict of `ids` does."""
    where = {int(i): k for k, i in enumerate(ids)}
    pos, found = p.find(asked)
    for a, q, f in zip(asked.tolist(), pos.tolist(), found.tolist(), strict=True):
        assert f == (a in where), a
        if f:
            assert q == where[a]


def test_extended_finds_the_appended_ids_and_leaves_the_old_table_as_it_was():
    ids = np.arange(100, 1_100, dtype=np.int64)[::2]  # dense enough for a table
    old = IdPositions(ids)
    more = np.concatenate([ids, np.arange(1_100, 1_300, 3, dtype=np.int64)])
    new = old.extended(more)
    assert new._room is old._room  # filled in place, no table made again
    asked = np.arange(90, 1_320, dtype=np.int64)
    _check(new, more, asked)
    _check(old, ids, asked)  # a search holding the old one: its ids only, as before
    # a second extension of the same one would write where the first did: a new table
    again = old.extended(np.concatenate([ids, [1_150]]))
    assert again._room is not old._room
    _check(again, np.concatenate([ids, [1_150]]), asked)
    _check(new, more, asked)
    # the extension extends in turn, until its room is full (then a table of its own)
    longer = np.concatenate([more, np.arange(1_300, 1_310, dtype=np.int64)])
    third = new.extended(longer)
    assert third._room is old._room
    _check(third, longer, asked)
    far = np.concatenate([longer, [1_310 + 10_000]])  # past the room (and too sparse)
    beyond = third.extended(far)
    assert beyond._room is not old._room
    _check(beyond, far, np.concatenate([asked, [11_310, 11_311]]))


def test_extended_of_a_searchsorted_one_or_an_empty_one_is_a_new_one():
    sparse = np.arange(0, 50_000, 50, dtype=np.int64)
    p = IdPositions(sparse)
    assert p._table is None
    more = np.concatenate([sparse, [60_000]])
    q = p.extended(more)
    _check(q, more, np.array([0, 50, 51, 60_000, 60_001]))
    e = IdPositions(np.zeros(0, np.int64)).extended(np.array([5, 6], dtype=np.int64))
    _check(e, np.array([5, 6]), np.array([4, 5, 6, 7]))
