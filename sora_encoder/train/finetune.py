"""Supervised end-to-end fine-tuning: a Sora encoder and a linear head on labelled videos.

    videos: uint8 clips per video (n_i, T, S, S, 3), the service's 4-s segments; a label each
    train segments = every segment of the train videos, labelled by its video
    for epoch in 1..E:
        for a batch of segments (order fixed by (seed, epoch)):
            x = light_view(clips)           random resized crop + flip  (B, T, 3, S, S)
            z = model.encode_video(x)       (B, D) unit Sora vectors; bf16 autocast on CUDA
            loss = cross-entropy(head(z), y), class-balanced
            AdamW: the encoder at lr x encoder_lr_scale, the head at lr; warm-up + cosine
        holdout: eval mode, each held-out video's clean segments -> normalised mean vector
                 (the service's video vector) -> head -> accuracy and cross-entropy
    the best epoch (holdout accuracy, ties: lower holdout loss) is returned

The head starts from `head_init` when given: a linear probe fitted on the starting
encoder's frozen vectors ("LP-FT", Kumar et al. 2022: a random head's early gradients
distort pretrained features before the head is any good). Epoch 0 in the history is that
starting point, measured like the others, so the gain from fine-tuning is visible.

Model selection on the holdout makes the best epoch's holdout accuracy slightly optimistic;
with few videos it is the only check available. Nothing here prints or writes files:
`on_epoch` receives each epoch's numbers.

    load_model(checkpoint | variant) -> (model, config, version)   what to start from
    finetune(model, config, videos, y, train=, holdout=, ...) -> FinetuneResult
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sora_encoder.checkpoint import load_checkpoint, model_version
from sora_encoder.config import SoraConfig
from sora_encoder.factory import create_model
from sora_encoder.model.sora import SoraModel
from sora_encoder.registry import get_model_config
from sora_encoder.train.augment import (
    hflip,
    normalize,
    quantize_8bit,
    random_resized_crop,
    to_float,
)
from sora_encoder.train.loop import epoch_order, lr_factor, param_groups, resolve_precision
from sora_encoder.train.loop import step_seed as aug_seed
from sora_encoder.transforms import clips_to_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Every knob of a fine-tuning run; the defaults suit a few hundred videos on a CPU."""

    # Passes over the train segments. A pretrained encoder adapts in a few; more over-fits
    # small label sets (the best epoch is kept anyway).
    epochs: int = 5
    # Segments per step: small, for a CPU's memory and patience (BatchNorm statistics are
    # frozen by default, below, so a small batch does not make them noisy).
    batch_size: int = 8
    # The head's AdamW learning rate; the encoder gets lr x encoder_lr_scale (a pretrained
    # encoder should move less than its head: the usual 10x ratio), 3e-5 by default, the
    # low end of BERT-style fine-tuning. With the encoder at 1e-4, 12 tiny videos on the
    # seed-initialised sora-t gave a training loss of 8 after one epoch; at 3e-5 it stayed
    # below 1.5 with the holdout intact.
    lr: float = 3e-4
    encoder_lr_scale: float = 0.1
    # Decoupled weight decay on the encoder's matrices (none on norms, biases, embeddings,
    # nor on the head, whose probe init already carries its own L2).
    weight_decay: float = 0.05
    # Linear warm-up over this share of the steps (at least one), then cosine to
    # min_lr_frac x lr.
    warmup_frac: float = 0.1
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0  # global gradient norm
    # Keep BatchNorm's running statistics (the starting encoder's, measured on clean
    # windows) and normalise with them in training too; its scale and shift still learn.
    # Batch statistics of a few augmented clips are noisy, and a head that amplifies small
    # differences between vectors turns that noise into a wild training loss.
    freeze_batchnorm: bool = True
    # Light augmentation: one random resized crop per clip (area share, aspect ratio), then
    # a left-right flip. Labels are about content, so no colour or time edits are needed.
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    # One seed for the batch order and the augmentations.
    seed: int = 0
    # "auto": bf16 autocast on CUDA, fp32 on the CPU; or "fp32" / "bf16".
    precision: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 1:
            problems.append(f"epochs and batch_size must be >= 1, got {self.epochs}, "
                            f"{self.batch_size}")  # fmt: skip
        if not self.lr > 0 or not self.encoder_lr_scale >= 0 or self.weight_decay < 0:
            problems.append("lr must be > 0, encoder_lr_scale and weight_decay >= 0")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_frac <= 1:
            problems.append("warmup_frac must be in [0, 1) and min_lr_frac in [0, 1]")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            problems.append(f"crop_scale must be 0 < lo <= hi <= 1, got {self.crop_scale}")
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if problems:
            raise ValueError("invalid FinetuneConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 0: the starting encoder and head, before any step
    train_loss: float  # mean over the epoch's steps (NaN for epoch 0)
    holdout_accuracy: float  # of the video vectors' predictions on the held-out videos
    holdout_loss: float  # mean cross-entropy there
    lr: float  # the head's learning rate at the epoch's last step
    seconds: float

    def line(self) -> str:
        loss = "-" if math.isnan(self.train_loss) else f"{self.train_loss:.4f}"
        return (
            f"epoch {self.epoch}  train loss {loss}  holdout accuracy "
            f"{self.holdout_accuracy:.3f}  holdout loss {self.holdout_loss:.4f}  "
            f"lr {self.lr:.2e}  {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class FinetuneResult:
    model: SoraModel  # the best epoch's encoder: CPU, eval mode
    W: np.ndarray  # (D, L) float32, the best epoch's head: logits = x @ W + b
    b: np.ndarray  # (L,) float32
    best_epoch: int  # >= 1
    history: list[EpochStats]  # epoch 0 (the start), then 1..epochs


def light_view(
    clips: torch.Tensor, cfg: FinetuneConfig, config: SoraConfig, generator: torch.Generator
) -> torch.Tensor:
    """uint8 clips (B, T, S, S, 3) -> augmented, normalised model input (B, T, 3, S, S)."""
    S = config.input.image_size
    x = to_float(clips)  # (B, T, 3, S, S) in [0, 1]
    x = random_resized_crop(x, S, generator=generator, scale=cfg.crop_scale, ratio=cfg.crop_ratio)
    x = hflip(x, generator=generator, p=cfg.flip_p)
    return normalize(quantize_8bit(x), config.input)


def _check_inputs(
    videos: Sequence[np.ndarray], y: np.ndarray, train: np.ndarray, holdout: np.ndarray,
    config: SoraConfig, n_classes: int,
) -> None:  # fmt: skip
    T, S = config.input.num_frames, config.input.image_size
    for i, clips in enumerate(videos):
        if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8:
            raise TypeError(f"video {i}: clips must be a uint8 array, got {type(clips).__name__}")
        if clips.ndim != 5 or clips.shape[1:] != (T, S, S, 3) or len(clips) == 0:
            raise ValueError(f"video {i}: clips must be (n>0, {T}, {S}, {S}, 3), {clips.shape}")
    if y.shape != (len(videos),) or y.dtype.kind not in "iu":
        raise ValueError(f"y must be ({len(videos)},) class ids, got {y.shape} {y.dtype}")
    if len(y) and not (0 <= y.min() and y.max() < n_classes):
        raise ValueError(f"class ids must be in [0, {n_classes})")
    if len(train) == 0 or len(holdout) == 0 or np.intersect1d(train, holdout).size:
        raise ValueError("train and holdout must be non-empty and disjoint")
    if len(np.unique(y[train])) < 2:
        raise ValueError("the train videos must hold at least 2 labels")


class _Head(nn.Module):
    """logits = x @ W + b: the TrainedHead convention, so weights pass through unchanged."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.as_tensor(np.asarray(W, np.float32)).clone())  # (D, L)
        self.b = nn.Parameter(torch.as_tensor(np.asarray(b, np.float32)).clone())  # (L,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() @ self.W + self.b  # (B, L)


@torch.no_grad()
def _evaluate(
    model: SoraModel, head: _Head, videos: Sequence[np.ndarray], y: np.ndarray,
    idx: np.ndarray, *, config: SoraConfig, batch_size: int, device: torch.device, bf16: bool,
) -> tuple[float, float]:  # fmt: skip
    """(accuracy, mean cross-entropy) of the head on the normalised mean of each video's
    clean segment vectors: the video vector the service stores."""
    model.eval()
    vecs = []
    for i in idx:
        clips = videos[i]
        parts = []
        for s in range(0, len(clips), batch_size):
            frames = clips_to_frames(clips[s : s + batch_size], config.input, device=device)
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                parts.append(model.encode_video(frames).float())  # (b, D)
        vecs.append(F.normalize(torch.cat(parts).mean(0), dim=0))  # (D,)
    logits = head(torch.stack(vecs))  # (n, L)
    target = torch.as_tensor(y[idx], device=logits.device)
    accuracy = (logits.argmax(1) == target).float().mean().item()
    return accuracy, F.cross_entropy(logits, target).item()


def finetune(
    model: SoraModel,
    config: SoraConfig,
    videos: Sequence[np.ndarray],
    y: np.ndarray,
    *,
    train: np.ndarray,
    holdout: np.ndarray,
    n_classes: int,
    cfg: FinetuneConfig,
    head_init: tuple[np.ndarray, np.ndarray] | None = None,
    device: str | torch.device | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of `model` and a linear head (see the module docstring).

    `videos[i]` are video i's clips, `y[i]` its class id; `train` and `holdout` index
    videos. `head_init` (W (D, L), b (L,)) starts the head, else zeros. `model` itself is
    left as it was. FloatingPointError if the loss stops being finite.
    """
    y = np.asarray(y)
    train, holdout = np.asarray(train, np.int64), np.asarray(holdout, np.int64)
    _check_inputs(videos, y, train, holdout, config, n_classes)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = resolve_precision(cfg.precision, dev) == "bf16"
    D = config.projection.out_dim
    W0, b0 = head_init if head_init is not None else (np.zeros((D, n_classes)), np.zeros(n_classes))
    assert np.shape(W0) == (D, n_classes) and np.shape(b0) == (n_classes,), (
        f"head_init must be W ({D}, {n_classes}) and b ({n_classes},), got "
        f"{np.shape(W0)}, {np.shape(b0)}"
    )
    net = copy.deepcopy(model).to(dev)
    head = _Head(W0, b0).to(dev)
    for p in net.parameters():
        p.requires_grad_(True)

    segments = np.array([(v, s) for v in train for s in range(len(videos[v]))], np.int64)  # (N, 2)
    seg_y = torch.as_tensor(y[segments[:, 0]], device=dev)  # (N,)
    counts = torch.bincount(seg_y, minlength=n_classes).float()
    # Class-balanced: each label weighs the same whatever its number of segments.
    class_weight = torch.where(counts > 0, len(segments) / (n_classes * counts.clamp(min=1)), 0.0)
    steps_per_epoch = math.ceil(len(segments) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, round(cfg.warmup_frac * total))
    groups = param_groups(net, cfg.weight_decay)
    for g in groups:
        g["base_lr"] = cfg.lr * cfg.encoder_lr_scale
    groups.append({"params": list(head.parameters()), "weight_decay": 0.0, "base_lr": cfg.lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    params = [p for g in groups for p in g["params"]]

    def measure() -> tuple[float, float]:
        return _evaluate(
            net, head, videos, y, holdout, config=config, batch_size=cfg.batch_size,
            device=dev, bf16=bf16,
        )  # fmt: skip

    t0 = time.perf_counter()
    acc, loss = measure()
    history = [EpochStats(0, math.nan, acc, loss, 0.0, time.perf_counter() - t0)]
    if on_epoch is not None:
        on_epoch(history[0])
    best: tuple[float, float] | None = None
    best_state: tuple[dict, dict] | None = None
    best_epoch = 0
    step, lr = 0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        _train_mode(net, freeze_batchnorm=cfg.freeze_batchnorm)
        order = epoch_order(cfg.seed, epoch, len(segments))
        losses = []
        for k in range(steps_per_epoch):
            pick = segments[order[k * cfg.batch_size : (k + 1) * cfg.batch_size]]  # (B, 2)
            batch = np.stack([videos[v][s] for v, s in pick])  # (B, T, S, S, 3) uint8
            g = torch.Generator(device=dev).manual_seed(aug_seed(cfg.seed, step))
            x = light_view(torch.from_numpy(batch).to(dev), cfg, config, g)  # (B, T, 3, S, S)
            target = torch.as_tensor(y[pick[:, 0]], device=dev)
            factor = lr_factor(step, warmup=warmup, total=total, min_frac=cfg.min_lr_frac)
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
            lr = cfg.lr * factor
            with torch.autocast(dev.type, torch.bfloat16, enabled=bf16):
                z = net.encode_video(x)  # (B, D)
            loss = F.cross_entropy(head(z), target, weight=class_weight)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()} at step {step}: lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            step += 1
        acc, h_loss = measure()
        stats = EpochStats(epoch, float(np.mean(losses)), acc, h_loss, lr, time.perf_counter() - t0)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if best is None or (acc, -h_loss) > best:
            best, best_epoch = (acc, -h_loss), epoch
            best_state = (_cpu_state(net), _cpu_state(head))
    assert best_state is not None, "at least one epoch ran"
    net.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    return FinetuneResult(
        model=net.cpu().eval(),
        W=head.W.detach().cpu().numpy().astype(np.float32),
        b=head.b.detach().cpu().numpy().astype(np.float32),
        best_epoch=best_epoch,
        history=history,
    )


def _train_mode(model: nn.Module, *, freeze_batchnorm: bool) -> None:
    model.train()
    if freeze_batchnorm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()  # normalise with the running statistics and leave them as they are


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def load_model(
    checkpoint: str | os.PathLike | None = None, *, variant: str | None = None
) -> tuple[SoraModel, SoraConfig, str]:
    """(model, config, model version) to fine-tune, chosen as `load_runtime` chooses: the
    checkpoint, else $SORA_CHECKPOINT or the shipped one (unless a variant is named), else
    a seed-initialised model of `variant` (default sora-s)."""
    from sora_encoder import DEFAULT_VARIANT, default_checkpoint

    path = Path(checkpoint) if checkpoint else (None if variant else default_checkpoint())
    if path is not None:
        model, config, version = load_checkpoint(path)
        return model, config, version
    config = get_model_config(variant or DEFAULT_VARIANT)
    model = create_model(config)
    return model, config, model_version(model, config)
