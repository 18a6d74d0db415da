"""Copy scores: a cosine made comparable across queries and libraries, and a copy verdict.

    cosine(q, t)                       what the index returns; its level depends on the query:
                                       dark CCTV footage sits at 0.9 to everything dark
    reference(q) = mean of the k largest cosines of q to a fixed BACKGROUND set
                   (vectors of the model's own training videos, stored beside the weights)
    copy_score(q, t) = cosine(q, t) - reference(q)
    is_copy = copy_score >= threshold   (threshold chosen once, on the training side)

This is the score normalisation of SSCD (Pizzi et al., CVPR 2022) and of the ISC21
descriptor-track winners: a query whose neighbourhood is crowded (generic footage that is
close to many unrelated clips) has its scores lowered by as much as it is close to unrelated
clips in general; a distinctive query keeps its scores. The background is fixed and shipped,
so the same threshold means the same thing in every library, small or large, and a one-video
library gets a verdict too. The mean of the top k (not the first neighbour) keeps one
near-copy inside the background from wiping out a real match.

Calibration file, `copy_calibration.npz` in a checkpoint folder, tied to the model version
it was computed with (vectors of another model are meaningless against it):

    background_video    (n, D) float16  unit video vectors of the background videos
    background_segment  (m, D) float16  their 4-s segment vectors
    meta                JSON: model_version, k, threshold, how it was made

`build_calibration` makes one from vectors grouped by source (see its docstring for how the
threshold is picked); `sora checkpoint calibrate` runs it on a folder or manifest.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_NAME",
    "CopyCalibration",
    "build_calibration",
    "load_calibration",
]

CALIBRATION_NAME = "copy_calibration.npz"
Level = Literal["video", "segment"]
DEFAULT_K = 10
# The threshold is the `quantile` of the best copy scores of queries that have no copy in
# the calibration library: at 0.99, about 1 in 100 non-copy queries gets a false "copy".
DEFAULT_QUANTILE = 0.99


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty (n, d) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError(f"{what} has zero or non-finite rows")
    return x / norms


@dataclass(frozen=True)
class CopyCalibration:
    """A background set per level and the copy threshold, for one model version."""

    model_version: str
    background: dict[str, np.ndarray]  # level -> (n, D) float32 unit rows
    k: int = DEFAULT_K
    threshold: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if set(self.background) != {"video", "segment"}:
            raise ValueError(f"want video and segment backgrounds, got {sorted(self.background)}")
        dims = {b.shape[1] for b in self.background.values()}
        if len(dims) != 1:
            raise ValueError(f"background dimensions differ: {dims}")

    @property
    def dim(self) -> int:
        return self.background["video"].shape[1]

    def reference(self, xq: np.ndarray, level: Level = "video") -> np.ndarray:
        """(nq,) mean of each query's k largest cosines to the level's background."""
        xq = np.asarray(xq, dtype=np.float32)
        if xq.ndim != 2 or xq.shape[1] != self.dim:
            raise ValueError(f"xq must be (nq, {self.dim}), got {xq.shape}")
        sims = xq @ self.background[level].T  # (nq, n)
        k = min(self.k, sims.shape[1])
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]  # (nq, k)
        return top.mean(axis=1)

    def copy_scores(self, scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """scores (nq, ...) cosines minus each query's reference (nq,)."""
        scores = np.asarray(scores, dtype=np.float32)
        reference = np.asarray(reference, dtype=np.float32)
        if reference.ndim != 1 or scores.shape[:1] != reference.shape:
            raise ValueError(f"scores {scores.shape} and reference {reference.shape} disagree")
        return scores - reference.reshape((-1,) + (1,) * (scores.ndim - 1))

    def is_copy(self, copy_score: float | np.ndarray) -> np.ndarray:
        """copy_score >= threshold, elementwise (a numpy bool for a scalar)."""
        return np.asarray(copy_score) >= self.threshold

    # -- files -------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write `copy_calibration.npz` into a checkpoint folder (atomically)."""
        out = Path(folder) / CALIBRATION_NAME
        meta = {**self.meta, "model_version": self.model_version, "k": self.k,
                "threshold": self.threshold}  # fmt: skip
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            background_video=self.background["video"].astype(np.float16),
            background_segment=self.background["segment"].astype(np.float16),
            meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
        )
        os.replace(tmp, out)
        return out


def load_calibration(
    folder: str | os.PathLike | None, model_version: str | None = None
) -> CopyCalibration | None:
    """The calibration stored in a checkpoint folder, or None when there is none or it was
    made for another model version than `model_version` (then it is logged and ignored:
    scores stay plain cosines rather than being normalised against the wrong vectors)."""
    if folder is None:
        return None
    path = Path(folder) / CALIBRATION_NAME
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        background = {
            "video": _unit_rows(z["background_video"], "background_video"),
            "segment": _unit_rows(z["background_segment"], "background_segment"),
        }
    version = meta.pop("model_version")
    if model_version is not None and version != model_version:
        logger.warning(
            "%s was made for %s, not %s: copy scores are off until `sora checkpoint calibrate`",
            path, version, model_version,
        )  # fmt: skip
        return None
    return CopyCalibration(
        version, background, k=int(meta.pop("k")), threshold=float(meta.pop("threshold")),
        meta=meta,
    )  # fmt: skip


def build_calibration(
    model_version: str,
    video_vectors: np.ndarray,
    segment_vectors: Sequence[np.ndarray],
    groups: Sequence[str],
    *,
    k: int = DEFAULT_K,
    quantile: float = DEFAULT_QUANTILE,
    meta: dict[str, Any] | None = None,
) -> CopyCalibration:
    """A calibration from the vectors of N background videos.

    video_vectors (N, D); segment_vectors: N arrays (n_i, D); groups: N source names (clips
    cut from one recording share a group: they are near-copies of each other).

    The threshold, leave-one-group-out: each video is a query with NO copy in a library of
    the other groups' videos; its best copy score (top hit's cosine minus its reference
    against the background without its own group) is what a non-copy query scores. The
    threshold is the `quantile` of those, so a non-copy query is called a copy with about
    1 - quantile probability. Copies score far above it (a re-encode is at ~1.0 - reference).
    """
    xb = _unit_rows(video_vectors, "video_vectors")
    n = xb.shape[0]
    if len(segment_vectors) != n or len(groups) != n:
        raise ValueError(
            f"{n} videos but {len(segment_vectors)} segment arrays, {len(groups)} groups"
        )
    if len(set(groups)) < 3:
        raise ValueError("need videos from at least 3 groups to pick a threshold")
    if not 0.5 <= quantile < 1:
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    g = np.asarray(groups, dtype=object)
    sims = xb @ xb.T  # (N, N)
    best = np.empty(n, np.float32)
    for i in range(n):
        others = g != g[i]
        row = sims[i, others]
        kk = min(k, row.size)
        reference = np.sort(row)[-kk:].mean()
        best[i] = row.max() - reference
    threshold = float(np.quantile(best, quantile))
    segments = _unit_rows(np.concatenate(list(segment_vectors)), "segment_vectors")
    info = {
        "videos": int(n), "segments": int(segments.shape[0]), "groups": len(set(groups)),
        "quantile": quantile,
        "non_copy_best": {"median": float(np.median(best)), "max": float(best.max())},
        **(meta or {}),
    }  # fmt: skip
    return CopyCalibration(model_version, {"video": xb, "segment": segments}, k=k,
                           threshold=threshold, meta=info)  # fmt: skip


def embed_background(
    embedder: Any,
    files: Sequence[tuple[str | os.PathLike, str]],
    *,
    on_file: Any = None,
) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """Embed (path, group) files with a `VideoEmbedder` as ingest would: (video vectors
    (N, D), segment vectors per video, groups). A file that fails is skipped (and passed
    to `on_file(done, total, path, error)` with its error)."""
    videos, segments, groups = [], [], []
    for done, (path, group) in enumerate(files, start=1):
        error = None
        try:
            emb = embedder.embed(path)
        except Exception as exc:  # noqa: BLE001 - a bad file is reported, not fatal
            error = exc
        else:
            videos.append(emb.vector)
            segments.append(np.stack([s.vector for s in emb.segments]))
            groups.append(group)
        if on_file is not None:
            on_file(done, len(files), path, error)
    if not videos:
        raise ValueError("no background video could be embedded")
    return np.stack(videos), segments, groups
