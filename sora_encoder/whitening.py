"""PCA whitening of Sora vectors, fitted once on training vectors and stored in the model.

    unit vectors X (N, D) of training clips' segments
      -> mean m, covariance C = U diag(l) U^T
      -> W = diag(1 / sqrt(l + eps * mean(l))) U^T,  b = -W m
    the whitened model: v = normalize(W normalize(projection(cls)) + b)

Why: a contrastively trained encoder leaves a few directions that nearly every clip shares
(lighting, CCTV-ness, talking heads); along them unrelated clips sit at cosine 0.85+, and
an edited copy moves by as much as it differs from a look-alike. Whitening gives every
direction the same spread over the training footage, so the cosine measures how unusual the
shared part of two clips is. This is the PCA-whitening of the ISC21 / VSC22 descriptor-track
entries and of SSCD's evaluation. Measured on train-side clips with random copy edits
(sora_encoder/copy_edits.py), whitening fitted on the other half of the groups: top-1
0.61 -> 0.71, and copies found at a 1 % false-positive rate 0.32 -> 0.46 (docs/MODEL.md).
`eps` keeps the smallest eigenvalues (noise with ~500 samples in 256 dimensions) from being
blown up: 1 % of the mean eigenvalue was the best of 1e-6, 1 %, 5 %, 20 % there.

The fit is a post-hoc step over a trained checkpoint (`sora checkpoint whiten`): the
weights stay, `config.projection.whiten` turns the layer on, and the whitened checkpoint is
a new model version (its vectors are not comparable with the unwhitened ones).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import torch

from sora_encoder.checkpoint import load_checkpoint, save_checkpoint
from sora_encoder.config import SoraConfig
from sora_encoder.factory import create_model
from sora_encoder.model import SoraModel

__all__ = [
    "DEFAULT_EPS_SHARE",
    "WhitenedCheckpoint",
    "apply_whitening",
    "fit_whitening",
    "whiten_checkpoint",
    "whitened_model",
]

DEFAULT_EPS_SHARE = 0.01


def fit_whitening(
    vectors: np.ndarray, *, eps_share: float = DEFAULT_EPS_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Unit row vectors (N, D), N > D -> (weight (D, D), bias (D,)) with
    whitened = weight @ x + bias (then normalised)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] <= x.shape[1]:
        raise ValueError(
            f"need more vectors than dimensions to whiten, got {x.shape[0]} of dimension "
            f"{x.shape[1] if x.ndim == 2 else '?'}"
        )
    if not np.isfinite(x).all():
        raise ValueError("the vectors hold NaN or infinity")
    if not eps_share > 0:
        raise ValueError(f"eps_share must be > 0, got {eps_share}")
    mean = x.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov((x - mean).T))  # ascending, (D,), (D, D)
    eigval = np.clip(eigval, 0.0, None)
    scale = 1.0 / np.sqrt(eigval + eps_share * eigval.mean())  # (D,)
    weight = scale[:, None] * eigvec.T  # (D, D): rows are the scaled principal axes
    return weight.astype(np.float32), (-weight @ mean).astype(np.float32)


def apply_whitening(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Unit rows (N, D) -> the whitened model's unit rows, as SoraModel computes them."""
    y = np.asarray(x, dtype=np.float32) @ np.asarray(weight, np.float32).T + bias  # (N, D)
    return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)


def whitened_model(
    model: SoraModel, config: SoraConfig, weight: np.ndarray, bias: np.ndarray
) -> tuple[SoraModel, SoraConfig]:
    """`model`'s weights with the whitening layer set: a new model and its config."""
    if config.projection.whiten:
        raise ValueError("the model is whitened already: whiten the checkpoint it came from")
    d = config.projection.out_dim
    if weight.shape != (d, d) or bias.shape != (d,):
        raise ValueError(f"want a ({d}, {d}) weight and ({d},) bias, got {weight.shape}, "
                         f"{bias.shape}")  # fmt: skip
    cfg = dataclasses.replace(
        config, projection=dataclasses.replace(config.projection, whiten=True)
    )
    new = create_model(cfg)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"whitening.weight", "whitening.bias"}, (
        missing, unexpected,
    )  # fmt: skip
    assert new.whitening is not None
    with torch.no_grad():
        new.whitening.weight.copy_(torch.from_numpy(weight))
        new.whitening.bias.copy_(torch.from_numpy(bias))
    return new.eval(), cfg


@dataclasses.dataclass(frozen=True)
class WhitenedCheckpoint:
    source_version: str
    version: str  # the whitened checkpoint's model version
    videos: np.ndarray  # (N, D) the background's video vectors by the whitened model
    segments: list[np.ndarray]  # N arrays (n_i, D): its segment vectors


def whiten_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    segments: Sequence[np.ndarray],
    *,
    dtype: torch.dtype = torch.float16,
) -> WhitenedCheckpoint:
    """Fit whitening on `segments` (per video, (n_i, D) unit rows made by `src`'s model),
    write `src` with it to `dst` (created), and return the new version with the same
    videos' vectors as the new model computes them: through the stored (cast) layer, from
    the unwhitened unit vectors it takes, so nothing is embedded twice. ValueError for a
    whitened source or too few vectors."""
    from sora_encoder.video_embedder import mean_vector

    model, config, src_version = load_checkpoint(src)
    weight, bias = fit_whitening(np.concatenate(list(segments)))
    new, cfg = whitened_model(model, config, weight, bias)
    version = save_checkpoint(new, cfg, dst, dtype=dtype, metadata={"whitened_from": src_version})
    stored, _, loaded = load_checkpoint(dst)
    assert loaded == version and stored.whitening is not None, (loaded, version)
    w = stored.whitening.weight.detach().numpy()
    b = stored.whitening.bias.detach().numpy()
    white = [apply_whitening(s, w, b) for s in segments]
    videos = np.stack([mean_vector(s) for s in white])  # a video vector: mean of its segments
    return WhitenedCheckpoint(src_version, version, videos, white)
