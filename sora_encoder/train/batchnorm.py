"""BatchNorm statistics re-estimated on clean clips, for the checkpoint a run saves.

During training every BatchNorm layer averages the statistics of augmented views (crops,
colour jitter, grey, borders; and, with `view_size`, a smaller frame than the model runs
at). The service encodes clean frames at the model's size, so a saved checkpoint gets
statistics measured on those: the cached windows' inference sampling (every
`cache_frames_factor`-th frame, from the start) resized to image_size, as `sora embed` sees
them. Weights are untouched.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sora_encoder.config import InputConfig
from sora_encoder.train.augment import normalize, to_float
from sora_encoder.train.data import WindowDataset


def clean_view(windows: torch.Tensor, inp: InputConfig) -> torch.Tensor:
    """uint8 windows (B, F, Hc, Wc, 3) -> normalised clips (B, T, 3, S, S): T frames evenly
    strided from the first (the inference frame rate), the whole frame resized to S."""
    B, n_frames = windows.shape[:2]
    stride = max(1, n_frames // inp.num_frames)
    clip = to_float(windows[:, : stride * inp.num_frames : stride])  # (B, T, 3, Hc, Wc)
    T, C, H, W = clip.shape[1:]
    S = inp.image_size
    x = F.interpolate(
        clip.reshape(B * T, C, H, W), size=(S, S), mode="bilinear", antialias=True,
        align_corners=False,
    )  # fmt: skip
    x = torch.round(x.clamp(0, 1) * 255.0) / 255.0
    return normalize(x.view(B, T, C, S, S), inp)


@torch.no_grad()
def reestimate_batchnorm(
    model: nn.Module,
    dataset: WindowDataset,
    inp: InputConfig,
    *,
    n_windows: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """A copy of `model` whose BatchNorm running statistics are the plain average over
    `n_windows` windows spread evenly over the dataset (a fixed choice: no RNG is used, so a
    run's random streams are not disturbed). The copy is in eval mode."""
    out = copy.deepcopy(model).eval()
    norms = [m for m in out.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or n_windows <= 0 or len(dataset) == 0:
        return out
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(n_windows, len(dataset))).round())
    picks = picks.astype(int).tolist()
    for i in range(0, len(picks), batch_size):
        windows = dataset.batch(picks[i : i + batch_size]).to(device)
        out.encode_video(clean_view(windows, inp))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
        m.eval()
    return out
