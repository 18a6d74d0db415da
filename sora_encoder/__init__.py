"""The Sora encoder: video clips -> L2-normalised Sora vectors.

    load_runtime()  -> EncoderRuntime   model + device + precision, `encode_clips(uint8 clips)`
    load_embedder() -> VideoEmbedder    file -> VideoEmbedding (segment vectors + video vector)

The model itself (`sora_encoder.model`, `create_model`) is pure PyTorch; media decoding is in
`sora_encoder.media`. Which weights are used, in order: the `checkpoint` argument, the
`SORA_CHECKPOINT` environment variable, the checkpoint shipped in the package (when there is
one), else a seed-initialised model of `variant` (default `sora-s`), with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config, list_models
from sora_encoder.runtime import EncoderRuntime
from sora_encoder.video_embedder import SegmentEmbedding, VideoEmbedder, VideoEmbedding

__all__ = [
    "DEFAULT_VARIANT",
    "EncoderRuntime",
    "SegmentEmbedding",
    "VideoEmbedder",
    "VideoEmbedding",
    "cache_dir",
    "create_model",
    "checkpoint_folder",
    "default_checkpoint",
    "get_model_config",
    "list_models",
    "load_embedder",
    "load_runtime",
]

logger = logging.getLogger(__name__)

DEFAULT_VARIANT = "sora-s"
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / DEFAULT_VARIANT


def default_checkpoint() -> Path | None:
    """The checkpoint used when none is named: $SORA_CHECKPOINT, else the shipped one."""
    env = os.environ.get("SORA_CHECKPOINT")
    if env:
        return Path(env)
    return SHIPPED_CHECKPOINT if (SHIPPED_CHECKPOINT / "config.json").exists() else None


def cache_dir() -> Path:
    """Where the encoder keeps what it can recompute: $SORA_CACHE_DIR, else the user cache."""
    root = os.environ.get("SORA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sora"
    )
    return Path(root)


def _calibration_cache() -> Path:
    # The bf16-vs-fp32 decision is measured once per machine and model, then reused.
    return cache_dir() / "precision-calibration.json"


def checkpoint_folder(
    checkpoint: str | os.PathLike | None = None, *, variant: str | None = None
) -> Path | None:
    """The checkpoint folder `load_runtime` reads: `checkpoint`, else (no `variant` asked
    for) the default one; None for a seed-initialised variant."""
    return Path(checkpoint) if checkpoint else (None if variant else default_checkpoint())


def load_runtime(
    checkpoint: str | os.PathLike | None = None,
    *,
    variant: str | None = None,
    device: str | None = None,
    **runtime_kwargs,
) -> EncoderRuntime:
    """An inference runtime for the configured weights (see the module docstring)."""
    runtime_kwargs.setdefault("calibration_cache", _calibration_cache())
    path = checkpoint_folder(checkpoint, variant=variant)
    if path is not None:
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return EncoderRuntime.from_checkpoint(path, device=device, **runtime_kwargs)
    name = variant or DEFAULT_VARIANT
    logger.warning(
        "no trained checkpoint configured: using a seed-initialised %s encoder "
        "(vectors are consistent but not semantically trained)",
        name,
    )
    return EncoderRuntime.untrained(name, device=device, **runtime_kwargs)


def load_embedder(
    checkpoint: str | os.PathLike | None = None,
    *,
    variant: str | None = None,
    device: str | None = None,
    precision: str = "auto",
    segment_s: float = 4.0,
) -> VideoEmbedder:
    """A file-to-vectors embedder over `load_runtime(...)`."""
    runtime = load_runtime(checkpoint, variant=variant, device=device, precision=precision)
    return VideoEmbedder(runtime, segment_s=segment_s, batch_size=runtime.batch_size)
