"""Classifier heads on frozen Sora vectors: softmax regression, trained full-batch.

    xb (n, d) float32, labels[n] (str), groups[n] | None
      -> stratified_split(labels, groups)          train / holdout indices, seeded
      -> fit_softmax(xb[train]) -> predict holdout  metrics (accuracy, macro F1, confusion)
      -> fit_softmax(xb, all labels)                the returned weights: REFIT on all data
      -> TrainedHead(labels, W (d, L), b (L,), metrics)
           .predict_proba(xq) (n, L) float32 | .predict(xq) -> labels | .to_bytes()

The holdout numbers therefore describe a model trained on (1 - holdout_fraction) of the
examples; the returned head, trained on all of them, is expected to do at least as well.

The fit minimises the (optionally class-balanced) weighted mean cross-entropy plus
(l2 / 2) ||W||^2 (the bias is not penalised) with torch's L-BFGS in float64, from zeros
(the refit: warm-started from the first fit; the optimum is unique, so this only saves
time). Nothing is random but the split, which the seed fixes: same inputs, same bytes.
The features are centred and scaled to unit mean variance per dimension (one scale for all
dimensions, so the embedding's geometry is kept) before the fit, and the transform is
folded into W and b afterwards; `l2` is therefore independent of how the vectors are
scaled.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load, save

from sora_encoder.heads.metrics import accuracy, confusion_matrix, macro_f1

log = logging.getLogger(__name__)

# Share of each label's examples held out to measure the head (a label with 2 examples
# still keeps 1 on each side).
DEFAULT_HOLDOUT_FRACTION = 0.25
# L2 penalty on the mean loss, on standardised features. scikit-learn's default (C = 1)
# is 1/n on this scale: 1e-2 at 100 examples, 1e-4 at 10k; 1e-3 sits between, firm enough
# that a few hundred labelled videos in 256 dimensions do not give unbounded weights.
DEFAULT_L2 = 1e-3
MIN_EXAMPLES_PER_LABEL = 2  # one to train on and one to hold out
MAX_ITER = 500  # L-BFGS iterations; a hard 10k x 512 x 10-label fit converges in ~30
# Stop when every gradient component of the mean loss is this small; 1e-4 to 1e-6 gave the
# same predictions on test clusters, 1e-6 took 30% more iterations.
GRAD_TOL = 1e-5
FORMAT = "sora-classifier-head/1"  # `to_bytes` format tag, checked by `from_bytes`


@dataclass(frozen=True, eq=False)
class TrainedHead:
    """A linear softmax head: P(label | x) = softmax(x @ W + b)."""

    labels: list[str]  # class names, in output column order
    W: np.ndarray  # (d, L) float32
    b: np.ndarray  # (L,) float32
    metrics: dict[str, Any]  # JSON-able: holdout measurements (see `train_head`)

    def __post_init__(self) -> None:
        labels = _check_labels(self.labels)
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise ValueError("a head needs at least 2 distinct labels")
        for name, arr, ndim in (("W", self.W, 2), ("b", self.b, 1)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                raise TypeError(f"{name} must be a float32 array, got {getattr(arr, 'dtype', arr)}")
            if arr.ndim != ndim or arr.shape[-1] != len(labels) or not np.isfinite(arr).all():
                raise ValueError(f"{name} must be finite with {len(labels)} columns, {arr.shape}")
        W, b = self.W.copy(), self.b.copy()
        W.flags.writeable = b.flags.writeable = False  # frozen: no change behind our back
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

    @property
    def dim(self) -> int:
        return int(self.W.shape[0])

    def predict_proba(self, xq: np.ndarray) -> np.ndarray:
        """(n, d) float32 -> (n, L) float32 probabilities, rows summing to 1."""
        xq = check_features("xq", xq, self.dim)
        logits = xq @ self.W + self.b  # (n, L)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def predict(self, xq: np.ndarray) -> list[str]:
        """(n, d) float32 -> the most probable label of each row."""
        return [self.labels[k] for k in self.predict_proba(xq).argmax(axis=1)]

    def to_bytes(self) -> bytes:
        """safetensors: W and b, plus labels and metrics as JSON in one metadata entry (one
        entry: safetensors does not keep the order of several, and the bytes should be a
        function of the head). No pickle anywhere."""
        header = {"format": FORMAT, "labels": self.labels, "metrics": self.metrics}
        metadata = {"head": json.dumps(header, allow_nan=False, sort_keys=True)}
        return save({"W": np.ascontiguousarray(self.W), "b": self.b}, metadata=metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedHead:
        """Inverse of `to_bytes`; ValueError if `data` is not such a head."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        try:
            (header_len,) = struct.unpack("<Q", data[:8])
            header = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["head"])
            if header["format"] != FORMAT:
                raise ValueError(f"unknown format {header['format']!r}")
            tensors = load(data)
            return cls(
                labels=header["labels"], W=tensors["W"], b=tensors["b"], metrics=header["metrics"]
            )
        except (TypeError, ValueError, KeyError, struct.error, SafetensorError) as exc:
            raise ValueError(f"not a serialised classifier head: {exc!r}") from exc


def check_features(name: str, x: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Boundary check: a finite float32 (n, d) array, n >= 1 -> x contiguous."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {x.dtype}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (n, d) array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dim {x.shape[1]}, the head expects {dim}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return np.ascontiguousarray(x)


def _check_labels(labels: Sequence[str], name: str = "labels") -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of strings, got {type(labels).__name__}")
    out = []
    for label in labels:
        if not isinstance(label, str) or not label:
            raise TypeError(f"{name} must be non-empty strings, got {label!r}")
        out.append(str(label))
    return out


def stratified_split(
    labels: Sequence[str],
    *,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and holdout indices (sorted int64), about `holdout_fraction` of each label held
    out, every label keeping at least one example in train.

    With `groups`, all items of a group land on the same side (e.g. segments of one video,
    videos of one channel), so the holdout measures generalisation to unseen groups. Groups
    are visited in a seeded random order and each goes to the holdout if that brings the
    per-label holdout counts closer to round(fraction * count) without emptying a label's
    train side; without groups every item is its own group, which gives an exact stratified
    split.
    """
    labels = _check_labels(labels)
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if groups is None:
        group_of = list(range(len(labels)))
    else:
        group_of = _check_labels(groups, "groups")
        if len(group_of) != len(labels):
            raise ValueError(f"groups has {len(group_of)} entries, labels has {len(labels)}")
    total = Counter(labels)
    target = {
        y: min(max(math.floor(holdout_fraction * c + 0.5), 1), c - 1) for y, c in total.items()
    }
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(group_of):
        members.setdefault(g, []).append(i)
    order = sorted(members)  # a canonical order, then a seeded shuffle
    rng = np.random.default_rng(seed)
    held: Counter[str] = Counter()
    holdout: list[int] = []
    for k in rng.permutation(len(order)):
        idx = members[order[k]]
        gc = Counter(labels[i] for i in idx)
        if any(held[y] + c > total[y] - 1 for y, c in gc.items()):
            continue  # would leave a label with nothing to train on
        before = sum(abs(target[y] - held[y]) for y in gc)
        after = sum(abs(target[y] - held[y] - c) for y, c in gc.items())
        if after < before:
            held.update(gc)
            holdout.extend(idx)
    is_held = np.zeros(len(labels), dtype=bool)
    is_held[holdout] = True
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def fit_softmax(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    l2: float = DEFAULT_L2,
    balanced: bool = True,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: x (n, d) float32, y (n,) class ids -> W (d, L), b (L,)
    float32. Minimises weighted mean cross-entropy + (l2 / 2) ||W||^2 by L-BFGS, from zeros
    or from `init` (a W, b for the same classes: a warm start, same optimum)."""
    assert x.ndim == 2 and x.dtype == np.float32, f"x must be float32 (n, d), got {x.shape}"
    n, d = x.shape
    assert y.shape == (n,) and y.dtype.kind in "iu", f"y must be ({n},) class ids, {y.shape}"
    assert 0 <= y.min() and y.max() < n_classes, f"class ids must be in [0, {n_classes})"
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=0)  # (d,)
    scale = math.sqrt(float(((x64 - mu) ** 2).sum()) / (n * d)) or 1.0  # RMS per dimension
    z = (x64 - mu) / scale  # (n, d), unit mean variance
    counts = np.bincount(y, minlength=n_classes)
    w = 1.0 / (n_classes * counts[y]) if balanced else np.full(n, 1.0 / n)
    w = (w / w.sum())[:, None]  # (n, 1), sums to 1
    rows = np.arange(n)
    W0, b0 = np.zeros((d, n_classes)), np.zeros(n_classes)
    if init is not None:  # into the standardised space: W' = W scale, b' = b + mu @ W
        W0 = init[0].astype(np.float64) * scale
        b0 = init[1].astype(np.float64) + mu @ init[0].astype(np.float64)
    Wt = torch.tensor(W0, dtype=torch.float64)  # (d, L)
    bt = torch.tensor(b0, dtype=torch.float64)  # (L,)
    opt = torch.optim.LBFGS(
        [Wt, bt],
        lr=1.0,
        max_iter=MAX_ITER,
        tolerance_grad=GRAD_TOL,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    # Loss and gradient in numpy on views of the torch parameters: torch's matmul with a
    # transposed float64 operand (the gradient's z.T @ G) is ~4x slower than numpy's here.
    def closure() -> torch.Tensor:
        W, b = Wt.numpy(), bt.numpy()
        logits = z @ W + b  # (n, L)
        logits -= logits.max(axis=1, keepdims=True)
        P = np.exp(logits)
        norm = P.sum(axis=1, keepdims=True)  # (n, 1)
        ce = np.log(norm[:, 0]) - logits[rows, y]  # (n,) cross-entropy
        loss = float(w[:, 0] @ ce) + 0.5 * l2 * float((W * W).sum())
        G = P / norm  # (n, L): softmax - one-hot, weighted = d loss / d logits
        G[rows, y] -= 1.0
        G *= w
        Wt.grad = torch.from_numpy(z.T @ G + l2 * W)  # (d, L)
        bt.grad = torch.from_numpy(G.sum(axis=0))  # (L,)
        return torch.tensor(loss, dtype=torch.float64)

    opt.step(closure)
    iters = opt.state[Wt]["n_iter"]
    if iters >= MAX_ITER:
        log.warning("softmax fit stopped at %d L-BFGS iterations before converging", iters)
    W = Wt.numpy() / scale  # (d, L): logits = (x - mu) / scale @ W' + b'
    b = bt.numpy() - mu @ W
    return W.astype(np.float32), b.astype(np.float32)


def train_head(
    xb: np.ndarray,
    labels: Sequence[str],
    *,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    groups: Sequence[str] | None = None,
    balanced: bool = True,
) -> TrainedHead:
    """Train a softmax head on vectors xb (n, d) float32 with one label per row.

    Splits the examples (`stratified_split`: by label, and by `groups` when given), fits on
    the train part and measures on the holdout, then REFITS on all the examples for the
    returned weights. `metrics`: train_examples and holdout_examples (the split's sizes),
    holdout_accuracy, holdout_macro_f1, and confusion (rows true, columns predicted, in
    `labels` order) of the train-part model on the holdout.

    `balanced` weighs each label equally in the loss, whatever its count: the counts of
    hand-labelled examples reflect labelling effort, not how common a label is, and the
    holdout is scored by macro F1.

    With groups, a label whose examples all sit in one group stays wholly in train and is
    missing from the holdout (macro F1 then averages over the labels the holdout has).

    Raises ValueError for fewer than 2 labels, a label with fewer than 2 examples, lengths
    that differ, or groups that leave nothing to hold out; TypeError for a wrong dtype.
    """
    xb = check_features("xb", xb)
    labels = _check_labels(labels)
    if len(labels) != len(xb):
        raise ValueError(f"xb has {len(xb)} rows, labels has {len(labels)} entries")
    if (
        isinstance(l2, bool)
        or not isinstance(l2, (int, float, np.floating))
        or not 0 < l2 < math.inf
    ):
        raise ValueError(f"l2 must be a positive number, got {l2!r}")
    counts = Counter(labels)
    names = sorted(counts)
    if len(names) < 2:
        raise ValueError(f"a classifier needs at least 2 labels, got {names}")
    few = {y: c for y, c in counts.items() if c < MIN_EXAMPLES_PER_LABEL}
    if few:
        raise ValueError(
            f"each label needs at least {MIN_EXAMPLES_PER_LABEL} examples; too few: "
            + ", ".join(f"{y!r} has {c}" for y, c in sorted(few.items()))
        )
    train, holdout = stratified_split(
        labels, holdout_fraction=holdout_fraction, seed=seed, groups=groups
    )
    if len(holdout) == 0:
        raise ValueError(
            "the groups leave nothing to hold out: a label is held out only when its "
            "examples span at least 2 groups"
        )
    class_id = {name: k for k, name in enumerate(names)}
    y = np.array([class_id[label] for label in labels], dtype=np.int64)  # (n,)

    W, b = fit_softmax(xb[train], y[train], len(names), l2=l2, balanced=balanced)
    probe = TrainedHead(labels=names, W=W, b=b, metrics={})
    y_true = [labels[i] for i in holdout]
    y_pred = probe.predict(xb[holdout])
    metrics = {
        "train_examples": len(train),
        "holdout_examples": len(holdout),
        "holdout_accuracy": accuracy(y_true, y_pred),
        "holdout_macro_f1": macro_f1(y_true, y_pred, names),
        "confusion": confusion_matrix(y_true, y_pred, names).tolist(),
    }
    # refit on everything, warm-started from the train-part fit (the optimum is unique)
    W, b = fit_softmax(xb, y, len(names), l2=l2, balanced=balanced, init=(W, b))
    return TrainedHead(labels=names, W=W, b=b, metrics=metrics)
