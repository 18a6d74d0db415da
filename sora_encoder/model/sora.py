"""SoraModel(V) = Transformer(CNN(V), RNN(V)): the clip encoder.

    frames (B, T, 3, S, S), float, normalised
      -> frame_cnn on the B*T frames   spatial (B*T, P, C), frame vectors (B*T, C)
      -> temporal_rnn on (B, T, C)     temporal tokens (B, T, 2H)
      -> fusion(spatial, temporal)     [CLS] (B, Df)
      -> projection                    (B, D) -> L2-normalised = the Sora vector
      -> whitening (optional)          (B, D) affine, L2-normalised again (config.projection)
      -> heads (optional)              {name: logits (B, K)} from the vector

Pure PyTorch: tensors in, tensors out. Build it with `sora_encoder.factory.create_model`, or
by hand from built parts (the tests do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sora_encoder.config import ProjectionConfig


class ClassifierHead(nn.Module):
    """Logits from the (normalised) Sora vector: a linear probe, (B, D) -> (B, K)."""

    def __init__(self, *, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.zeros_(self.fc.weight)  # a fresh head predicts the uniform distribution
        nn.init.zeros_(self.fc.bias)

    def forward(self, vec: torch.Tensor) -> torch.Tensor:
        return self.fc(vec)


class SoraModel(nn.Module):
    def __init__(
        self,
        frame_cnn: nn.Module,
        temporal_rnn: nn.Module,
        fusion: nn.Module,
        projection: nn.Module,
        heads: nn.ModuleDict | None = None,
        whitening: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.frame_cnn = frame_cnn
        self.temporal_rnn = temporal_rnn
        self.fusion = fusion
        self.projection = projection
        self.heads = heads if heads is not None else nn.ModuleDict()
        self.whitening = whitening

    def encode_video(self, frames: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, T, 3, S, S) normalised frames -> (B, D) Sora vectors (unit length if normalize)."""
        assert frames.ndim == 5 and frames.shape[2] == 3, (
            f"want frames (B, T, 3, S, S), got {tuple(frames.shape)}"
        )
        B, T = frames.shape[:2]
        spatial, frame_vec = self.frame_cnn(frames.flatten(0, 1))  # (B*T, P, C), (B*T, C)
        spatial = spatial.unflatten(0, (B, T))  # (B, T, P, C)
        frame_vec = frame_vec.unflatten(0, (B, T))  # (B, T, C)
        temporal = self.temporal_rnn(frame_vec)  # (B, T, 2H)
        cls = self.fusion(spatial, temporal)  # (B, Df)
        vec = self.projection(cls).float()  # (B, D)
        if self.whitening is not None:  # fitted on unit vectors: (x - mean) @ W
            vec = self.whitening(F.normalize(vec, dim=-1).to(self.whitening.weight.dtype))
            vec = vec.float()
        return F.normalize(vec, dim=-1) if normalize else vec

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encode_video(frames)

    def classify(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """{head name: logits (B, K)} for Sora vectors (B, D) from `encode_video`."""
        return {name: head(vec) for name, head in self.heads.items()}


def build_projection(*, cfg: ProjectionConfig, in_dim: int) -> nn.Linear:
    proj = nn.Linear(in_dim, cfg.out_dim, bias=False)
    nn.init.trunc_normal_(proj.weight, std=in_dim**-0.5)
    return proj


def build_whitening(*, dim: int) -> nn.Linear:
    """The identity until `sora checkpoint whiten` sets it (sora_encoder/whitening.py)."""
    lin = nn.Linear(dim, dim, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(dim))
        lin.bias.zero_()
    return lin


def build_heads(*, heads: dict[str, int], in_dim: int) -> nn.ModuleDict:
    return nn.ModuleDict(
        {name: ClassifierHead(in_dim=in_dim, num_classes=k) for name, k in sorted(heads.items())}
    )
