"""Classifier heads from labelled files, without the service: embed, train, write.

    examples --embed_examples(embedder)--> video vectors (n, D), as ingest computes them
             --fit_head(examples, xb, model_version)--> TrainedHead (holdout metrics,
                                                        provenance in its metrics)
             --write_head_file(path)   (or the CLI's store_head into the service's store)

A head is only meaningful on vectors of the encoder that trained it, so its model version
travels with it: in the head file (metrics["model_version"]) and in the store's
classifiers row, which the API's classify call checks against the version it serves.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sora_encoder import VideoEmbedder
from sora_encoder.files import LabelledVideo
from sora_encoder.heads.dataset import groups_of
from sora_encoder.heads.softmax import DEFAULT_HOLDOUT_FRACTION, DEFAULT_L2, TrainedHead, train_head
from sora_encoder.media import MediaError

log = logging.getLogger(__name__)

OnFile = Callable[[int, int, Path, Exception | None], None]  # (done, total, path, error)
T = TypeVar("T")


def per_file(
    examples: Sequence[LabelledVideo], read: Callable[[Path], T], on_file: OnFile | None = None
) -> tuple[list[LabelledVideo], list[T], list[tuple[Path, str]]]:
    """read(example.path) for each example -> (examples read, their results, (file, reason)
    of those skipped): a file that cannot be decoded is logged and skipped, not fatal."""
    kept: list[LabelledVideo] = []
    results: list[T] = []
    failed: list[tuple[Path, str]] = []
    for done, e in enumerate(examples, start=1):
        error: Exception | None = None
        try:
            results.append(read(e.path))
            kept.append(e)
        except (MediaError, OSError) as exc:
            error = exc
            failed.append((e.path, str(exc)))
            log.warning("skipping %s: %s", e.path, exc)
        if on_file is not None:
            on_file(done, len(examples), e.path, error)
    return kept, results, failed


@dataclass(frozen=True)
class EmbeddedExamples:
    examples: list[LabelledVideo]  # those embedded, in input order
    xb: np.ndarray  # (n, D) float32 unit video vectors, row i of examples[i]
    model_version: str
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason) skipped


def embed_examples(
    examples: Sequence[LabelledVideo], embedder: VideoEmbedder, *, on_file: OnFile | None = None
) -> EmbeddedExamples:
    """The video vector of each example's file (the normalised mean of its 4-s segment
    vectors, as ingest stores it). Files that cannot be decoded are skipped and listed."""
    kept, vectors, failed = per_file(examples, lambda p: embedder.embed(p).vector, on_file)
    dim = embedder.runtime.dim
    xb = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return EmbeddedExamples(kept, xb, embedder.model_version, failed)


def fit_head(
    examples: Sequence[LabelledVideo],
    xb: np.ndarray,
    *,
    model_version: str,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    provenance: dict[str, Any] | None = None,
) -> TrainedHead:
    """`train_head` on the vectors (split by label and group), with metrics that also say
    what made the head: model_version, examples_per_label, and `provenance` (JSON-able).
    ValueError for data a head cannot be trained on."""
    head = train_head(
        xb,
        [e.label for e in examples],
        holdout_fraction=holdout_fraction,
        seed=seed,
        l2=l2,
        groups=groups_of(examples),
    )
    metrics = {
        **head.metrics,
        **(provenance or {}),
        "model_version": model_version,
        "examples_per_label": dict(sorted(Counter(e.label for e in examples).items())),
    }
    return TrainedHead(labels=head.labels, W=head.W, b=head.b, metrics=metrics)


def head_model_version(head: TrainedHead) -> str:
    """The model version a head from `fit_head` was trained on."""
    version = head.metrics.get("model_version")
    if not isinstance(version, str) or not version:
        raise ValueError("the head does not record the model version of its vectors")
    return version


def write_head_file(path: str | os.PathLike, head: TrainedHead) -> Path:
    """The head as one safetensors file (`TrainedHead.to_bytes`: weights, labels, metrics
    with the model version), written to a temporary name and renamed."""
    head_model_version(head)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(head.to_bytes())
    os.replace(tmp, path)
    return path


def read_head_file(path: str | os.PathLike) -> TrainedHead:
    """Inverse of `write_head_file`; ValueError for a file that is not such a head."""
    head = TrainedHead.from_bytes(Path(path).read_bytes())
    head_model_version(head)
    return head
