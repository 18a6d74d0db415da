"""Recall of an approximate search against exact search, tolerant of ties (pure numpy).

    I_approx (nq, >=k) ids from the index under test
    I_exact  (nq, >=k) ids from exact search, best first; may hold more than k columns
    D_exact  (nq, same) their inner products (larger = closer), optional
      -> mean over queries of |top-k approx  &  true top-k| / k

A "true top-k" neighbour is one of the first k exact ids, or, when D_exact is given, any
further exact id whose score ties the k-th within `tie_tol`: among equal scores the exact
search's order is arbitrary, so returning another of the tied ids is not a miss (the idea
of faiss `contrib/evaluation.py` `check_ref_knn_with_draws`). Ask exact search for more
than k columns (say 2k) so that ties across the k-th rank are visible.

When the queries are stored vectors, `drop_ids` takes each query's own id out of its
result rows first (search k + 1, drop, keep k): finding itself is free and would inflate
recall by up to 1/k.
"""

# ruff: noqa: E741  (I is faiss's name for the id matrix; names follow the maths)

from __future__ import annotations

import numpy as np

DEFAULT_TIE_TOL = 1e-5  # unit vectors: scores in [-1, 1], float32 dot error ~1e-6


def recall_at_k(
    I_approx: np.ndarray,
    I_exact: np.ndarray,
    k: int,
    D_exact: np.ndarray | None = None,
    *,
    tie_tol: float = DEFAULT_TIE_TOL,
) -> float:
    """Mean recall@k of `I_approx` against `I_exact` (see the module docstring).

    Id -1 (faiss's "no result") never counts as found. A query whose exact search found
    fewer than k neighbours is scored against the ones it found; queries with none are
    skipped. Returns 1.0 when no query has any exact neighbour.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    I_approx = np.asarray(I_approx)
    I_exact = np.asarray(I_exact)
    for name, a in (("I_approx", I_approx), ("I_exact", I_exact)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (nq, k), got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name} must hold integer ids, got {a.dtype}")
        if a.shape[1] < k:
            raise ValueError(f"{name} has {a.shape[1]} columns, fewer than k={k}")
    if I_approx.shape[0] != I_exact.shape[0]:
        raise ValueError(f"I_approx has {I_approx.shape[0]} queries, I_exact {I_exact.shape[0]}")
    if D_exact is not None:
        D_exact = np.asarray(D_exact)
        if D_exact.shape != I_exact.shape:
            raise ValueError(f"D_exact shape {D_exact.shape} != I_exact shape {I_exact.shape}")

    recalls = []
    for i in range(I_exact.shape[0]):
        valid = I_exact[i] >= 0
        n_true = min(k, int(valid.sum()))
        if n_true == 0:
            continue
        true = valid.copy()
        true[k:] = False
        if D_exact is not None:
            kth = D_exact[i, n_true - 1]  # (n_true <= k) the score a true neighbour must tie
            true |= valid & (D_exact[i] >= kth - tie_tol)
        found = np.unique(I_approx[i, :k])
        found = found[found >= 0]
        hits = np.isin(found, I_exact[i, true]).sum()
        recalls.append(min(int(hits), n_true) / n_true)
    return float(np.mean(recalls)) if recalls else 1.0


def drop_ids(
    D: np.ndarray, I: np.ndarray, drop: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (D, I) without the id drop[i] in row i, cut to k columns (-1/-inf padded)."""
    D, I, drop = np.asarray(D), np.asarray(I), np.asarray(drop)
    if I.ndim != 2 or D.shape != I.shape or drop.shape != (I.shape[0],):
        raise ValueError(f"shapes D {D.shape}, I {I.shape}, drop {drop.shape} do not match")
    keep = I != drop[:, None]
    out_D = np.full((I.shape[0], k), -np.inf, np.float32)
    out_I = np.full((I.shape[0], k), -1, np.int64)
    for i in range(I.shape[0]):
        cols = np.flatnonzero(keep[i])[:k]
        out_D[i, : len(cols)] = D[i, cols]
        out_I[i, : len(cols)] = I[i, cols]
    return out_D, out_I
