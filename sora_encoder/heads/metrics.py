"""Classification metrics on label strings: pure functions, no dependencies beyond numpy.

accuracy(y_true, y_pred)                 -> float, share of exact matches
confusion_matrix(y_true, y_pred, labels) -> (L, L) int64, rows true, columns predicted
macro_f1(y_true, y_pred, labels)         -> float, unweighted mean of per-label F1
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_pair(y_true: Sequence[str], y_pred: Sequence[str]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} != {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty: the metric is undefined")


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Share of positions where the predicted label equals the true one."""
    _check_pair(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def confusion_matrix(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> np.ndarray:
    """C[i, j] = how many examples of labels[i] were predicted as labels[j]; (L, L) int64."""
    _check_pair(y_true, y_pred)
    index = {label: k for k, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels must be distinct")
    unknown = sorted({str(y) for y in (*y_true, *y_pred) if y not in index})
    if unknown:
        raise ValueError(f"labels not in the label list: {unknown[:5]}")
    C = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(C, ([index[y] for y in y_true], [index[y] for y in y_pred]), 1)
    return C


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> float:
    """Mean over labels of F1 = 2 TP / (2 TP + FP + FN), each label weighing the same.

    A label that is neither in y_true nor in y_pred has no defined F1 and is left out of the
    mean (scikit-learn would count it as 0): a holdout that happens to lack a label should not
    lower the score of the labels it has.
    """
    C = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(C).astype(np.float64)
    denom = C.sum(axis=0) + C.sum(axis=1)  # 2 TP + FP + FN per label, (L,)
    seen = denom > 0
    return float((2 * tp[seen] / denom[seen]).mean())
