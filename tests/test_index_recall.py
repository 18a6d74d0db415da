"""recall_at_k: plain intersection, ties across rank k, -1 padding, bad input."""

# ruff: noqa: E741  (I: faiss's name for the id matrix)

from __future__ import annotations

import numpy as np
import pytest

from services.index.recall import drop_ids, recall_at_k


def test_recall_counts_intersection_order_free():
    I_exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    I_approx = np.array([[4, 3, 9, 1], [5, 6, 7, 8]])
    # query 0: {4,3,1} of {1,2,3,4} -> 3/4; query 1: 4/4
    assert recall_at_k(I_approx, I_exact, 4) == pytest.approx((0.75 + 1.0) / 2)
    assert recall_at_k(I_approx, I_exact, 1) == pytest.approx((0.0 + 1.0) / 2)


def test_recall_tolerates_ties_at_rank_k():
    # ids 3, 4 and 5 tie at score 0.5: exact kept 3 at rank 2, approx returned 5.
    I_exact = np.array([[1, 3, 4, 5, 6]])
    D_exact = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]], np.float32)
    I_approx = np.array([[1, 5]])
    assert recall_at_k(I_approx, I_exact, 2) == 0.5  # ids only: looks like a miss
    assert recall_at_k(I_approx, I_exact, 2, D_exact) == 1.0
    # 6 is not tied with rank 2: still a miss
    assert recall_at_k(np.array([[1, 6]]), I_exact, 2, D_exact) == 0.5


def test_recall_ignores_minus_one_and_duplicates():
    I_exact = np.array([[1, 2, 3]])
    assert recall_at_k(np.array([[-1, -1, -1]]), I_exact, 3) == 0.0
    assert recall_at_k(np.array([[1, 1, 1]]), I_exact, 3) == pytest.approx(1 / 3)


def test_recall_when_exact_has_fewer_than_k():
    # only two vectors exist: finding both is perfect recall@3
    I_exact = np.array([[7, 8, -1]])
    D_exact = np.array([[0.9, 0.8, -np.inf]], np.float32)
    assert recall_at_k(np.array([[8, 7, -1]]), I_exact, 3, D_exact) == 1.0
    assert recall_at_k(np.array([[8, -1, -1]]), I_exact, 3, D_exact) == 0.5


@pytest.mark.parametrize(
    ("I_approx", "I_exact", "k", "error"),
    [
        (np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64), 0, ValueError),
        (np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64), 4, ValueError),
        (np.zeros((2, 3), np.int64), np.zeros((3, 3), np.int64), 3, ValueError),
        (np.zeros(3, np.int64), np.zeros((1, 3), np.int64), 3, ValueError),
        (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int64), 3, TypeError),
        (np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64), 2.0, TypeError),
    ],
)
def test_recall_bad_input_raises(I_approx, I_exact, k, error):
    with pytest.raises(error):
        recall_at_k(I_approx, I_exact, k)


def test_drop_ids_removes_each_querys_own_id():
    I = np.array([[7, 1, 2], [3, 4, 5]])
    D = np.array([[1.0, 0.9, 0.8], [0.7, 0.6, 0.5]], np.float32)
    D2, I2 = drop_ids(D, I, np.array([7, 9]), 2)
    np.testing.assert_array_equal(I2, [[1, 2], [3, 4]])  # row 1: 9 absent, first 2 kept
    np.testing.assert_array_equal(D2, np.array([[0.9, 0.8], [0.7, 0.6]], np.float32))
    _, I3 = drop_ids(D, I, np.array([7, 9]), 3)
    np.testing.assert_array_equal(I3, [[1, 2, -1], [3, 4, 5]])
