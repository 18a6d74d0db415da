"""Self-supervised contrastive training of the Sora encoder (beside the model, not in it).

    files --select_files--> [Path] --ClipCache.load_many--> [CachedVideo] --> WindowDataset
      --train_encoder(dataset, TrainConfig, out_dir)-->  a normal checkpoint in out_dir

    config.py   TrainConfig, AugmentConfig: every knob, commented
    data.py     file selection (folders, MANIFEST.csv split by group), the decoded-window
                cache, the dataset of windows
    augment.py  view augmentations on torch tensors (CPU or GPU), make_views
    loss.py     NT-Xent
    loop.py     AdamW + warm-up/cosine, clipping, bf16 on CUDA, arrow-of-time head,
                checkpoints, resume
    batchnorm.py  BatchNorm statistics re-estimated on clean windows for saved checkpoints
    synthetic.py  synthetic training videos from ffmpeg's lavfi sources
    finetune.py   end-to-end fine-tuning of an encoder with a classifier head
    recipes/    TrainConfig JSONs (`--config`); sora-s-default.json makes the shipped model

`sora train encoder DIR...` (sora_cli/train_cmd.py) drives it; docs/TRAINING.md says how.
"""

from sora_encoder.train.config import AugmentConfig, TrainConfig
from sora_encoder.train.data import (
    CachedVideo,
    ClipCache,
    DecodeSpec,
    WindowDataset,
    group_split,
    read_manifest,
    select_files,
)
from sora_encoder.train.loop import Progress, TrainResult, read_log, train_encoder
from sora_encoder.train.loss import nt_xent

__all__ = [
    "AugmentConfig",
    "CachedVideo",
    "ClipCache",
    "DecodeSpec",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "WindowDataset",
    "decode_spec",
    "group_split",
    "nt_xent",
    "read_log",
    "read_manifest",
    "select_files",
    "train_encoder",
]


def decode_spec(cfg: TrainConfig) -> DecodeSpec:
    """The cache's decode spec for `cfg`: F = factor x T frames of the padded size per window."""
    from sora_encoder.registry import get_model_config

    inp = get_model_config(cfg.variant).input
    return DecodeSpec(
        frames=cfg.cache_frames(inp), size=cfg.cache_size(inp), span_s=cfg.cache_span_s()
    )
