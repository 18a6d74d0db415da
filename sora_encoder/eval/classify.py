"""Classification on frozen vectors, split by group: how much do the vectors know?

    items with labels --split_of(group)--> train side | test side
    every file decoded once; every embedder on the clips in time order (and reversed)
    per task (a set of labels) and embedder:
        head = train_head(video vectors of train-side clips)      (softmax, its own
                                                                   group-split holdout inside)
        accuracy, macro-F1, confusion of head.predict(test-side video vectors)
    time reversal: every 4-s clip and its frame-reversed copy, labels forward / reversed,
        segment vectors, same split: chance is 0.5, and exactly 0.5 for an order-invariant
        embedder (the mean-pooled CNN gives both copies the same vector)

The heads and metrics are `sora_encoder.heads` (`train_head`, `accuracy`, `macro_f1`,
`confusion_matrix`), the same the service's classifiers are trained with.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sora_encoder.eval.data import FORWARD, REVERSED, embed_files
from sora_encoder.eval.splits import DEFAULT_SALT, DEFAULT_TEST_FRACTION, fold_of, split_of
from sora_encoder.files import LabelledVideo
from sora_encoder.heads import accuracy, confusion_matrix, macro_f1, train_head

__all__ = [
    "DEFAULT_TASKS",
    "TIME_REVERSAL",
    "ClassifyResult",
    "Task",
    "evaluate_task",
    "limit_per_label",
    "run_classify",
    "tasks_for",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]


# The labelled tasks of the shared clips: one hard (same cameras, fight or not), one easy.
DEFAULT_TASKS = (
    Task("fight_vs_no_fight", ("fight", "no_fight")),
    Task("typing_vs_doing_exercises", ("typing", "doing_exercises")),
)
TIME_REVERSAL = "time_reversal"
FORWARD_LABEL, REVERSED_LABEL = "forward", "reversed"


def tasks_for(
    items: Sequence[LabelledVideo], label_sets: Sequence[Sequence[str]] | None
) -> list[Task]:
    """Tasks from explicit label sets, else the DEFAULT_TASKS whose labels the items all
    have, else one task over every label. ValueError for a label no item has."""
    present = {it.label for it in items if it.label}
    if label_sets:
        tasks = []
        for labels in label_sets:
            labels = tuple(dict.fromkeys(x.strip() for x in labels if x.strip()))
            missing = sorted(set(labels) - present)
            if missing:
                raise ValueError(f"no clip has label(s) {missing}; labels: {sorted(present)}")
            if len(labels) < 2:
                raise ValueError(f"a task needs at least 2 labels, got {list(labels)}")
            tasks.append(Task("_vs_".join(labels), labels))
        return tasks
    tasks = [t for t in DEFAULT_TASKS if set(t.labels) <= present]
    if tasks:
        return tasks
    if len(present) < 2:
        raise ValueError(f"the manifest needs at least 2 labels, got {sorted(present)}")
    return [Task("_vs_".join(sorted(present)), tuple(sorted(present)))]


def limit_per_label(items: Sequence[LabelledVideo], limit: int | None, *, salt: str = DEFAULT_SALT):
    """At most `limit` items per label, picked in a stable hashed order (not by name)."""
    if limit is None:
        return list(items)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")

    def order(it: LabelledVideo) -> str:
        return hashlib.sha256(f"{salt}\0order\0{it.path}".encode()).hexdigest()

    kept: Counter[str] = Counter()
    out = []
    for it in sorted(items, key=order):
        if kept[it.label] < limit:
            kept[it.label] += 1
            out.append(it)
    return sorted(out, key=lambda it: str(it.path))


def evaluate_task(
    x_train: np.ndarray,
    y_train: Sequence[str],
    g_train: Sequence[str],
    x_test: np.ndarray,
    y_test: Sequence[str],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a head on the train side (`train_head`, with its group-split holdout on the
    train groups), score it on the test side."""
    head = train_head(x_train, list(y_train), groups=list(g_train), seed=seed)
    labels = list(head.labels)
    pred = head.predict(x_test)
    y_test = list(y_test)
    return {
        "labels": labels,
        "train_examples": len(y_train),
        "test_examples": len(y_test),
        "test_counts": {y: int(c) for y, c in sorted(Counter(y_test).items())},
        "accuracy": float(accuracy(y_test, pred)),
        "macro_f1": float(macro_f1(y_test, pred, labels)),
        "confusion": np.asarray(confusion_matrix(y_test, pred, labels)).tolist(),
    }


def cross_validate(
    x: np.ndarray, y: Sequence[str], groups: Sequence[str], *, folds: int, salt: str, seed: int = 0
) -> dict[str, Any]:
    """Grouped k-fold: each fold's groups scored by a head fitted on the other folds; the
    predictions pooled over every clip. Folds without both labels in training are skipped."""
    fold = np.array([fold_of(g, folds, salt=salt) for g in groups])
    y = list(y)
    pred: list[str | None] = [None] * len(y)
    per_fold = []
    for k in range(folds):
        te = np.flatnonzero(fold == k)
        tr = np.flatnonzero(fold != k)
        if len(te) == 0 or len({y[i] for i in tr}) < 2:
            continue
        head = train_head(x[tr], [y[i] for i in tr], groups=[groups[i] for i in tr], seed=seed)
        for i, p in zip(te, head.predict(x[te]), strict=True):
            pred[i] = p
        per_fold.append(float(accuracy([y[i] for i in te], [pred[i] for i in te])))
    scored = [i for i, p in enumerate(pred) if p is not None]
    yt, yp = [y[i] for i in scored], [pred[i] for i in scored]
    labels = sorted(set(y))
    return {
        "folds": folds,
        "examples": len(scored),
        "accuracy": float(accuracy(yt, yp)),
        "macro_f1": float(macro_f1(yt, yp, labels)),
        "fold_accuracy": per_fold,
        "confusion": np.asarray(confusion_matrix(yt, yp, labels)).tolist(),
        "labels": labels,
    }


@dataclass
class ClassifyResult:
    embedders: list[dict[str, Any]]
    tasks: list[dict[str, Any]]  # name, labels
    metrics: dict[str, dict[str, dict[str, Any]]]  # embedder -> task -> scores
    setup: dict[str, Any]
    failed: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "classify",
            "setup": self.setup,
            "embedders": self.embedders,
            "tasks": self.tasks,
            "metrics": self.metrics,
            "failed": self.failed,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def run_classify(
    items: Sequence[LabelledVideo],
    embedders: Sequence,
    tasks: Sequence[Task],
    *,
    time_reversal: bool = True,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    salt: str = DEFAULT_SALT,
    seed: int = 0,
    folds: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> ClassifyResult:
    """Every task (and the time-reversal task) for every embedder; see the module docstring.

    `folds` >= 2 also scores each task by grouped cross-validation over every clip of its
    labels, train and test side alike (`cross_validate`): with a handful of test-side clips
    one clip moves the accuracy by a sixth, and this uses them all. Caveat: an encoder
    trained on the train side has seen those clips (never their labels).

    The time-reversal task uses the clips of every task's labels. ValueError when a task
    has no test-side or no train-side clip.
    """
    t0 = time.perf_counter()
    wanted = {y for t in tasks for y in t.labels}
    used = sorted((it for it in items if it.label in wanted), key=lambda it: str(it.path))
    side = [split_of(it.group, test_fraction=test_fraction, salt=salt) for it in used]
    views = {**FORWARD, **(REVERSED if time_reversal else {})}
    step = (lambda n, t: progress("embed", n, t)) if progress else None
    vec = embed_files([it.path for it in used], embedders, views=views, progress=step)
    ok = set(vec.ok())
    metric_fns = {"seed": seed}

    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for e in embedders:
        metrics[e.name] = {}
        for task in tasks:
            idx = [i for i in sorted(ok) if used[i].label in task.labels]
            tr = [i for i in idx if side[i] == "train"]
            te = [i for i in idx if side[i] == "test"]
            if not tr or not te:
                raise ValueError(
                    f"task {task.name}: {len(tr)} train-side and {len(te)} test-side clips; "
                    "each side needs some (change --test-fraction or --salt)"
                )
            metrics[e.name][task.name] = evaluate_task(
                vec.videos(e.name, idx=tr),
                [used[i].label for i in tr],
                [used[i].group for i in tr],
                vec.videos(e.name, idx=te),
                [used[i].label for i in te],
                **metric_fns,
            )
            if folds:
                metrics[e.name][task.name]["cv"] = cross_validate(
                    vec.videos(e.name, idx=idx),
                    [used[i].label for i in idx],
                    [used[i].group for i in idx],
                    folds=folds, salt=salt, seed=seed,
                )  # fmt: skip
        if time_reversal:
            metrics[e.name][TIME_REVERSAL] = _time_reversal(
                vec, e.name, used, side, sorted(ok), metric_fns
            )

    task_json = [{"name": t.name, "labels": list(t.labels)} for t in tasks]
    if time_reversal:
        task_json.append({"name": TIME_REVERSAL, "labels": [FORWARD_LABEL, REVERSED_LABEL]})
    counts = Counter((used[i].label, side[i]) for i in ok)
    setup = {
        "clips": len(used),
        "clips_by_label_and_side": {f"{y}/{s}": c for (y, s), c in sorted(counts.items())},
        "groups_test": len({used[i].group for i in ok if side[i] == "test"}),
        "groups_train": len({used[i].group for i in ok if side[i] == "train"}),
        "test_fraction": test_fraction,
        "salt": salt,
        "folds": folds,
        "features": "video vectors (normalised mean of 4-s segment vectors); time reversal: "
        "segment vectors",
    }
    return ClassifyResult(
        embedders=[
            {"name": e.name, "key": e.key, "dim": int(getattr(e, "dim", 0))} for e in embedders
        ],
        tasks=task_json,
        metrics=metrics,
        setup=setup,
        failed={str(p): why for p, why in vec.failed.items()},
        timings={**vec.timings, "total_s": time.perf_counter() - t0},
    )


def _time_reversal(vec, name: str, used, side, ok, metric_fns) -> dict[str, Any]:
    """Segment vectors of each clip in time order and reversed, as a 2-label task."""
    fwd, rev = vec.segments[(name, "forward")], vec.segments[(name, "reversed")]
    parts: dict[str, tuple[list, list, list]] = {"train": ([], [], []), "test": ([], [], [])}
    for i in ok:
        xs, ys, gs = parts[side[i]]
        n = len(fwd[i])
        xs += [fwd[i], rev[i]]
        ys += [FORWARD_LABEL] * n + [REVERSED_LABEL] * n
        gs += [used[i].group] * (2 * n)
    (xtr, ytr, gtr), (xte, yte, _) = parts["train"], parts["test"]
    if not xtr or not xte:
        raise ValueError("time reversal: no train-side or no test-side clip")
    return evaluate_task(
        np.concatenate(xtr).astype(np.float32),
        ytr,
        gtr,
        np.concatenate(xte).astype(np.float32),
        yte,
        **metric_fns,
    )
