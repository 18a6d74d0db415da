"""Micro-AP and threshold precision/recall on hand-made score lists (values worked by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from sora_encoder.eval.copy_metrics import (
    at_threshold,
    micro_average_precision,
    predictions,
    top_predictions,
)


def test_micro_ap_is_precision_at_each_correct_prediction_over_the_copies() -> None:
    # sorted: 0.9 right (P 1/1), 0.8 wrong, 0.7 right (P 2/3), 0.6 wrong; 3 copy queries
    p = predictions([0.9, 0.8, 0.7, 0.6], [True, False, True, False], n_positive=3)
    assert micro_average_precision(p) == pytest.approx((1 + 2 / 3) / 3)
    shuffled = predictions([0.6, 0.7, 0.9, 0.8], [False, True, True, False], n_positive=3)
    assert micro_average_precision(shuffled) == pytest.approx((1 + 2 / 3) / 3)


def test_a_confident_false_positive_costs_precision() -> None:
    # a non-copy query's wrong hit at 0.95 above two right ones: P 1/2 and 2/3
    p = predictions([0.95, 0.9, 0.5], [False, True, True], n_positive=2)
    assert micro_average_precision(p) == pytest.approx((1 / 2 + 2 / 3) / 2)
    below = predictions([0.3, 0.9, 0.5], [False, True, True], n_positive=2)
    assert micro_average_precision(below) == 1.0  # the same wrong hit under every right one


def test_ties_enter_together_whatever_the_input_order() -> None:
    for correct in ([False, True], [True, False]):
        p = predictions([0.9, 0.9], correct, n_positive=1)
        assert micro_average_precision(p) == 0.5


def test_copies_without_a_right_prediction_still_count() -> None:
    assert micro_average_precision(predictions([0.9], [True], n_positive=2)) == 0.5
    assert micro_average_precision(predictions([0.9], [False], n_positive=0)) == 0.0
    assert micro_average_precision(predictions([], [], n_positive=4)) == 0.0
    with pytest.raises(ValueError, match="n_positive"):
        predictions([0.9, 0.8], [True, True], n_positive=1)
    with pytest.raises(ValueError, match="finite"):
        predictions([np.nan], [False], n_positive=0)


def test_precision_and_recall_at_a_threshold() -> None:
    p = predictions([0.95, 0.9, 0.5, 0.4], [False, True, True, False], n_positive=3)
    r = at_threshold(p, 0.6)  # keeps 0.95 (wrong) and 0.9 (right)
    assert (r.predicted, r.precision, r.recall) == (2, 0.5, pytest.approx(1 / 3))
    r = at_threshold(p, 0.9)  # the threshold itself is kept
    assert (r.predicted, r.precision) == (2, 0.5)
    r = at_threshold(p, 0.99)
    assert (r.predicted, r.precision, r.recall) == (0, None, 0.0)
    r = at_threshold(p, 0.0)
    assert (r.predicted, r.precision, r.recall) == (4, 0.5, pytest.approx(2 / 3))
    assert at_threshold(predictions([0.5], [False], 0), 0.1).recall is None


def test_top_predictions_are_pessimistic_skip_junk_and_failed_queries() -> None:
    nan = np.nan
    D = np.array(
        [
            [0.2, 0.9, 0.1],  # source 1 on top: right
            [0.5, 0.5, 0.1],  # source 0 tied with item 1: wrong
            [nan, nan, nan],  # could not be embedded: no prediction
            [0.3, 0.2, 0.8],  # a non-copy; item 2 is junk for it: predicts item 0, wrong
        ]
    )
    junk = np.zeros_like(D, dtype=bool)
    junk[3, 2] = True
    p = top_predictions(D, np.array([1, 0, 2, -1]), junk)
    assert p.scores.tolist() == [0.9, 0.5, 0.3]
    assert p.correct.tolist() == [True, False, False]
    assert p.n_positive == 3  # the failed copy query still counts
    assert micro_average_precision(p) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="source"):
        top_predictions(D, np.array([1, 0, 3, -1]))
