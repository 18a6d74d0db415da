"""A fine-tuned encoder and its classifier head, from labelled files.

    examples --decode_examples--> uint8 clips per video: the service's 4-s segments,
                                  decoded ONCE and reused below
      -> probe: the starting encoder's video vectors, softmax fit on the train part
      -> sora_encoder.train.finetune(model, clips, split, head_init=probe)
           the best epoch's encoder (by holdout accuracy)
      -> save_checkpoint(out_dir)                    a normal checkpoint, model version V'
      -> load_runtime(out_dir) encodes the same clips  video vectors of V', as ingest would
      -> fit_head(..., model_version=V')             the head to write or store

The head that leaves this module is NOT the one trained end to end: it is a fresh
softmax head on the fine-tuned encoder's frozen vectors, computed exactly as the service
computes them (the inference runtime: BatchNorm folded, the service's precision). It is
keyed by V', like every head, so the API's classify uses it once the service serves the
fine-tuned checkpoint (SORA_CHECKPOINT=out_dir) and the library is re-embedded with it.

The train/holdout split is the one `fit_head` draws (`dataset.holdout_split`, same labels,
groups, fraction and seed), so the encoder never trains on the videos the head's holdout
metrics are measured on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sora_encoder.config import SoraConfig
from sora_encoder.eval.data import decode_file
from sora_encoder.files import LabelledVideo
from sora_encoder.heads.dataset import holdout_split
from sora_encoder.heads.offline import OnFile, fit_head, per_file, write_head_file
from sora_encoder.heads.softmax import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_L2,
    TrainedHead,
    fit_softmax,
)
from sora_encoder.model.sora import SoraModel
from sora_encoder.runtime import EncoderRuntime, InputSpec
from sora_encoder.train.finetune import EpochStats, FinetuneConfig, finetune
from sora_encoder.video_embedder import mean_vector

log = logging.getLogger(__name__)

HEAD_NAME = "classifier-head.safetensors"  # written into the checkpoint folder
LOG_NAME = "finetune.json"  # the run's settings and per-epoch numbers, ditto


@dataclass(frozen=True)
class DecodedExamples:
    examples: list[LabelledVideo]  # those decoded, in input order
    clips: list[np.ndarray]  # uint8 (n_i, T, S, S, 3) per example
    failed: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FinetunedClassifier:
    head: TrainedHead  # on the fine-tuned encoder's frozen vectors; metrics name V'
    model_version: str  # V', the fine-tuned checkpoint's
    start_version: str  # the encoder fine-tuning started from
    checkpoint_dir: Path
    best_epoch: int
    history: list[EpochStats]  # epoch 0 = the starting encoder with the probe head
    failed: list[tuple[Path, str]]


def decode_examples(
    examples: Sequence[LabelledVideo],
    spec: InputSpec,
    *,
    segment_s: float = 4.0,
    on_file: OnFile | None = None,
) -> DecodedExamples:
    """Each example's segment clips, as the service decodes them; undecodable files are
    skipped and listed. Memory: T x S x S x 3 bytes per segment (0.6 MB for sora-s)."""
    kept, clips, failed = per_file(
        examples, lambda p: decode_file(p, spec, segment_s=segment_s), on_file
    )
    return DecodedExamples(kept, clips, failed)


def video_vectors(runtime: EncoderRuntime, clips: Sequence[np.ndarray]) -> np.ndarray:
    """(n, D) float32: each video's normalised mean segment vector (the service's)."""
    return np.stack([mean_vector(runtime.encode_clips(c)) for c in clips]).astype(np.float32)


def finetune_classifier(
    decoded: DecodedExamples,
    *,
    model: SoraModel,
    config: SoraConfig,
    start_version: str,
    out_dir: str | os.PathLike,
    cfg: FinetuneConfig,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int = 0,
    l2: float = DEFAULT_L2,
    device: str | None = None,
    precision: str = "auto",
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> FinetunedClassifier:
    """Fine-tune, save the best encoder to `out_dir` (with the head and a JSON log beside
    it), and train the head on its vectors (see the module docstring). `precision` is the
    service's, for the final vectors. ValueError / DatasetError for unusable data."""
    from sora_encoder import load_runtime
    from sora_encoder.checkpoint import save_checkpoint

    examples = decoded.examples
    names = sorted({e.label for e in examples})
    y = np.array([names.index(e.label) for e in examples], np.int64)  # (n,) class ids
    train, holdout = holdout_split(examples, holdout_fraction=holdout_fraction, seed=seed)

    # The probe: a softmax head on the starting encoder's vectors of the train videos.
    start = EncoderRuntime(model, config, device=device, precision="fp32", version=start_version)
    x0 = video_vectors(start, [decoded.clips[i] for i in train])  # (n_train, D)
    W0, b0 = fit_softmax(x0, y[train], len(names), l2=l2)
    del start

    result = finetune(
        model, config, decoded.clips, y, train=train, holdout=holdout, n_classes=len(names),
        cfg=dataclasses.replace(cfg, seed=seed), head_init=(W0, b0), device=device,
        on_epoch=on_epoch,
    )  # fmt: skip
    out = Path(out_dir)
    version = save_checkpoint(result.model, config, out)
    runtime = load_runtime(out, device=device, precision=precision)
    assert runtime.model_version == version, f"{out} reloads as {runtime.model_version}"
    xb = video_vectors(runtime, decoded.clips)  # (n, D) vectors of V'
    epochs = [dataclasses.asdict(h) for h in result.history]
    for h in epochs:
        h["train_loss"] = None if np.isnan(h["train_loss"]) else h["train_loss"]
    head = fit_head(
        examples, xb, model_version=version, holdout_fraction=holdout_fraction, seed=seed, l2=l2,
        provenance={
            "mode": "finetune",
            "start_model_version": start_version,
            "best_epoch": result.best_epoch,
            "finetune_holdout_accuracy": result.history[result.best_epoch].holdout_accuracy,
        },
    )  # fmt: skip
    write_head_file(out / HEAD_NAME, head)
    run_log = {
        "model_version": version,
        "start_model_version": start_version,
        "labels": names,
        "examples": len(examples),
        "train_videos": len(train),
        "holdout_videos": len(holdout),
        "best_epoch": result.best_epoch,
        "config": dataclasses.asdict(cfg) | {"seed": seed},
        "epochs": epochs,
    }
    tmp = out / (LOG_NAME + ".tmp")
    tmp.write_text(json.dumps(run_log, indent=2, allow_nan=False) + "\n", "utf-8")
    os.replace(tmp, out / LOG_NAME)
    return FinetunedClassifier(
        head=head,
        model_version=version,
        start_version=start_version,
        checkpoint_dir=out,
        best_epoch=result.best_epoch,
        history=result.history,
        failed=decoded.failed,
    )
