"""`sora train-classifier` and `sora classify`: heads on Sora vectors, served by the API."""

from __future__ import annotations

import argparse
import csv
from typing import Any

from .client_options import add_client_options, connect, read_vector_file


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train-classifier", help="train a classifier from labelled video ids")
    p.add_argument("name")
    p.add_argument(
        "--examples", metavar="CSV", required=True, help="a CSV with columns video_id,label"
    )
    p.add_argument("--holdout", type=float, default=0.25, help="held-out fraction for metrics")
    p.add_argument("--seed", type=int, default=0)
    add_client_options(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("classify", help="classify a video or a vector")
    p.add_argument("name", help="the classifier's name")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", type=int, metavar="ID")
    q.add_argument("--vector-file", metavar="F")
    add_client_options(p)
    p.set_defaults(func=run_classify)


def read_examples(path: str) -> list[tuple[int, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"video_id", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: needs a header row with the columns video_id,label")
    return [(int(r["video_id"]), r["label"]) for r in rows]


def run_train(args: argparse.Namespace) -> int:
    examples = read_examples(args.examples)
    with connect(args) as client:
        c = client.train_classifier(
            args.name, examples, holdout_fraction=args.holdout, seed=args.seed
        )
    print(
        f"classifier {c.name} (id {c.id}): labels {', '.join(c.labels)}; "
        f"{c.train_examples} train / {c.holdout_examples} held out; held-out accuracy "
        f"{c.holdout_accuracy:.3f}, macro-F1 {c.holdout_macro_f1:.3f}; model {c.model_version}"
    )
    return 0


def run_classify(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.id is not None:
            scores = client.classify(args.name, video_id=args.id)
        else:
            scores = client.classify(args.name, vector=read_vector_file(args.vector_file))
    for label, p in scores:
        print(f"{p:.4f}  {label}")
    return 0
