"""NT-Xent (normalised temperature-scaled cross entropy), SimCLR's contrastive loss.

    z1, z2 (B, D)   two views of B windows; row i of z1 and row i of z2 are positives
      -> z = L2-normalise(cat[z1, z2])                 (2B, D)
      -> logits = z @ z.T / temperature, self-pairs masked out      (2B, 2B)
      -> cross entropy: row i's target is its other view (i + B, or i - B)
      = mean over the 2B anchors; each has 1 positive and 2B - 2 negatives

Both views are anchors, so the loss is symmetric: nt_xent(z1, z2) == nt_xent(z2, z1).
Computed in float32 whatever the autocast dtype of the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The mean NT-Xent loss of positive pairs (z1[i], z2[i]) against the rest of the batch.

    ValueError for mismatched shapes, fewer than 2 pairs or a temperature <= 0.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"want two (B, D) tensors of one shape, got {z1.shape} and {z2.shape}")
    if z1.shape[0] < 2:
        raise ValueError(f"NT-Xent needs at least 2 pairs (negatives), got {z1.shape[0]}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    self_pair = torch.eye(2 * B, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    targets = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)  # (2B,)
    return F.cross_entropy(logits, targets)


def pair_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Fraction of the 2B anchors whose nearest other row is their positive: a training-time
    sanity figure (1.0 = every view finds its twin in the batch)."""
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    sim = (z @ z.T).fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)
    return (sim.argmax(1) == targets).float().mean().item()


def koleo(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo entropy regulariser: -mean_i log(distance from z_i to its nearest vector of
    ANOTHER window), over the 2B views.

    The Kozachenko-Leonenko estimator of differential entropy, up to constants: minimising
    it pushes each vector away from its closest non-copy, spreading the batch over the
    sphere. Row i of z1 and row i of z2 are one window's two views; they are excluded from
    each other's neighbours (as in SSCD), or the term would fight the contrastive loss.
    Computed in float32 on L2-normalised vectors.
    """
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"want two (B, D) tensors of one shape, B >= 2: {z1.shape}, {z2.shape}")
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)  # (2B, D)
    sim = z @ z.T  # (2B, 2B)
    window = torch.arange(2 * B, device=z.device) % B  # (2B,) which window each row shows
    same = window[:, None] == window[None, :]  # self and the other view
    nearest = sim.masked_fill(same, -2.0).max(dim=1).values  # (2B,) cosine to the nearest
    # |a - b|^2 = 2 - 2 cos for unit vectors
    dist = torch.sqrt((2.0 - 2.0 * nearest).clamp_min(0.0) + eps)
    return -torch.log(dist + eps).mean()
