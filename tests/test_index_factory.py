"""choose_index / rebuild_reason: pure rules, checked against a table of cases."""

from __future__ import annotations

import pytest

from services.index.factory import (
    DEFAULT_EXACT_THRESHOLD,
    IndexChoice,
    choose_index,
    choose_nlist,
    rebuild_reason,
)

GiB, MiB = 2**30, 2**20


@pytest.mark.parametrize(
    ("n", "dim", "budget", "threshold", "factory", "nlist"),
    [
        (0, 256, 4 * GiB, DEFAULT_EXACT_THRESHOLD, "IDMap2,Flat", 0),
        (1_000, 256, 4 * GiB, DEFAULT_EXACT_THRESHOLD, "IDMap2,Flat", 0),
        (50_000, 256, 4 * GiB, DEFAULT_EXACT_THRESHOLD, "IDMap2,Flat", 0),
        (50_001, 256, 4 * GiB, DEFAULT_EXACT_THRESHOLD, "IVF256,PQ128x4fs,RFlat", 256),
        (200_000, 256, 4 * GiB, DEFAULT_EXACT_THRESHOLD, "IVF512,PQ128x4fs,RFlat", 512),
        (1_000_000, 256, 4 * GiB, DEFAULT_EXACT_THRESHOLD, "IVF1024,PQ128x4fs,RFlat", 1024),
        # an odd dimension, which 2-d fast-scan codes do not divide: full vectors in the lists
        (1_000_000, 255, 4 * GiB, DEFAULT_EXACT_THRESHOLD, "IVF4096,Flat", 4096),
        # n*d*4 = 1 GB over a 512 MiB budget: 8-bit scalar codes (264 MB) fit
        (1_000_000, 256, 512 * MiB, DEFAULT_EXACT_THRESHOLD, "IVF4096,SQ8", 4096),
        # 64 MiB: PQ64 needs 1e6 x (64 + 8 id) = 72 MB; 48 does not divide 256; PQ32 fits
        (1_000_000, 256, 64 * MiB, DEFAULT_EXACT_THRESHOLD, "IVF4096,PQ32x8", 4096),
        (10_000_000, 768, 8 * GiB, DEFAULT_EXACT_THRESHOLD, "IVF16384,SQ8", 16384),
        (100_000, 128, 4 * GiB, 200_000, "IDMap2,Flat", 0),
        # threshold 0: IVF as soon as >= 16 lists can get 39 training points each
        (1_000, 64, 4 * GiB, 0, "IVF16,PQ32x4fs,RFlat", 16),
        (500, 64, 4 * GiB, 0, "IDMap2,Flat", 0),
        # an exact index ignores the budget: its size is bounded by the threshold
        (10_000, 256, 1 * MiB, DEFAULT_EXACT_THRESHOLD, "IDMap2,Flat", 0),
    ],
)
def test_choose_index_table(n, dim, budget, threshold, factory, nlist):
    choice = choose_index(n, dim, budget, exact_threshold=threshold)
    assert choice.factory == factory
    assert choice.nlist == nlist
    assert choice.exact == (nlist == 0)
    if choice.exact:
        assert (choice.nprobe, choice.train_size) == (0, 0)
    else:
        assert choice.bytes_estimate <= budget
        assert 1 <= choice.nprobe <= choice.nlist
        # autofaiss: 30..256 training points per list, never more than there are vectors
        assert min(n, 39 * nlist) <= choice.train_size <= min(n, 256 * nlist)


@pytest.mark.parametrize("n", [60_000, 123_456, 1_000_000, 5_000_000, 10**8])
def test_nlist_between_4_and_16_sqrt_n_or_capped(n):
    nlist = choose_nlist(n)
    assert nlist & (nlist - 1) == 0  # a power of two
    assert 2 * n**0.5 <= nlist <= 16 * n**0.5 or nlist == 65_536


def test_nlist_capped_by_training_points():
    assert choose_nlist(1_000) == 16  # 4*sqrt(1000) ~ 126, but 1000 // 39 = 25 -> 16
    assert choose_nlist(38) == 0


def test_choose_index_budget_too_small_raises():
    with pytest.raises(ValueError, match="too small"):
        choose_index(1_000_000, 256, 4 * MiB)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, 256, GiB), ValueError),
        ((10, 0, GiB), ValueError),
        ((10, 256, 0), ValueError),
        ((10.5, 256, GiB), TypeError),
        (("10", 256, GiB), TypeError),
    ],
)
def test_choose_index_bad_arguments_raise(args, error):
    with pytest.raises(error):
        choose_index(*args)


EXACT = IndexChoice("IDMap2,Flat", "exact", 0, 0, 0, 0)
IVF1024 = IndexChoice("IVF1024,Flat", "ivf_flat", 32, 1024, 51200, 0)
FS256 = IndexChoice("IVF256,PQ128x4fs,RFlat", "ivf_fastscan", 4, 256, 12800, 0)


@pytest.mark.parametrize(
    ("current", "n", "budget", "want"),
    [
        (EXACT, 10_000, 4 * GiB, None),
        (EXACT, 50_001, 4 * GiB, "exact threshold"),
        (FS256, 60_000, 4 * GiB, None),
        (FS256, 40_000, 4 * GiB, None),  # under the threshold, above half: keep (hysteresis)
        (FS256, 20_000, 4 * GiB, "half the exact threshold"),
        (FS256, 500_000, 4 * GiB, None),  # wants sqrt(5e5)=707 -> 512 lists: < 4x
        (FS256, 1_000_000, 4 * GiB, "1024 lists"),
        (FS256, 60_000, 10 * MiB, "IVF1024,PQ64x8, not IVF256"),  # full vectors do not fit
        # an IVF,Flat of an older build is rebuilt as fast-scan codes
        (IVF1024, 60_000, 4 * GiB, "IVF256,PQ128x4fs,RFlat, not IVF1024,Flat"),
    ],
)
def test_rebuild_reason_table(current, n, budget, want):
    reason = rebuild_reason(current, n, 256, budget)
    if want is None:
        assert reason is None
    else:
        assert reason is not None and want in reason
