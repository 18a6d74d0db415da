"""Training configuration: `TrainConfig` (the loop) with `AugmentConfig` (the views) inside.

Both are frozen dataclasses saved as `train_config.json` next to a run's checkpoint, so a
run can be resumed (`--resume` refuses a changed config) and re-created. The model's own
config stays `SoraConfig`; `TrainConfig.variant` names it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sora_encoder.config import InputConfig, merge_dataclass, to_jsonable

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class AugmentConfig:
    """How two views of one cached window differ. Each `*_p` is the chance a view gets it."""

    # Playback speed, log-uniform: T frames are taken `speed` cache frames apart (1 = the
    # inference frame rate when the cache holds 2T frames over 2 segments). <1 repeats frames
    # (slow motion, a lower frame rate), >1 skips them. Clamped so the clip fits the window.
    speed: tuple[float, float] = (0.5, 2.0)
    # Random resized crop, the same box on every frame of a clip: area fraction of the cached
    # frame and aspect ratio (SimCLR's ranges, area floor raised: 16 frames of 112 px are
    # already small, and a copy search meets crops, rarely 8 % zooms).
    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    # Colour jitter (SimCLR strength 0.5): brightness, contrast and saturation factors in
    # [1 - x, 1 + x]; hue turns the YIQ chroma plane by up to +-hue of a full turn.
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    # Letterbox or pillarbox: the picture squeezed between two dark bars, each up to this
    # fraction of the side (re-uploads of 4:3 footage in 16:9 and the reverse).
    letterbox_p: float = 0.2
    letterbox_max: float = 0.2
    # A static box or text-like block (a caption, logo or timestamp) over part of the clip.
    overlay_p: float = 0.3
    # Gaussian blur; sigma in pixels at 112 px, scaled with the frame size.
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    # Additive Gaussian noise (sensor noise), standard deviation on the [0, 1] scale.
    noise_p: float = 0.3
    noise_std: tuple[float, float] = (0.01, 0.05)
    # Compression artefacts on the tensors: down-up scaling by a factor in `compress_scale`
    # (blocky detail loss), then 8x8 block-DCT quantisation in YCbCr with a DC step in
    # `compress_q` (JPEG quality ~90 to ~30; higher frequencies and chroma coarser).
    compress_p: float = 0.4
    compress_scale: tuple[float, float] = (0.4, 1.0)
    compress_q: tuple[float, float] = (0.01, 0.08)
    # Picture in picture: the clip shrunk to `pip_scale` of its side and pasted at a random
    # place over a background, half the time a solid colour (a coloured border or frame,
    # when the scale is large), half the time another clip of the batch (a PiP edit, a
    # split screen, a reaction video).
    pip_p: float = 0.2
    pip_scale: tuple[float, float] = (0.4, 0.9)


@dataclass(frozen=True)
class TrainConfig:
    """Self-supervised contrastive pretraining of a Sora encoder variant."""

    # Model variant to train (`sora_encoder.list_models()`); its init_seed becomes `seed`.
    variant: str = "sora-s"
    # Passes over the windows of the training videos.
    epochs: int = 10
    # Windows per step; each gives two views, so the model sees 2 x batch_size clips and
    # NT-Xent has 2 x batch_size - 2 negatives per anchor. Bigger is better for contrastive
    # learning; 16 keeps a sora-s step within a CPU's memory and patience.
    batch_size: int = 16
    # AdamW peak learning rate and decoupled weight decay (no decay on norms, biases and
    # embeddings).
    lr: float = 5e-4
    weight_decay: float = 0.05
    # Linear warm-up over this fraction of all steps (at least one), then cosine decay to
    # min_lr_frac x lr: the usual recipe for Transformers trained with AdamW.
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.01
    # Gradient clipping by global norm; stops a bad batch from wrecking the LSTM.
    grad_clip: float = 1.0
    # NT-Xent temperature (SimCLR: 0.1 for small batches).
    temperature: float = 0.1
    # One seed for the model's initialisation, the batch order and the augmentations: the
    # same seed on the same data gives the same run (bit for bit on a CPU).
    seed: int = 0
    # "auto": bf16 autocast on CUDA, fp32 on the CPU (bf16 CPU training was not measured
    # safe); "bf16" or "fp32" force it.
    precision: str = "auto"
    # A progress line every log_every steps; a checkpoint (and train state) every
    # checkpoint_every steps, and always at the end.
    log_every: int = 10
    checkpoint_every: int = 200
    # Seconds between the windows that the cache decodes; each window holds
    # `cache_frames_factor` x T frames, so the speed augmentation has frames to pick from.
    # 8 s and 2T frames: at speed 1 a view is T frames over 4 s, the inference sampling.
    segment_s: float = 4.0
    cache_frames_factor: int = 2
    # Cached frames are this much larger than the model input (112 -> 128 px), so a full
    # crop still resamples and small crops keep detail.
    cache_size_factor: float = 8 / 7
    # Side of the training views; None: the model's image_size. The encoder is resolution-
    # agnostic (the CNN's map is pooled to a fixed spatial grid), so a sora-s trained on 64 px
    # views (3x cheaper on a CPU) runs at 112; the saved checkpoint's BatchNorm statistics
    # are re-estimated at the model's own size (bn_windows).
    view_size: int | None = None
    # Arrow of time: each window's two views are played backwards with chance reverse_p, and
    # a linear head on the Sora vector (trained alongside, not saved in the checkpoint) must
    # tell which; its loss is weighted by arrow_weight. Contrastive views alone never ask the
    # vector to keep the direction of time. 0 turns it off.
    arrow_weight: float = 0.0
    reverse_p: float = 0.5
    # Each saved checkpoint gets BatchNorm statistics re-estimated on this many clean windows
    # (centre view at the model's size, inference sampling), not those of the augmented
    # views; 0 keeps the training statistics. The training state keeps its own.
    bn_windows: int = 0
    # KoLeo entropy regulariser (Sablayrolles et al. 2019; SSCD, Pizzi et al. 2022, reports
    # it significantly improves copy detection): -mean log of each vector's distance to its
    # nearest *other window's* vector in the batch, weighted by koleo_weight. It spreads the
    # vectors of unrelated clips apart, so cosines say "copy" or "not a copy" instead of
    # piling up at 0.85-0.95. 0 turns it off.
    koleo_weight: float = 0.0
    # Start from this checkpoint folder's weights (same variant) instead of the seed's
    # initialisation: continue a shipped model with a new recipe. None: from scratch.
    init_from: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 2:
            problems.append(
                f"epochs >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}"
            )
        if not self.lr > 0 or self.weight_decay < 0 or not self.temperature > 0:
            problems.append("lr and temperature must be > 0 and weight_decay >= 0")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_frac <= 1:
            problems.append("warmup_frac must be in [0, 1) and min_lr_frac in [0, 1]")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            problems.append("log_every and checkpoint_every must be >= 1")
        if self.cache_frames_factor < 1 or self.cache_size_factor < 1 or not self.segment_s > 0:
            problems.append("cache factors must be >= 1 and segment_s > 0")
        if self.view_size is not None and self.view_size < 16:
            problems.append(f"view_size must be >= 16 pixels, got {self.view_size}")
        if self.koleo_weight < 0:
            problems.append(f"koleo_weight must be >= 0, got {self.koleo_weight}")
        if self.arrow_weight < 0 or not 0 <= self.reverse_p <= 1 or self.bn_windows < 0:
            problems.append("arrow_weight and bn_windows must be >= 0, reverse_p in [0, 1]")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    # -- the decode spec of the cache ----------------------------------------------------------
    def cache_frames(self, inp: InputConfig) -> int:
        return self.cache_frames_factor * inp.num_frames

    def cache_size(self, inp: InputConfig) -> int:
        """Cached frame side: image_size x cache_size_factor, rounded up to a multiple of 4."""
        return 4 * math.ceil(inp.image_size * self.cache_size_factor / 4 - 1e-9)

    def cache_span_s(self) -> float:
        return self.cache_frames_factor * self.segment_s

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, overrides: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        return merge_dataclass(base if base is not None else cls(), overrides)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


# The run folder's copy of its config (what --resume reads back).
CONFIG_NAME = "train_config.json"


def resolve_config(
    options: dict[str, Any],
    *,
    recipe: dict[str, Any] | None = None,
    resume_dir: str | os.PathLike | None = None,
) -> TrainConfig:
    """The run's config, in layers: the defaults (or, with `resume_dir`, the config saved in
    that run, so the same command line resumes), then the `recipe` (any subset of the fields,
    `read_recipe`), then `options` (given command-line values). ValueError / TypeError name a bad
    field; FileNotFoundError when there is nothing to resume."""
    base = TrainConfig()
    if resume_dir is not None:
        saved = Path(resume_dir) / CONFIG_NAME
        if not saved.is_file():
            raise FileNotFoundError(f"nothing to resume in {resume_dir} (no {CONFIG_NAME})")
        base = TrainConfig.from_json(saved.read_text("utf-8"))
    return TrainConfig.from_dict(options, base=TrainConfig.from_dict(recipe or {}, base=base))


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """A recipe JSON (a subset of TrainConfig's fields), checked: ValueError says what is
    wrong with it."""
    try:
        recipe = json.loads(Path(path).read_text("utf-8"))
        TrainConfig.from_dict(recipe)  # a clear message for a bad field, here
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return recipe
