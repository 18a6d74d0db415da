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
