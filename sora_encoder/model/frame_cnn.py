"""FrameCNN: the per-frame residual conv network, shared over the frames of a clip.

    frames (N, 3, S, S)                        N = B * T, any frame size divisible by the stem
      -> stem       k x k stride-k conv        (N, W0, S/k, S/k)   a linear patch embedding
      -> stages     [3x3 s2 conv] + residual blocks x + conv-BN-ReLU-conv-BN(x),
                    one stage per width         (N, C, h, w)   feature map
         |-> avg-pool to grid x grid cells  -> spatial tokens (N, grid*grid, C)
         '-> global average pool            -> frame vector   (N, C)

The residual stream stays linear, as in ConvNeXt or a pre-activation ResNet: no ReLU after
the stem, the stage transitions or the residual adds; the ReLU sits inside each branch. Every
conv is followed by BatchNorm, so `runtime.fold_batchnorm` can fold them all into the convs
for inference (a pre-activation BN could not be folded). Run it in channels_last (the
runtime does) for oneDNN's fast kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sora_encoder.config import FrameCNNConfig


class ConvNormAct(nn.Sequential):
    """conv (no bias) -> BatchNorm -> activation; the activation may be nn.Identity."""

    def __init__(self, conv: nn.Conv2d, norm: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.norm, self.act = conv, norm, act


class ResidualBlock(nn.Module):
    """x -> x + branch(x); the branch keeps the shape, so the shortcut is the identity."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class FrameCNN(nn.Module):
    """stem -> stages -> (spatial tokens, frame vector); see the module docstring."""

    def __init__(self, stem: nn.Module, stages: nn.Sequential, *, out_dim: int, grid: int) -> None:
        super().__init__()
        self.stem, self.stages = stem, stages
        self.out_dim = out_dim  # C, channels of the last stage
        self.grid = grid  # spatial tokens per frame = grid * grid

    def forward_map(self, frames: torch.Tensor) -> torch.Tensor:
        assert frames.ndim == 4 and frames.shape[1] == 3, f"want (N, 3, S, S), got {frames.shape}"
        return self.stages(self.stem(frames))  # (N, C, h, w)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.forward_map(frames)  # (N, C, h, w)
        cells = F.adaptive_avg_pool2d(fmap, self.grid)  # (N, C, g, g)
        spatial = cells.flatten(2).transpose(1, 2)  # (N, C, g*g) -> (N, g*g, C)
        frame_vec = fmap.mean(dim=(2, 3))  # (N, C)
        return spatial, frame_vec


def conv_norm_act(c_in: int, c_out: int, *, kernel: int, stride: int = 1, act: bool = True):
    """A ConvNormAct with 'same' padding for odd kernels and no padding for patchify ones."""
    padding = kernel // 2 if kernel % 2 else 0
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
    return ConvNormAct(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True) if act else nn.Identity())


def build_residual_block(*, channels: int) -> ResidualBlock:
    branch = nn.Sequential(
        conv_norm_act(channels, channels, kernel=3),
        conv_norm_act(channels, channels, kernel=3, act=False),
    )
    return ResidualBlock(branch)


def build_frame_cnn(*, cfg: FrameCNNConfig, in_channels: int = 3) -> FrameCNN:
    patch = cfg.stem_patch
    stem = conv_norm_act(in_channels, cfg.widths[0], kernel=patch, stride=patch, act=False)
    stages = []
    c_prev = cfg.widths[0]
    for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths, strict=True)):
        down = [] if i == 0 else [conv_norm_act(c_prev, width, kernel=3, stride=2, act=False)]
        layers = down + [build_residual_block(channels=width) for _ in range(depth)]
        stages.append(nn.Sequential(*layers))
        c_prev = width
    cnn = FrameCNN(stem, nn.Sequential(*stages), out_dim=c_prev, grid=cfg.spatial_grid)
    init_frame_cnn_(cnn)
    return cnn


def init_frame_cnn_(module: nn.Module) -> None:
    """He-normal convs (fan-out, as torchvision's ResNet), BatchNorm at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
