"""FusionTransformer: self-attention over [CLS] + temporal tokens + spatial tokens.

    spatial tokens  (B, T, P, C)   P = grid * grid cells per frame, from the FrameCNN
    temporal tokens (B, T, 2H)     from the TemporalRNN
      -> TokenEmbedding: project both to D, add learned type, time and cell embeddings,
                         prepend [CLS]                       (B, 1 + T + T*P, D)
      -> blocks: pre-norm attention (fused SDPA) + MLP       (B, 1 + T + T*P, D)
      -> LayerNorm, take [CLS]                               (B, D)

The time embedding is shared by the temporal token and the spatial tokens of a frame, so
attention can line up "what moved" with "where it was" at the same instant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sora_encoder.config import FusionConfig

TYPE_CLS, TYPE_TEMPORAL, TYPE_SPATIAL = 0, 1, 2


class TokenEmbedding(nn.Module):
    """(spatial, temporal) -> one token sequence [CLS | T temporal | T*P spatial]."""

    def __init__(
        self, *, frame_dim: int, temporal_dim: int, dim: int, max_frames: int, cells: int
    ) -> None:
        super().__init__()
        self.spatial_proj = nn.Linear(frame_dim, dim)
        self.temporal_proj = nn.Linear(temporal_dim, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.type_embed = nn.Parameter(torch.zeros(3, dim))  # [cls, temporal, spatial]
        self.time_embed = nn.Parameter(torch.zeros(max_frames, dim))
        self.cell_embed = nn.Parameter(torch.zeros(cells, dim))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        B, T, P, _ = spatial.shape
        assert temporal.shape[:2] == (B, T), f"spatial {spatial.shape} vs temporal {temporal.shape}"
        assert T <= self.time_embed.shape[0], f"{T} frames > max_frames {self.time_embed.shape[0]}"
        assert P == self.cell_embed.shape[0], (
            f"{P} cells per frame, built for {self.cell_embed.shape[0]}"
        )
        time = self.time_embed[:T]  # (T, D)
        tem = self.temporal_proj(temporal) + (time + self.type_embed[TYPE_TEMPORAL])  # (B, T, D)
        spa = self.spatial_proj(spatial)  # (B, T, P, D)
        spa = spa + (time[:, None] + self.cell_embed[None] + self.type_embed[TYPE_SPATIAL])
        spa = spa.flatten(1, 2)  # (B, T, P, D) -> (B, T*P, D)
        cls = (self.cls + self.type_embed[TYPE_CLS]).expand(B, 1, -1).to(tem.dtype)  # (B, 1, D)
        return torch.cat([cls, tem, spa.to(tem.dtype)], dim=1)  # (B, 1 + T + T*P, D)


class Attention(nn.Module):
    def __init__(self, *, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        assert dim % heads == 0, f"dim {dim} must divide by heads {heads}"
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, D // self.heads)  # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, N, d)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, N, d)
        y = y.transpose(1, 2).reshape(B, N, D)  # (B, h, N, d) -> (B, N, h*d)
        return self.proj(y)


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, attn: nn.Module, mlp: nn.Module, *, dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), attn
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FusionTransformer(nn.Module):
    def __init__(self, embed: TokenEmbedding, blocks: nn.ModuleList, norm: nn.Module) -> None:
        super().__init__()
        self.embed, self.blocks, self.norm = embed, blocks, norm

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        x = self.embed(spatial, temporal)  # (B, 1 + T + T*P, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])  # [CLS]: (B, D)


def build_fusion(
    *, cfg: FusionConfig, frame_dim: int, temporal_dim: int, max_frames: int, cells: int
) -> FusionTransformer:
    d = cfg.dim
    embed = TokenEmbedding(
        frame_dim=frame_dim, temporal_dim=temporal_dim, dim=d, max_frames=max_frames, cells=cells
    )
    hidden = int(d * cfg.mlp_ratio)
    blocks = nn.ModuleList(
        Block(
            Attention(dim=d, heads=cfg.heads, dropout=cfg.dropout),
            nn.Sequential(
                nn.Linear(d, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, d)
            ),
            dim=d,
        )
        for _ in range(cfg.depth)
    )
    fusion = FusionTransformer(embed, blocks, nn.LayerNorm(d))
    init_transformer_(fusion)
    return fusion


def init_transformer_(module: nn.Module) -> None:
    """ViT-style: truncated-normal(0.02) linears and embeddings, zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, TokenEmbedding):
            for p in (m.cls, m.type_embed, m.time_embed, m.cell_embed):
                nn.init.trunc_normal_(p, std=0.02)
