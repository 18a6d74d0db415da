"""Temporal alignment of two segment sequences: which part of the query matches which part
of a candidate, in order.

    Q (m, d), T (n, d) float32 unit rows (one Sora vector per ~4 s segment)
      -> S = Q @ T.T                    (m, n) cosine similarities
      -> s = S - threshold              gain of putting cell (i, j) on the path
      -> local DP, one row at a time    best path ending at each cell, back-pointers
      -> best cell, traced back         a monotone path of (i, j) pairs
      -> Alignment(score, total, query_range, target_range, path, length) or None

The objective is Smith-Waterman's over a similarity matrix: the path maximises the summed
gain (S[i, j] - threshold) of its cells, minus `gap_penalty` for every horizontal step
(target advances, query holds: the copy is slowed down, or the query has a still shot) and
every vertical step (query advances, target holds: sped up). Diagonal steps cost nothing.
The alignment is local: it starts and ends wherever the sum is best, so a clip inside a
long video, or a trimmed copy, aligns on the shared part only.

One refinement over the plain sum: a cell reached by a horizontal or vertical step counts
HALF its gain (symmetric DTW step weights, 1 for a diagonal step and 1/2 for the others).
Every path between two cells then carries the same total weight, (di + dj) / 2, so the DP
maximises a weighted mean of similarities and the path follows the ridge of S rather than
the route that visits the most cells. Without it, adjacent segments of one shot (often at
cosine 0.9+) would make the path zig-zag around a true diagonal, (i, j) -> (i, j+1) ->
(i+1, j+1), collecting an extra cell per step. A diagonal path's total is exactly
sum(S - threshold).

Ranges are INCLUSIVE segment indices, (first, last); the caller maps them to seconds with
the segments' windows (query segment i covers the query's i-th window).

Cost: O(m n) time, an int8 back-pointer matrix of m n bytes. The DP loops in Python over
the shorter sequence (the problem is symmetric) and is vectorised along the longer one: the
horizontal run inside a row, A[j] = max(E[j], A[j-1] + c[j]), has the closed form
P[j] + max_{k<=j}(E[k] - P[k]) with P the prefix sum of c (a cumsum and a running max).
m = n = 100 takes ~1 ms, 200 x 200 ~3 ms on the 2-core dev machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A segment pair counts towards a match when its cosine exceeds this. Random 256-d
# directions sit at cosine 0 +- 0.06 (1/sqrt(d)); a trained encoder's unrelated segments sit
# higher (a shared component), and re-encodes and crops of the same footage are expected
# near 0.8 to 1. 0.5 sits between: a copy's cells gain +0.3 to +0.5, unrelated ones lose,
# so a run of unrelated segments ends the path. Not yet measured on the trained encoder:
# re-tune both defaults on labelled copy pairs when they exist.
DEFAULT_THRESHOLD = 0.5
# Cost of one horizontal or vertical step, on top of the cell's own (S - threshold) / 2. A
# 2x slow-down needs one horizontal step per query segment: at a copy's typical cell gain
# of ~0.4 that step still nets +0.1 (0.2 - 0.1), so speed changes align end to end, and a
# one-segment insertion (an unrelated cell, gain ~-0.25) is bridged at a cost of ~0.35, less
# than one matching segment earns. Along a row the path gains only where cos > 0.7, so it
# does not stretch a match across a static or repetitive stretch of middling similarity.
DEFAULT_GAP_PENALTY = 0.1
# The adaptive threshold's ceiling. When every candidate segment looks like the query (a
# one-video library: the background is the query itself; a uniform one), the background is
# ~1 and the threshold would reach 1, which no cell can beat. Capped here, an exact copy
# (cosine 1 within float rounding) still gains 0.01 a cell and aligns.
MAX_ADAPTIVE_THRESHOLD = 0.99
UNIT_NORM_TOL = 1e-3  # rows must have |x| within this of 1 (as the index requires)

# back-pointers: the step by which a cell's best path arrived (or that it starts there)
_START, _FROM_DIAG, _FROM_HORIZ, _FROM_VERT = 0, 1, 2, 3
_NEG = -np.inf


@dataclass(frozen=True)
class Alignment:
    """The best monotone local alignment of a query sequence against a target sequence."""

    score: float  # mean cosine similarity S[i, j] over the path's cells
    total: float  # DP objective: sum(w * (S - threshold)) - gap_penalty * non-diagonal steps,
    #               w = 1 for the first cell and diagonal steps, 1/2 for the others
    query_range: tuple[int, int]  # first and last query segment on the path, inclusive
    target_range: tuple[int, int]  # first and last target segment on the path, inclusive
    path: list[tuple[int, int]]  # (query index, target index), both non-decreasing
    length: int  # number of cells on the path, len(path)


def adaptive_threshold(
    background: np.ndarray, *, floor: float = DEFAULT_THRESHOLD, margin: float = 0.5
) -> float:
    """The alignment threshold for one query: halfway (`margin`) from the typical similarity
    of the query to unrelated material up to 1, never below `floor`.

    `background` holds similarities of the query's segments to candidate segments, most of
    them unrelated (the median is taken, so a few true matches do not move it). Why: a
    fixed threshold means "similar" only for one model; an untrained or weakly trained
    encoder puts unrelated clips at cosine 0.9+, and a fixed 0.5 then aligns everything.
    Relative to the background, a true copy (near 1) still stands out, whatever the model.
    Never above MAX_ADAPTIVE_THRESHOLD: a background of ~1 (a tiny or uniform library)
    would otherwise leave nothing that can align.
    """
    if background.size == 0:
        return floor
    bg = float(np.median(background))
    return min(max(floor, bg + margin * (1.0 - bg)), MAX_ADAPTIVE_THRESHOLD)


def check_segments(name: str, x: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Boundary check: a float32 (k, d) array of finite unit rows, k >= 1 -> x contiguous."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (segments, dim), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one segment of dim >= 1, got {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dim {x.shape[1]}, the query has dim {dim}")
    norms = np.linalg.norm(x, axis=1)
    if not np.isfinite(norms).all() or (np.abs(norms - 1.0) > UNIT_NORM_TOL).any():
        raise ValueError(f"{name} rows must be finite unit vectors (inner product = cosine)")
    return np.ascontiguousarray(x)


def _check_params(threshold: float, gap_penalty: float) -> tuple[float, float]:
    for name, value in (("threshold", threshold), ("gap_penalty", gap_penalty)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    threshold, gap_penalty = float(threshold), float(gap_penalty)
    if not -1.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be a cosine in [-1, 1), got {threshold}")
    if not (np.isfinite(gap_penalty) and gap_penalty >= 0.0):
        raise ValueError(f"gap_penalty must be finite and >= 0, got {gap_penalty}")
    return threshold, gap_penalty


def align(
    Q: np.ndarray,
    T: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    gap_penalty: float = DEFAULT_GAP_PENALTY,
) -> Alignment | None:
    """Best monotone local alignment of query segments Q (m, d) to target segments T (n, d).

    Both are float32 arrays of unit rows (one Sora vector per segment, in time order).
    Returns None when no segment pair has a cosine above `threshold`.
    """
    threshold, gap_penalty = _check_params(threshold, gap_penalty)
    Q = check_segments("Q", Q)
    T = check_segments("T", T, Q.shape[1])
    return _align(Q @ T.T, threshold, gap_penalty)  # (m, n)


def align_many(
    Q: np.ndarray,
    candidates: Sequence[np.ndarray],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    gap_penalty: float = DEFAULT_GAP_PENALTY,
) -> list[Alignment | None]:
    """`align(Q, T)` for each candidate T (n_c, d), in order; Q is checked once."""
    threshold, gap_penalty = _check_params(threshold, gap_penalty)
    Q = check_segments("Q", Q)
    if isinstance(candidates, np.ndarray):
        raise TypeError("candidates must be a sequence of (n, d) arrays, not one array")
    Ts = [check_segments(f"candidates[{c}]", T, Q.shape[1]) for c, T in enumerate(candidates)]
    return [_align(Q @ T.T, threshold, gap_penalty) for T in Ts]  # (m, n_c) each


def _align(S: np.ndarray, threshold: float, gap_penalty: float) -> Alignment | None:
    """The DP over a similarity matrix S (m, n); loops over the shorter axis."""
    if float(S.max()) <= threshold:
        return None
    transposed = S.shape[0] > S.shape[1]
    G = (S.T if transposed else S).astype(np.float64) - threshold  # (rows, cols), rows <= cols
    total, cells = _local_dp(G, gap_penalty)
    if transposed:
        cells = [(j, i) for i, j in cells]
    qi = np.fromiter((i for i, _ in cells), dtype=np.intp, count=len(cells))
    tj = np.fromiter((j for _, j in cells), dtype=np.intp, count=len(cells))
    return Alignment(
        score=float(S[qi, tj].astype(np.float64).mean()),
        total=total,
        query_range=(cells[0][0], cells[-1][0]),
        target_range=(cells[0][1], cells[-1][1]),
        path=cells,
        length=len(cells),
    )


def _local_dp(G: np.ndarray, gap: float) -> tuple[float, list[tuple[int, int]]]:
    """Local alignment over gains G = S - threshold (rows, cols) -> (best total, path).

    Best total of a path ending at (i, j), by its last step:
      A[i, j] = max( G[i, j]             + max(0, A[i-1, j-1]),    diagonal, or a new start
                     G[i, j] / 2 - gap   +        A[i-1, j],       vertical
                     G[i, j] / 2 - gap   +        A[i, j-1] )      horizontal
    Row by row: E = the first two (from the row above), then the horizontal run
    A[j] = max(E[j], A[j-1] + c[j]) with c = G/2 - gap, i.e. P[j] + max_{k<=j}(E[k] - P[k]).
    """
    rows, cols = G.shape
    ptr = np.empty((rows, cols), dtype=np.int8)  # how each cell's best path arrived
    prev = np.full(cols, _NEG)  # A of the row above
    up_left = np.empty(cols)
    best, best_cell = _NEG, (0, 0)
    for i in range(rows):
        g = G[i]  # (cols,)
        half = 0.5 * g - gap  # (cols,) gain of a cell reached by a non-diagonal step
        up_left[0] = _NEG
        up_left[1:] = prev[:-1]
        extend = up_left > 0.0  # ties: a fresh start, the shorter path
        diag = g + np.where(extend, up_left, 0.0)
        vert = half + prev
        from_vert = vert > diag  # ties: the diagonal
        E = np.where(from_vert, vert, diag)
        src = np.where(from_vert, _FROM_VERT, np.where(extend, _FROM_DIAG, _START))
        P = np.cumsum(half)
        B = E - P
        M = np.maximum.accumulate(B)
        own = B >= M  # the best path arrives from above, not along this row
        cur = np.where(own, E, P + M)
        ptr[i] = np.where(own, src, _FROM_HORIZ)
        j = int(cur.argmax())  # ties: the earliest row, then column
        if cur[j] > best:
            best, best_cell = float(cur[j]), (i, j)
        prev = cur

    i, j = best_cell
    path = [(i, j)]
    while (step := ptr[i, j]) != _START:
        if step == _FROM_DIAG:
            i, j = i - 1, j - 1
        elif step == _FROM_VERT:
            i -= 1
        else:
            j -= 1
        path.append((i, j))
    path.reverse()
    return best, path
