"""`create_model`: config (or variant name) -> SoraModel, initialised from the config's seed.

    config -> build_frame_cnn -> build_temporal_rnn -> build_fusion -> build_projection
           -> build_heads -> build_whitening (config.projection.whiten) -> SoraModel(parts)

Each builder owns its part's layers and initialisation; this function only wires the sizes
between parts. The same seed gives the same weights in any process, on any machine.
"""

from __future__ import annotations

import torch

from sora_encoder.config import SoraConfig
from sora_encoder.model import (
    SoraModel,
    build_frame_cnn,
    build_fusion,
    build_heads,
    build_projection,
    build_temporal_rnn,
    build_whitening,
)
from sora_encoder.registry import get_model_config


def create_model(config_or_name: SoraConfig | str, *, init_seed: int | None = None) -> SoraModel:
    """A freshly initialised SoraModel (train mode, CPU, float32).

    `init_seed` overrides `config.init_seed`. The global RNG is left as it was.
    """
    cfg = get_model_config(config_or_name) if isinstance(config_or_name, str) else config_or_name
    if not isinstance(cfg, SoraConfig):
        raise TypeError(f"want a SoraConfig or a variant name, got {type(config_or_name).__name__}")
    seed = cfg.init_seed if init_seed is None else init_seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        frame_cnn = build_frame_cnn(cfg=cfg.frame_cnn)
        temporal_rnn = build_temporal_rnn(cfg=cfg.temporal_rnn, in_dim=frame_cnn.out_dim)
        fusion = build_fusion(
            cfg=cfg.fusion,
            frame_dim=frame_cnn.out_dim,
            temporal_dim=temporal_rnn.out_dim,
            max_frames=cfg.input.num_frames,
            cells=cfg.frame_cnn.spatial_grid**2,
        )
        projection = build_projection(cfg=cfg.projection, in_dim=cfg.fusion.dim)
        heads = build_heads(heads=cfg.heads, in_dim=cfg.projection.out_dim)
        whitening = build_whitening(dim=cfg.projection.out_dim) if cfg.projection.whiten else None
    return SoraModel(frame_cnn, temporal_rnn, fusion, projection, heads, whitening)
