"""align / align_many: known copies found at the right offsets, checked against a plain DP."""

from __future__ import annotations

import time

import numpy as np
import pytest

from services.search.alignment import Alignment, align, align_many

D = 256


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def random_unit(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    return unit(rng.standard_normal((n, d)))


def noisy(rng: np.random.Generator, x: np.ndarray, cos: float = 0.9) -> np.ndarray:
    """Unit rows at cosine ~`cos` to x's rows (noise orthogonal in expectation)."""
    noise = random_unit(rng, len(x), x.shape[1])
    return unit(cos * x + np.sqrt(1 - cos**2) * noise)


def check_path(a: Alignment) -> None:
    assert a.length == len(a.path) >= 1
    steps = np.diff(np.array(a.path), axis=0)  # (length-1, 2)
    assert ((steps == [1, 1]) | (steps == [0, 1]) | (steps == [1, 0])).all(axis=1).all()
    assert a.query_range == (a.path[0][0], a.path[-1][0])
    assert a.target_range == (a.path[0][1], a.path[-1][1])


def objective(a: Alignment, S: np.ndarray, threshold: float, gap: float) -> float:
    """The documented objective, recomputed from the path: cells after a non-diagonal step
    count half their gain and cost `gap`."""
    idx = np.array(a.path)
    gains = S[idx[:, 0], idx[:, 1]] - threshold
    side = np.concatenate([[False], np.diff(idx, axis=0).sum(axis=1) == 1])
    return float(np.where(side, 0.5 * gains - gap, gains).sum())


def test_query_inserted_at_an_offset():
    rng = np.random.default_rng(0)
    Q = random_unit(rng, 8)
    T = random_unit(rng, 60)
    T[20:28] = noisy(rng, Q, cos=0.85)
    a = align(Q, T)
    assert a is not None
    check_path(a)
    assert a.query_range == (0, 7) and a.target_range == (20, 27)
    assert a.path == [(i, 20 + i) for i in range(8)]
    assert a.score == pytest.approx(0.85, abs=0.05)
    assert a.total == pytest.approx(objective(a, Q @ T.T, 0.5, 0.1), abs=1e-5)


def test_query_is_a_subrange_of_the_target():
    rng = np.random.default_rng(1)
    T = random_unit(rng, 40)
    Q = T[12:30].copy()  # a clip cut out of the target video
    a = align(Q, T)
    assert a is not None and a.query_range == (0, 17) and a.target_range == (12, 29)
    assert a.score == pytest.approx(1.0, abs=1e-5)


def test_target_clip_inside_a_long_query():
    rng = np.random.default_rng(2)
    Q = random_unit(rng, 50)
    T = np.concatenate([random_unit(rng, 5), noisy(rng, Q[30:40]), random_unit(rng, 5)])
    a = align(Q, T)
    assert a is not None and a.query_range == (30, 39) and a.target_range == (5, 14)


@pytest.mark.parametrize("factor", [2, 3])
def test_slowed_down_copy_aligns_across_the_whole_range(factor):
    rng = np.random.default_rng(3)
    Q = random_unit(rng, 12)
    slow = noisy(rng, np.repeat(Q, factor, axis=0), cos=0.95)  # each segment held longer
    T = np.concatenate([random_unit(rng, 7), slow, random_unit(rng, 7)])
    a = align(Q, T)
    assert a is not None
    check_path(a)
    assert a.query_range == (0, 11)
    assert a.target_range == (7, 7 + factor * 12 - 1)
    # and the sped-up direction: the query holds, the target advances faster
    b = align(T, Q)
    assert b is not None and b.query_range == (7, 7 + factor * 12 - 1)
    assert b.target_range == (0, 11)


def test_unrelated_sequences_do_not_align():
    rng = np.random.default_rng(4)
    Q, T = random_unit(rng, 30), random_unit(rng, 80)
    assert float((Q @ T.T).max()) < 0.5  # random 256-d directions: cosines ~ N(0, 1/16)
    assert align(Q, T) is None
    low = align(Q, T, threshold=0.2)  # a permissive threshold finds only scattered cells
    assert low is not None and low.score < 0.4 and low.length <= 3


def test_identical_sequences_give_the_full_diagonal():
    rng = np.random.default_rng(5)
    Q = random_unit(rng, 25)
    a = align(Q, Q.copy())
    assert a is not None
    assert a.path == [(i, i) for i in range(25)]
    assert a.score == pytest.approx(1.0, abs=1e-5)
    assert a.total == pytest.approx(25 * 0.5, abs=1e-4)


def test_smooth_shot_keeps_the_diagonal():
    # adjacent segments of one shot at cosine ~0.95: with unweighted cells a detour around
    # the diagonal would collect extra cells; the half weight of side steps prevents that
    rng = np.random.default_rng(6)
    steps = random_unit(rng, 20)
    Q = np.empty_like(steps)
    Q[0] = steps[0]
    for i in range(1, 20):
        Q[i] = unit(0.95 * Q[i - 1] + 0.31 * steps[i])
    assert float(np.diag(Q @ Q.T, 1).min()) > 0.9
    for T in (Q.copy(), noisy(rng, Q, cos=0.97)):
        a = align(Q, T)
        assert a is not None and a.path == [(i, i) for i in range(20)]


def test_one_inserted_segment_is_bridged():
    rng = np.random.default_rng(10)
    Q = random_unit(rng, 10)
    T = np.concatenate([noisy(rng, Q[:5]), random_unit(rng, 1), noisy(rng, Q[5:])])  # an ad
    a = align(Q, T)
    assert a is not None and a.query_range == (0, 9) and a.target_range == (0, 10)
    check_path(a)


def reference_dp(S: np.ndarray, threshold: float, gap: float) -> float:
    """The documented recurrence, cell by cell in plain Python: the best total."""
    m, n = S.shape
    A = [[float("-inf")] * n for _ in range(m)]
    for i in range(m):
        for j in range(n):
            g = float(S[i, j]) - threshold
            options = [g + max(0.0, A[i - 1][j - 1] if i and j else 0.0)]
            if i:
                options.append(g / 2 - gap + A[i - 1][j])
            if j:
                options.append(g / 2 - gap + A[i][j - 1])
            A[i][j] = max(options)
    return max(max(row) for row in A)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("m", "n"), [(1, 7), (7, 1), (9, 13), (15, 6)])
def test_matches_a_cell_by_cell_dp(seed, m, n):
    # 4-d vectors: cosines spread over [-1, 1], so paths have gaps, breaks and restarts
    rng = np.random.default_rng(seed)
    Q, T = random_unit(rng, m, 4), random_unit(rng, n, 4)
    S = (Q @ T.T).astype(np.float64)
    a = align(Q, T, threshold=0.3, gap_penalty=0.15)
    if S.max() <= 0.3:
        assert a is None
        return
    assert a is not None
    check_path(a)
    assert a.total == pytest.approx(reference_dp(S, 0.3, 0.15), abs=1e-9)
    assert a.total == pytest.approx(objective(a, S, 0.3, 0.15), abs=1e-9)
    assert a.score == pytest.approx(S[tuple(np.array(a.path).T)].mean(), abs=1e-9)


def test_align_many_equals_align_one_by_one():
    rng = np.random.default_rng(7)
    Q = random_unit(rng, 10)
    cands = [random_unit(rng, 30), np.concatenate([random_unit(rng, 3), noisy(rng, Q)]), Q[2:5]]
    got = align_many(Q, cands, threshold=0.4)
    assert got == [align(Q, T, threshold=0.4) for T in cands]  # bit for bit
    assert got[0] is None and got[1].target_range == (3, 12) and got[2].query_range == (2, 4)
    assert align_many(Q, []) == []


def test_input_validation():
    rng = np.random.default_rng(8)
    Q, T = random_unit(rng, 4), random_unit(rng, 6)
    with pytest.raises(TypeError, match="Q must be a numpy array"):
        align(Q.tolist(), T)
    with pytest.raises(TypeError, match="T must be float32, got float64"):
        align(Q, T.astype(np.float64))
    with pytest.raises(ValueError, match="2-D"):
        align(Q[0], T)
    with pytest.raises(ValueError, match="at least one segment"):
        align(Q[:0], T)
    with pytest.raises(ValueError, match="T has dim 128, the query has dim 256"):
        align(Q, random_unit(rng, 6, 128))
    with pytest.raises(ValueError, match="unit vectors"):
        align(Q * 2, T)
    bad = T.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="unit vectors"):
        align(Q, bad)
    with pytest.raises(ValueError, match="threshold"):
        align(Q, T, threshold=1.5)
    with pytest.raises(ValueError, match="gap_penalty"):
        align(Q, T, gap_penalty=-0.1)
    with pytest.raises(TypeError, match="threshold must be a number"):
        align(Q, T, threshold="0.5")
    with pytest.raises(TypeError, match="candidates"):
        align_many(Q, T)
    with pytest.raises(ValueError, match=r"candidates\[1\] has dim"):
        align_many(Q, [T, random_unit(rng, 6, 128)])


def test_fast_enough():
    rng = np.random.default_rng(9)
    Q = random_unit(rng, 200)
    T = np.concatenate([random_unit(rng, 50), noisy(rng, Q[:150])])  # (200, d)
    best = float("inf")
    for _ in range(3):  # best of 3: robust to a busy machine
        t0 = time.perf_counter()
        align(Q, T)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.1  # ~3 ms measured on the 2-core dev machine


def test_adaptive_threshold_sits_between_background_and_one():
    from services.search import adaptive_threshold

    # An encoder that puts unrelated material at ~0.93: the threshold rises above it.
    bg = np.full(40, 0.93, dtype=np.float32)
    bg[:3] = 0.999  # a few true matches do not move the median
    assert adaptive_threshold(bg) == pytest.approx(0.965, abs=1e-6)
    # A well-separated encoder (unrelated ~0): the floor applies.
    assert adaptive_threshold(np.zeros(10, dtype=np.float32)) == 0.5
    assert adaptive_threshold(np.empty(0)) == 0.5


@pytest.mark.parametrize("background", [1.0, 1.0000001, 0.9999])
def test_adaptive_threshold_of_a_library_that_is_all_the_query_still_aligns_a_copy(background):
    from services.search import adaptive_threshold

    # A one-video library: the only background is the query itself (cosine 1, or a hair
    # over from float rounding). The threshold stays a valid cosine below 1, and the
    # query aligns with itself.
    threshold = adaptive_threshold(np.full(1, background, dtype=np.float32))
    assert 0.5 <= threshold < 1.0
    Q = unit(np.random.default_rng(3).normal(size=(1, 16)))
    a = align(Q, Q.copy(), threshold=threshold)
    assert a is not None and a.path == [(0, 0)] and a.score == pytest.approx(1.0, abs=1e-5)
