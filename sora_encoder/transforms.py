"""Decoded clips -> model input.

    clips uint8 (N, T, S, S, 3)  numpy, RGB, as the decoder delivers them
      -> torch, on `device` (still uint8: a quarter of the bytes to copy to a GPU)
      -> float, / 255, - mean, / std                      (N, T, S, S, 3)
      -> permute to (N, T, 3, S, S)                        a view, no copy

The result keeps the NTHWC memory order, so each frame of `frames.flatten(0, 1)` is already
channels_last: exactly the layout the channels_last convs want, with no transposing copy.
Resizing and cropping belong to the decoder (ffmpeg does them in the same pass).
"""

from __future__ import annotations

import numpy as np
import torch

from sora_encoder.config import InputConfig


def clips_to_frames(
    clips: np.ndarray, input_cfg: InputConfig, *, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """uint8 (N, T, S, S, 3) -> float32 (N, T, 3, S, S), normalised with the config's mean/std.

    TypeError for a non-uint8 array, ValueError for a wrong shape.
    """
    if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8:
        raise TypeError(f"clips must be a uint8 numpy array, got {_describe(clips)}")
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be (N, T, S, S, 3), got {clips.shape}")
    if clips.shape[2] != clips.shape[3]:
        raise ValueError(f"frames must be square (S, S), got {clips.shape[2:4]}")
    x = torch.from_numpy(np.ascontiguousarray(clips)).to(device, non_blocking=True)
    std = torch.tensor(input_cfg.std, dtype=torch.float32, device=x.device)
    mean = torch.tensor(input_cfg.mean, dtype=torch.float32, device=x.device)
    scale = 1.0 / (255.0 * std)  # (x / 255 - mean) / std == x * scale + shift
    shift = -mean / std
    x = torch.addcmul(shift, x.to(torch.float32), scale)  # (N, T, S, S, 3)
    return x.permute(0, 1, 4, 2, 3)  # (N, T, S, S, 3) -> (N, T, 3, S, S), a view


def _describe(a: object) -> str:
    return f"{type(a).__name__} of {a.dtype}" if hasattr(a, "dtype") else type(a).__name__
