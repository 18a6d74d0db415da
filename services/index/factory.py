"""Which FAISS index to build: a pure function of numbers, no faiss import.

    (n_vectors, dim, memory_budget_bytes, exact_threshold)
      -> n <= exact_threshold            : "IDMap2,Flat"          exact inner product
      -> n*(4d+d/4+17) fits, 2 | d       : "IVF{nlist'},PQ{d/2}x4fs,RFlat"  fast-scan codes,
                                           then an exact re-rank over held full vectors
      -> n*(4d+8) fits the budget        : "IVF{nlist},Flat"      approximate, full vectors
      -> n*(d+8) fits the budget         : "IVF{nlist},SQ8"       8-bit scalar codes
      -> else                            : "IVF{nlist},PQ{m}x8"   m bytes per vector
      -> IndexChoice(factory, kind, nprobe, nlist, train_size, bytes_estimate)

The reasoning follows autofaiss (`get_optimal_index_keys_v2`, `get_optimal_nb_clusters`,
`get_optimal_train_size`): nlist is the power of two nearest to 4*sqrt(n) (the faiss
guideline is 4*sqrt(n) to 16*sqrt(n)), the training sample holds 50 vectors per list (faiss
warns below 39; autofaiss trains on 30 to 256 per list), and nprobe is a starting point
that the build tunes against exact search (`faiss_index.tune_nprobe`).

Fast-scan (services.index.refined) is the default above the exact threshold: it costs a
tenth of IVF,Flat's CPU per query at the same recall@10 (measured in refined.py). Its lists
are scanned so cheaply that the coarse quantizer dominates, so it takes fewer, longer lists:
nlist' is the power of two nearest sqrt(n) (1024 at 10^6; at 4096 lists the batch searches
were 1.5x slower at the same recall).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Literal

IndexKind = Literal["exact", "ivf_fastscan", "ivf_flat", "ivf_sq8", "ivf_pq"]

# Exact search up to here: one single-thread query scans 50k x 256 floats in ~1.6 ms on
# this project's 2-core dev machine, so exact stays well inside a 5 ms p99 and costs no recall.
DEFAULT_EXACT_THRESHOLD = 50_000
# What one index may occupy in RAM (the vectors, codes, ids and centroids).
DEFAULT_MEMORY_BUDGET_BYTES = 4 * 2**30

MIN_POINTS_PER_LIST = 39  # faiss's k-means warns with fewer training points per centroid
TRAIN_POINTS_PER_LIST = 50  # training sample per inverted list (autofaiss: 30 to 256)
MIN_NLIST = 16  # fewer lists than this is not worth an IVF: use exact search
MAX_NLIST = 65_536  # beyond this a flat coarse quantizer dominates the query cost
PQ_MIN_TRAIN = 256 * MIN_POINTS_PER_LIST  # 8-bit PQ codebooks have 256 centroids each
PQ_M_CANDIDATES = (64, 48, 32, 24, 16, 12, 8, 4)  # bytes per code; GPU-supported counts
FASTSCAN_DIMS_PER_CODE = 2  # dims per 4-bit fast-scan PQ sub-quantizer (4: 0.88 recall@10
# at 4x re-rank and 10^6, 2: 0.96 at the same speed, measured)
ID_BYTES = 8  # an int64 id stored per vector in the inverted lists
IDMAP2_BYTES = 48  # IDMap2: id array plus the reverse hash map, per vector (estimate)
RECALL_TARGET = 0.95  # recall@10 against exact that nprobe is tuned for


@dataclass(frozen=True)
class IndexChoice:
    """An index to build and how to search it; saved in the snapshot manifest."""

    factory: str  # faiss index_factory string, built with METRIC_INNER_PRODUCT
    kind: IndexKind  # exact, or the IVF code type
    nprobe: int  # lists visited per query: a start value, tuned after training; 0 if exact
    nlist: int  # inverted lists (coarse centroids); 0 if exact
    train_size: int  # vectors sampled from the store to train on; 0 if exact
    bytes_estimate: int  # RAM the index will take for n_vectors

    @property
    def exact(self) -> bool:
        return self.kind == "exact"


def _nonneg_int(name: str, value: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def choose_nlist(n_vectors: int) -> int:
    """Power of two nearest to 4*sqrt(n), capped so each list gets >= 39 training points."""
    n = _nonneg_int("n_vectors", n_vectors)
    if n == 0:
        return 0
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    trainable = n // MIN_POINTS_PER_LIST
    if trainable < 1:
        return 0
    nlist = min(nlist, 2 ** int(math.log2(trainable)), MAX_NLIST)
    return nlist


def choose_fastscan_nlist(n_vectors: int) -> int:
    """Power of two nearest to sqrt(n), capped so each list gets >= 39 training points."""
    n = _nonneg_int("n_vectors", n_vectors)
    trainable = n // MIN_POINTS_PER_LIST
    if trainable < 1:
        return 0
    return min(2 ** round(math.log2(math.sqrt(n))), 2 ** int(math.log2(trainable)), MAX_NLIST)


def _ivf_bytes(n: int, dim: int, nlist: int, code_bytes: int, extra: int = 0) -> int:
    return n * (code_bytes + ID_BYTES) + nlist * dim * 4 + extra


def choose_index(
    n_vectors: int,
    dim: int,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    *,
    exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
    fastscan: bool = True,
) -> IndexChoice:
    """The index for `n_vectors` unit vectors of `dim` dimensions under a memory budget.
    fastscan=False skips the fast-scan kind (a GPU host: faiss has no GPU fast-scan, and a
    GPU IVF,Flat is the faster of the two there).

    Exact search (whatever the budget: its size is bounded by the threshold) up to
    `exact_threshold` vectors, or when there are too few vectors to train >= 16 lists;
    above it the least compressed IVF that fits the budget. Raises ValueError when even the
    smallest PQ code does not fit.
    """
    n = _nonneg_int("n_vectors", n_vectors)
    d = _nonneg_int("dim", dim)
    budget = _nonneg_int("memory_budget_bytes", memory_budget_bytes)
    threshold = _nonneg_int("exact_threshold", exact_threshold)
    if d == 0:
        raise ValueError("dim must be >= 1")
    if budget == 0:
        raise ValueError("memory_budget_bytes must be > 0")

    nlist = choose_nlist(n)
    if n <= threshold or nlist < MIN_NLIST:
        return IndexChoice("IDMap2,Flat", "exact", 0, 0, 0, n * (4 * d + IDMAP2_BYTES))

    fs_nlist = choose_fastscan_nlist(n)
    if fastscan and d % FASTSCAN_DIMS_PER_CODE == 0 and fs_nlist >= MIN_NLIST:
        m = d // FASTSCAN_DIMS_PER_CODE  # 2 dims per 4-bit code: d/4 bytes a vector
        held = n * (4 * d + ID_BYTES + 1)  # the full vectors, their ids, a live flag
        fastscan_bytes = _ivf_bytes(n, d, fs_nlist, (m + 1) // 2, extra=held)
        if fastscan_bytes <= budget:
            return IndexChoice(f"IVF{fs_nlist},PQ{m}x4fs,RFlat", "ivf_fastscan",
                               max(1, fs_nlist // 64), fs_nlist,
                               min(n, TRAIN_POINTS_PER_LIST * fs_nlist),
                               fastscan_bytes)  # fmt: skip
    nprobe = max(1, nlist // 32)
    train_size = min(n, TRAIN_POINTS_PER_LIST * nlist)
    flat = _ivf_bytes(n, d, nlist, 4 * d)
    if flat <= budget:
        return IndexChoice(f"IVF{nlist},Flat", "ivf_flat", nprobe, nlist, train_size, flat)
    sq8 = _ivf_bytes(n, d, nlist, d, extra=2 * 4 * d)  # codes + per-dimension min/max
    if sq8 <= budget:
        return IndexChoice(f"IVF{nlist},SQ8", "ivf_sq8", nprobe, nlist, train_size, sq8)
    codebooks = 256 * d * 4  # m sub-quantizers x 256 centroids x d/m floats
    for m in PQ_M_CANDIDATES:
        if m >= d or d % m:
            continue
        pq = _ivf_bytes(n, d, nlist, m, extra=codebooks)
        if pq <= budget:
            train_size = min(n, max(train_size, PQ_MIN_TRAIN))
            factory = f"IVF{nlist},PQ{m}x8"
            return IndexChoice(factory, "ivf_pq", 2 * nprobe, nlist, train_size, pq)
    raise ValueError(
        f"memory budget of {budget} bytes is too small for {n} vectors of dim {d} "
        "(even the smallest PQ code does not fit)"
    )


def rebuild_reason(
    current: IndexChoice,
    n_vectors: int,
    dim: int,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    *,
    exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
    fastscan: bool = True,
) -> str | None:
    """Why an index built as `current` should be rebuilt now that it holds `n_vectors`.

    None when it should stay. Exact -> IVF as soon as the threshold is passed; IVF -> exact
    only below half the threshold (hysteresis, so a collection near the threshold does not
    flip-flop); IVF -> IVF when the budget asks for another code type or when nlist is off
    by 4x or more (the collection grew or shrank ~16x since it was trained).
    """
    want = choose_index(
        n_vectors, dim, memory_budget_bytes, exact_threshold=exact_threshold, fastscan=fastscan
    )
    if current.exact:
        if want.exact:
            return None
        return f"{n_vectors} vectors passed the exact threshold: rebuild as {want.factory}"
    if want.exact:
        if n_vectors <= exact_threshold // 2:
            return f"{n_vectors} vectors is under half the exact threshold: rebuild as exact"
        return None
    if want.kind != current.kind:
        return f"the index for this size and budget is {want.factory}, not {current.factory}"
    if want.nlist >= 4 * current.nlist or 4 * want.nlist <= current.nlist:
        return f"{n_vectors} vectors want {want.nlist} lists, index has {current.nlist}"
    return None
