"""The one train/test split of the project: by group, deterministic, shared by the trainer
and the evaluation.

    group (str, e.g. a source video or a camera)
      -> sha256("<salt>-split/<group>") -> first 8 bytes, big-endian, as an integer u
      -> "test" if u / 2**64 < test_fraction else "train"

A group's side depends only on its own name, the salt and the fraction: adding or removing
other groups never moves it, the answer is the same in every process and on every machine
(Python's `hash()` is salted per process, so it is not used), and every clip of a group lands
on the same side, so a model trained on the "train" side is never evaluated on a camera it
has seen. Raising `test_fraction` only moves groups from train to test (u is fixed), so a
larger test side contains the smaller one. The share of test groups is `test_fraction` in
expectation, not exactly: 113 groups at 0.2 give about 23 +/- 4.

The trainer's `sora_encoder.train.data.group_split(group, test_fraction)` computes the same
hash with the default salt; tests/test_eval_splits.py holds the two together, so a model
trained on its "train" side is evaluated here on groups it never saw.

    split_of("42")                          -> "train" | "test"
    split_items(groups) -> (train_idx, test_idx)   indices into a list of per-item groups
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["DEFAULT_SALT", "DEFAULT_TEST_FRACTION", "Side", "fold_of", "split_items", "split_of"]

Side = Literal["train", "test"]

DEFAULT_TEST_FRACTION = 0.2  # a fifth of the groups: ~23 of the 113 in the shared clips
DEFAULT_SALT = "sora"  # change it to draw another split (e.g. for a second evaluation)


def _unit(group: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}-split/{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1)


def split_of(
    group: str, *, test_fraction: float = DEFAULT_TEST_FRACTION, salt: str = DEFAULT_SALT
) -> Side:
    """The side of `group`: "train" or "test" (see the module docstring).

    TypeError unless `group` and `salt` are strings; ValueError unless 0 <= test_fraction <= 1
    and `group` is non-empty.
    """
    if not isinstance(group, str) or not isinstance(salt, str):
        kinds = f"{type(group).__name__}, {type(salt).__name__}"
        raise TypeError(f"group and salt must be str, got {kinds}")
    if not group:
        raise ValueError("group must be a non-empty string")
    if isinstance(test_fraction, bool) or not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction!r}")
    return "test" if _unit(group, salt) < test_fraction else "train"


def on_side(
    group: str,
    side: str,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    salt: str = DEFAULT_SALT,
) -> bool:
    """Whether a group falls on `side` ("train", "test", or "all": every group)."""
    return side == "all" or split_of(group, test_fraction=test_fraction, salt=salt) == side


def split_items(
    groups: Sequence[str],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    salt: str = DEFAULT_SALT,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (sorted int64) of items whose groups are `groups[i]`."""
    sides = [split_of(g, test_fraction=test_fraction, salt=salt) for g in groups]
    is_test = np.array([s == "test" for s in sides], dtype=bool)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def fold_of(group: str, folds: int, *, salt: str = DEFAULT_SALT) -> int:
    """The cross-validation fold (0..folds-1) of `group`: from its own hash (another key
    than split_of's), so every clip of a group is in one fold and the folds do not depend
    on which other groups exist. ValueError unless folds >= 2."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    return min(int(_unit(group, f"{salt}-fold") * folds), folds - 1)
