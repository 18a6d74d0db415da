"""Copy-detection metrics: one prediction per query, scored over all queries at once.

    D (nq, nb) scores --top_predictions--> per query: (top hit, its score, correct?)
    predictions --micro_average_precision--> micro-AP (VSC22 descriptor track, ISC21)
    predictions --at_threshold(t)--> precision and recall of "the top hit is a copy"

Why: recall@k and mAP rank the database for each query on its own, so they never see a
query whose source is not in the database, and a detector that answers every query with
some hit looks perfect. What a user deploys is a threshold on one number across all
queries: "score >= t means this upload copies that video". Micro-AP measures exactly that:
sort every query's top-hit prediction by score, over all queries; walk down the list; a
prediction is correct when its hit is the query's true source. A confident wrong hit for a
non-copy query (a false positive) sits high in the list and costs precision.

    micro-AP = sum over correct predictions, in score order, of precision there / n_pos

where n_pos is the number of queries whose source IS in the database (a copy query that
produced no prediction, or a wrong one, still counts in n_pos: recall cannot reach 1).
This is the pairwise micro-AP of the VSC22 descriptor track (`vsc/metrics.py`,
`average_precision`) with one candidate pair per query. Ties: predictions with equal
scores enter the curve together (as ISC21's and scikit-learn's curves do), so the result
does not depend on the order the queries came in; VSC's sort would break such ties by
input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Predictions",
    "ThresholdResult",
    "at_threshold",
    "micro_average_precision",
    "predictions",
    "top_predictions",
]


@dataclass(frozen=True)
class Predictions:
    """One prediction per query that produced one, and how many queries had a source."""

    scores: np.ndarray  # (n,) float64, finite: the top hit's score
    correct: np.ndarray  # (n,) bool: the top hit is the query's source
    n_positive: int  # queries whose source is in the database (copies)

    def __post_init__(self) -> None:
        if self.scores.shape != self.correct.shape or self.scores.ndim != 1:
            raise ValueError(
                f"scores {self.scores.shape} and correct {self.correct.shape} must be (n,)"
            )
        if not np.isfinite(self.scores).all():
            raise ValueError("prediction scores must be finite")
        if self.n_positive < int(self.correct.sum()):
            raise ValueError(
                f"{int(self.correct.sum())} correct predictions but n_positive={self.n_positive}"
            )


def predictions(scores, correct, n_positive: int) -> Predictions:
    """`Predictions` from lists (for tests and callers holding plain sequences)."""
    return Predictions(
        np.asarray(scores, dtype=np.float64).reshape(-1),
        np.asarray(correct, dtype=bool).reshape(-1),
        int(n_positive),
    )


def top_predictions(
    D: np.ndarray, source: np.ndarray, junk: np.ndarray | None = None
) -> Predictions:
    """Each query's top hit in D (nq, nb), larger is closer; source (nq,) the index of the
    query's source in the database, or -1 for a non-copy query; junk (nq, nb) bool items
    left out of that query's candidates (as in the ranking metrics).

    A query whose scores are all non-finite (it could not be embedded) makes no prediction.
    Ties at the top are pessimistic: when the source shares the top score with another
    item, the prediction is the other item (wrong), as tied items rank first in
    `neardup.relevant_ranks`.
    """
    D = np.asarray(D, dtype=np.float64)
    source = np.asarray(source, dtype=np.int64)
    if D.ndim != 2 or source.shape != (D.shape[0],):
        raise ValueError(f"D {D.shape} must be (nq, nb) and source (nq,), got {source.shape}")
    if (source >= D.shape[1]).any() or (source < -1).any():
        raise ValueError("source must be -1 or an index into the database")
    valid = np.isfinite(D)
    if junk is not None:
        junk = np.asarray(junk, dtype=bool)
        if junk.shape != D.shape:
            raise ValueError(f"junk must be {D.shape}, got {junk.shape}")
        valid &= ~junk
    scores, correct = [], []
    for i in range(D.shape[0]):
        if not valid[i].any():
            continue
        row = np.where(valid[i], D[i], -np.inf)
        best = row.max()
        at_top = np.flatnonzero(row == best)
        s = source[i]
        scores.append(best)
        correct.append(bool(s >= 0 and at_top.tolist() == [s]))
    return Predictions(
        np.array(scores, dtype=np.float64), np.array(correct, dtype=bool), int((source >= 0).sum())
    )


def micro_average_precision(p: Predictions) -> float:
    """Micro-AP of the predictions (module docstring); 0.0 when no query has a source."""
    if p.n_positive == 0 or p.scores.size == 0:
        return 0.0
    order = np.argsort(-p.scores, kind="stable")
    s, c = p.scores[order], p.correct[order]
    # the last index of each run of equal scores: the curve's points
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.cumsum(c)[ends]  # (k,) correct predictions down to each point
    precision = tp / (ends + 1.0)
    gained = np.diff(np.r_[0, tp])  # (k,) correct predictions added at each point
    return float(np.sum(precision * gained) / p.n_positive)


@dataclass(frozen=True)
class ThresholdResult:
    threshold: float
    predicted: int  # predictions with score >= threshold
    precision: float | None  # None when nothing is predicted (undefined, not 1 or 0)
    recall: float | None  # None when no query has a source


def at_threshold(p: Predictions, threshold: float) -> ThresholdResult:
    """Precision and recall of "the top hit is a copy of the query" for score >= threshold."""
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    kept = p.scores >= threshold
    tp = int((kept & p.correct).sum())
    n = int(kept.sum())
    return ThresholdResult(
        threshold=float(threshold),
        predicted=n,
        precision=tp / n if n else None,
        recall=tp / p.n_positive if p.n_positive else None,
    )
