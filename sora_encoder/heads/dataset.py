"""Labelled video files for `sora train classifier`: a folder per label, or a CSV.

    read_folder(DIR)   DIR/<label>/**/*.mp4           -> [LabelledVideo(path, label, group=None)]
    read_csv(FILE)     path,label[,group] (paths relative to the CSV's folder)
                                                      -> [LabelledVideo(path, label, group)]
    pick_labels(examples, ["a", "b"])                 -> the examples of those labels
    check_trainable(examples)                         -> {label: count}, or DatasetError
    holdout_split(examples, fraction, seed)           -> (train, holdout) indices

A group names the source a clip was cut from (a camera, a long video, a channel): the
holdout takes whole groups, so no source has clips on both sides and the holdout
accuracy measures generalisation to unseen sources (`heads.stratified_split`). Without a
group a video is its own group. The split is the one `train_head` draws for the same
labels, groups, fraction and seed, so a fine-tuned encoder and the head trained after it
are measured on the same held-out videos.

Everything wrong with the data is a `DatasetError` whose message says what to do.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sora_encoder.files import LabelledVideo, find_videos
from sora_encoder.heads.softmax import MIN_EXAMPLES_PER_LABEL, stratified_split

REQUIRED_COLUMNS = ("path", "label")
SHOWN = 5  # problems listed before "and N more"


class DatasetError(ValueError):
    """Labelled data that cannot be trained on; the message says what to do instead."""


def _listed(items: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def read_folder(root: str | os.PathLike) -> list[LabelledVideo]:
    """One example per video file under each sub-folder of `root`; the sub-folder's name is
    the label (files directly in `root` have none and are not used)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: give DIR with one sub-folder per label")
    return [
        LabelledVideo(path, sub.name)
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in find_videos([sub])
    ]


def read_csv(csv_path: str | os.PathLike) -> list[LabelledVideo]:
    """Rows of a CSV with a header and the columns path,label and optionally group (other
    columns are ignored); paths are relative to the CSV's folder unless absolute."""
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or ()]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DatasetError(
                    f"{csv_path}: missing column(s) {', '.join(missing)}; the first row must "
                    f"name the columns path,label[,group] (found: {', '.join(columns) or 'none'})"
                )
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {csv_path}: {exc}; give a UTF-8 CSV file") from exc
    has_group = "group" in columns
    examples, no_label, absent = [], [], []
    for line, row in enumerate(rows, start=2):
        if not row.get("path"):
            continue  # a blank line
        if not row.get("label"):
            no_label.append(line)
            continue
        path = (csv_path.parent / row["path"]).resolve()
        if not path.is_file():
            absent.append(f"{row['path']} (line {line})")
            continue
        group = (row.get("group") or row["path"]) if has_group else None
        examples.append(LabelledVideo(path, row["label"], group))
    if no_label:
        raise DatasetError(f"{csv_path}: empty label on line(s) {_listed(no_label)}: label them")
    if absent:
        raise DatasetError(
            f"{csv_path}: no such file: {_listed(absent)} (paths are relative to the CSV's folder)"
        )
    return _deduplicated(examples, str(csv_path))


def _deduplicated(examples: list[LabelledVideo], source: str) -> list[LabelledVideo]:
    """The examples with repeated files listed once; a file under two labels is refused."""
    seen: dict[Path, LabelledVideo] = {}
    clashes = []
    for e in examples:
        first = seen.setdefault(e.path, e)
        if first.label != e.label:
            clashes.append(f"{e.path.name} ({first.label!r} and {e.label!r})")
    if clashes:
        raise DatasetError(
            f"{source}: file(s) with two labels: {_listed(clashes)}; give each video one label"
        )
    return list(seen.values())


def pick_labels(examples: Sequence[LabelledVideo], labels: Sequence[str]) -> list[LabelledVideo]:
    """The examples whose label is one of `labels` (refused: a label with no examples)."""
    known = {e.label for e in examples}
    unknown = [y for y in labels if y not in known]
    if unknown:
        raise DatasetError(
            f"--labels names label(s) with no videos: {_listed(unknown)}; "
            f"the data has: {_listed(sorted(known))}"
        )
    wanted = set(labels)
    return [e for e in examples if e.label in wanted]


def check_trainable(examples: Sequence[LabelledVideo]) -> dict[str, int]:
    """{label: video count}, sorted by label, once the examples can train a head: at least 2
    labels with at least MIN_EXAMPLES_PER_LABEL videos each."""
    counts = dict(sorted(Counter(e.label for e in examples).items()))
    if not counts:
        raise DatasetError(
            "no videos found: give DIR with one sub-folder of videos per label "
            "(DIR/<label>/*.mp4), or --csv FILE with the columns path,label[,group]"
        )
    if len(counts) < 2:
        (only,) = counts
        raise DatasetError(
            f"only one label ({only!r}, {counts[only]} videos): a classifier needs videos "
            "of at least 2 labels"
        )
    few = [f"{y!r} has {c}" for y, c in counts.items() if c < MIN_EXAMPLES_PER_LABEL]
    if few:
        raise DatasetError(
            f"each label needs at least {MIN_EXAMPLES_PER_LABEL} videos (one to train on, "
            f"one to hold out); too few: {_listed(few)}"
        )
    return counts


def groups_of(examples: Sequence[LabelledVideo]) -> list[str] | None:
    """Per-example groups for the split, or None when no example has one."""
    if all(e.group is None for e in examples):
        return None
    return [e.group if e.group is not None else str(e.path) for e in examples]


def holdout_split(
    examples: Sequence[LabelledVideo], *, holdout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) indices, sorted int64: `stratified_split` by label and group, the
    split `train_head` draws for the same arguments. DatasetError if nothing is held out."""
    train, holdout = stratified_split(
        [e.label for e in examples],
        holdout_fraction=holdout_fraction,
        seed=seed,
        groups=groups_of(examples),
    )
    if len(holdout) == 0:
        raise DatasetError(
            "the groups leave nothing to hold out: a label is held out only when its videos "
            "span at least 2 groups; add videos from other sources or drop the group column"
        )
    return train, holdout


def read_examples(
    folder: str | os.PathLike | None = None,
    *,
    csv: str | os.PathLike | None = None,
    labels: Sequence[str] = (),
) -> list[LabelledVideo]:
    """The labelled videos of `folder` (one sub-folder per label) or of a `csv`
    (path,label[,group]), exactly one of the two; with `labels`, only those."""
    if (folder is None) == (csv is None):
        raise DatasetError(
            "give either DIR (one sub-folder of videos per label) or --csv FILE "
            "(columns path,label[,group]), not both" if folder is not None else
            "give DIR (one sub-folder of videos per label) or --csv FILE "
            "(columns path,label[,group])"
        )  # fmt: skip
    examples = read_csv(csv) if csv is not None else read_folder(folder)
    return pick_labels(examples, labels) if labels else examples
