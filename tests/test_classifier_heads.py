"""Classifier heads: metrics against hand-computed values, training on known clusters,
splits, determinism, the byte format and the boundary errors."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest

from sora_encoder.heads import (
    TrainedHead,
    accuracy,
    confusion_matrix,
    fit_softmax,
    macro_f1,
    stratified_split,
    train_head,
)

# ---------------------------------------------------------------- metrics, by hand
Y_TRUE = ["a", "a", "b", "b", "c"]
Y_PRED = ["a", "b", "b", "b", "a"]


def test_accuracy_by_hand():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 5)
    assert accuracy(Y_TRUE, Y_TRUE) == 1.0


def test_confusion_matrix_by_hand():
    C = confusion_matrix(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert C.dtype == np.int64
    # rows true, columns predicted
    assert C.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert confusion_matrix(Y_TRUE, Y_PRED, ["c", "b", "a"]).tolist() == [
        [0, 0, 1],
        [0, 2, 0],
        [0, 1, 1],
    ]


def test_macro_f1_by_hand():
    # a: TP 1, FP 1 (the c), FN 1 -> 2/4; b: TP 2, FP 1, FN 0 -> 4/5; c: TP 0, FN 1 -> 0
    expected = (0.5 + 0.8 + 0.0) / 3
    assert macro_f1(Y_TRUE, Y_PRED, ["a", "b", "c"]) == pytest.approx(expected)
    # a label neither true nor predicted has no F1 and is left out of the mean
    assert macro_f1(Y_TRUE, Y_PRED, ["a", "b", "c", "d"]) == pytest.approx(expected)
    assert macro_f1(Y_TRUE, Y_TRUE, ["a", "b", "c"]) == 1.0
    assert macro_f1(["a", "a"], ["b", "b"], ["a", "b"]) == 0.0


def test_metric_errors():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match=r"not in the label list: \['c'\]"):
        confusion_matrix(Y_TRUE, Y_PRED, ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        macro_f1(Y_TRUE, Y_PRED, ["a", "b", "c", "a"])


# ---------------------------------------------------------------- data
def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clusters(
    rng: np.random.Generator, counts: dict[str, int], d: int = 256, noise: float = 1.0
) -> tuple[np.ndarray, list[str]]:
    """Unit vectors around one random centre per label; noise 1.0: cosine to the centre ~0.7."""
    labels = [y for y, c in counts.items() for _ in range(c)]
    centres = {y: rng.standard_normal(d) for y in counts}
    x = np.stack([centres[y] for y in labels]) / np.sqrt(d)
    x += noise * rng.standard_normal(x.shape) / np.sqrt(d)
    order = rng.permutation(len(labels))
    return unit(x[order]), [labels[i] for i in order]


# ---------------------------------------------------------------- training
def test_separable_clusters():
    rng = np.random.default_rng(0)
    xb, labels = clusters(rng, {"cat": 60, "dog": 60, "car": 40})
    head = train_head(xb, labels)
    m = head.metrics
    assert head.labels == ["car", "cat", "dog"]
    assert head.W.shape == (256, 3) and head.b.shape == (3,) and head.W.dtype == np.float32
    assert m["train_examples"] + m["holdout_examples"] == 160
    assert m["holdout_examples"] == 15 + 15 + 10  # 25% of each label
    assert m["holdout_accuracy"] >= 0.95 and m["holdout_macro_f1"] >= 0.95
    C = np.array(m["confusion"])
    assert C.shape == (3, 3) and C.sum() == m["holdout_examples"]
    assert C.sum(axis=1).tolist() == [10, 15, 15]  # holdout examples per true label
    # the refit head classifies fresh samples of the same clusters
    assert accuracy(labels, head.predict(xb)) == 1.0


def test_random_labels_score_near_chance():
    rng = np.random.default_rng(1)
    xb = unit(rng.standard_normal((400, 64)))
    labels = [str(k) for k in rng.integers(0, 4, 400)]
    m = train_head(xb, labels).metrics
    assert abs(m["holdout_accuracy"] - 0.25) < 0.15  # ~100 holdout examples: sd ~0.045


def test_probabilities():
    rng = np.random.default_rng(2)
    xb, labels = clusters(rng, {"a": 20, "b": 20})
    head = train_head(xb, labels)
    xq, _ = clusters(rng, {"q": 7})
    P = head.predict_proba(xq)
    assert P.shape == (7, 2) and P.dtype == np.float32
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-6)
    assert head.predict(xq) == [head.labels[k] for k in P.argmax(axis=1)]


def test_deterministic_given_the_seed():
    rng = np.random.default_rng(3)
    xb, labels = clusters(rng, {"a": 30, "b": 30, "c": 30}, noise=3.0)
    one, two = train_head(xb, labels, seed=7), train_head(xb, labels, seed=7)
    assert one.to_bytes() == two.to_bytes()
    held = [stratified_split(labels, seed=seed)[1].tolist() for seed in (7, 7, 8)]
    assert held[0] == held[1] != held[2]


def test_warm_start_reaches_the_same_optimum():
    rng = np.random.default_rng(4)
    xb, labels = clusters(rng, {"a": 40, "b": 40, "c": 40}, noise=3.0)
    y = np.array([ord(label) - ord("a") for label in labels])
    W, b = fit_softmax(xb, y, 3)
    W2, b2 = fit_softmax(xb, y, 3, init=(rng.standard_normal(W.shape).astype(np.float32), b))
    P, P2 = (
        TrainedHead(["a", "b", "c"], W_, b_, {}).predict_proba(xb) for W_, b_ in [(W, b), (W2, b2)]
    )
    np.testing.assert_allclose(P2, P, atol=1e-3)  # logits may differ where P saturates


def test_balanced_weights_favour_the_rare_label():
    rng = np.random.default_rng(5)
    xb, labels = clusters(rng, {"common": 300, "rare": 20}, d=32, noise=6.0)  # overlapping
    y = np.array([label == "rare" for label in labels], dtype=np.int64)
    rare_calls = {}
    for balanced in (True, False):
        W, b = fit_softmax(xb, y, 2, balanced=balanced)
        rare_calls[balanced] = int(((xb @ W + b).argmax(axis=1) == 1).sum())
    assert rare_calls[True] > rare_calls[False]


# ---------------------------------------------------------------- splits
def test_split_is_stratified_and_keeps_every_label_in_train():
    labels = ["a"] * 2 + ["b"] * 3 + ["c"] * 40
    train, holdout = stratified_split(labels, seed=0)
    assert sorted([*train, *holdout]) == list(range(45))
    assert Counter(labels[i] for i in holdout) == {"a": 1, "b": 1, "c": 10}
    assert {labels[i] for i in train} == {"a", "b", "c"}


def test_group_split_keeps_groups_on_one_side():
    rng = np.random.default_rng(6)
    groups = [f"video{k}" for k in rng.integers(0, 30, 300)]  # segments of 30 videos
    labels = [f"label{int(g[5:]) % 3}" for g in groups]  # one label per video
    for seed in range(5):
        train, holdout = stratified_split(labels, seed=seed, groups=groups)
        assert not {groups[i] for i in train} & {groups[i] for i in holdout}
        assert {labels[i] for i in train} == {"label0", "label1", "label2"}
        assert 0.1 < len(holdout) / 300 < 0.4
    xb, _ = clusters(rng, {"x": 300})
    head = train_head(xb, labels, groups=groups)
    assert head.metrics["train_examples"] + head.metrics["holdout_examples"] == 300


# ---------------------------------------------------------------- bytes
def test_bytes_round_trip_is_exact():
    rng = np.random.default_rng(7)
    xb, labels = clusters(rng, {"ü-label": 10, "b": 12, "c": 9}, d=48)
    head = train_head(xb, labels)
    data = head.to_bytes()
    assert isinstance(data, bytes) and data == head.to_bytes()
    back = TrainedHead.from_bytes(data)
    assert back.labels == head.labels and back.metrics == head.metrics
    assert np.array_equal(back.W, head.W) and np.array_equal(back.b, head.b)
    assert np.array_equal(back.predict_proba(xb), head.predict_proba(xb))


def test_from_bytes_rejects_other_payloads():
    rng = np.random.default_rng(8)
    xb, labels = clusters(rng, {"a": 4, "b": 4}, d=8)
    head = train_head(xb, labels)
    for bad in (b"", b"not a head", pickle.dumps(head), head.to_bytes()[:-4]):
        with pytest.raises(ValueError, match="not a serialised classifier head"):
            TrainedHead.from_bytes(bad)
    with pytest.raises(TypeError):
        TrainedHead.from_bytes("text")


# ---------------------------------------------------------------- boundary errors
def test_training_errors():
    rng = np.random.default_rng(9)
    xb, labels = clusters(rng, {"a": 5, "b": 5}, d=8)
    with pytest.raises(ValueError, match="at least 2 labels"):
        train_head(xb, ["a"] * 10)
    with pytest.raises(ValueError, match="too few: 'c' has 1"):
        train_head(xb, labels[:9] + ["c"])
    with pytest.raises(ValueError, match="xb has 10 rows, labels has 9"):
        train_head(xb, labels[:9])
    with pytest.raises(TypeError, match="xb must be float32, got float64"):
        train_head(xb.astype(np.float64), labels)
    with pytest.raises(TypeError, match="xb must be a numpy array"):
        train_head(xb.tolist(), labels)
    with pytest.raises(ValueError, match="NaN"):
        train_head(np.full_like(xb, np.nan), labels)
    with pytest.raises(TypeError, match="non-empty strings"):
        train_head(xb, [1, 2] * 5)
    with pytest.raises(ValueError, match="holdout_fraction"):
        train_head(xb, labels, holdout_fraction=1.0)
    with pytest.raises(ValueError, match="l2"):
        train_head(xb, labels, l2=0.0)
    with pytest.raises(ValueError, match="groups has 3 entries"):
        train_head(xb, labels, groups=["g"] * 3)
    with pytest.raises(ValueError, match="nothing to hold out"):
        train_head(xb, labels, groups=labels)  # each label is one group


def test_prediction_errors():
    rng = np.random.default_rng(10)
    xb, labels = clusters(rng, {"a": 5, "b": 5}, d=8)
    head = train_head(xb, labels)
    with pytest.raises(ValueError, match="xq has dim 9, the head expects 8"):
        head.predict(np.zeros((2, 9), np.float32))
    with pytest.raises(TypeError, match="xq must be float32"):
        head.predict_proba(xb.astype(np.float16))
    with pytest.raises(ValueError, match="2-D"):
        head.predict_proba(xb[0])
    with pytest.raises(TypeError, match="W must be a float32 array"):
        TrainedHead(labels=["a", "b"], W=np.zeros((8, 2)), b=np.zeros(2, np.float32), metrics={})
