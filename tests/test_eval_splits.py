"""The group split shared by the trainer and the evaluation: deterministic and group-pure."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sora_encoder.eval.splits import split_items, split_of

GROUPS = [str(i) for i in range(2000)]


def test_same_answer_in_another_process() -> None:
    # Python's hash() is salted per process; the split must not be.
    here = "".join("t" if split_of(g) == "test" else "." for g in GROUPS[:200])
    code = (
        "from sora_encoder.eval.splits import split_of;"
        "print(''.join('t' if split_of(str(i)) == 'test' else '.' for i in range(200)))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert here == there


def test_known_values_do_not_drift() -> None:
    # A change here moves groups between train and test: a trained model would then be
    # evaluated on groups it was trained on. Change it only on purpose.
    tests = [g for g in GROUPS[:40] if split_of(g) == "test"]
    assert tests == ["16", "24", "27", "29", "35", "37"]


def test_fraction_is_respected_and_nested() -> None:
    share = np.mean([split_of(g) == "test" for g in GROUPS])
    assert 0.17 < share < 0.23
    small = {g for g in GROUPS if split_of(g, test_fraction=0.1) == "test"}
    large = {g for g in GROUPS if split_of(g, test_fraction=0.3) == "test"}
    assert small < large  # raising the fraction only moves groups to test
    assert all(split_of(g, test_fraction=0.0) == "train" for g in GROUPS[:100])
    assert all(split_of(g, test_fraction=1.0) == "test" for g in GROUPS[:100])


def test_salt_draws_another_split() -> None:
    a = [split_of(g) for g in GROUPS[:300]]
    b = [split_of(g, salt="other") for g in GROUPS[:300]]
    assert a != b


def test_split_items_is_group_pure() -> None:
    rng = np.random.default_rng(0)
    groups = [str(g) for g in rng.integers(0, 60, size=500)]
    train, test = split_items(groups)
    assert len(train) + len(test) == 500 and not set(train) & set(test)
    train_groups = {groups[i] for i in train}
    test_groups = {groups[i] for i in test}
    assert train_groups and test_groups and not train_groups & test_groups
    assert all(split_of(groups[i]) == "test" for i in test)


@pytest.mark.parametrize(
    ("group", "kwargs", "error"),
    [(3, {}, TypeError), ("", {}, ValueError), ("a", {"test_fraction": 1.5}, ValueError)],
)
def test_bad_arguments_raise(group, kwargs, error) -> None:
    with pytest.raises(error):
        split_of(group, **kwargs)


def test_the_trainer_uses_the_same_split() -> None:
    train_data = pytest.importorskip("sora_encoder.train.data")
    for fraction in (0.1, 0.2, 0.5):
        ours = [split_of(g, test_fraction=fraction) for g in GROUPS[:500]]
        theirs = [train_data.group_split(g, fraction) for g in GROUPS[:500]]
        assert ours == theirs


def test_folds_cover_every_group_once_and_stay_put() -> None:
    from sora_encoder.eval.splits import fold_of

    groups = [str(g) for g in range(200)]
    folds = [fold_of(g, 5) for g in groups]
    assert set(folds) == {0, 1, 2, 3, 4}
    assert all(n >= 20 for n in np.bincount(folds))  # 40 expected in each
    assert folds == [fold_of(g, 5) for g in reversed(groups)][::-1]  # per group, not per list
    assert [fold_of(g, 5, salt="other") for g in groups] != folds
    with pytest.raises(ValueError):
        fold_of("1", 1)


def test_cross_validation_scores_every_clip_out_of_its_own_group() -> None:
    from sora_encoder.eval.classify import cross_validate

    rng = np.random.default_rng(0)
    centres = {"a": rng.normal(size=8), "b": rng.normal(size=8)}
    y = ["a", "b"] * 40
    groups = [str(i // 2) for i in range(80)]  # one a and one b per group
    x = np.stack([centres[c] + 0.3 * rng.normal(size=8) for c in y]).astype(np.float32)
    cv = cross_validate(x, y, groups, folds=4, salt="s")
    assert cv["examples"] == 80 and len(cv["fold_accuracy"]) == 4
    assert cv["accuracy"] >= 0.95 and np.sum(cv["confusion"]) == 80
    noise = cross_validate(
        rng.normal(size=(80, 8)).astype(np.float32), y, groups, folds=4, salt="s"
    )
    assert noise["accuracy"] < 0.8  # labels unrelated to x: near chance, not memorised
