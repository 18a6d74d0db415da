"""The faiss calls: make, train, add, remove, search, tune, and place on a GPU.

    IndexChoice --new_index--> faiss.Index (CPU, METRIC_INNER_PRODUCT, ids = SQL row ids)
      train(index, xt)                       IVF only: spherical k-means on a sample
      add(index, ids, xb) / remove(index, ids)
      search(index, xq, k[, admitted]) -> D (nq,k) float32, I (nq,k) int64, -1 / -inf past
                                the last hit; `admitted` (bits over ids) limits it to those ids
      ExactKnn(xq, k).add(ids, xb)...result() ground truth streamed over batches
      tune_nprobe(index, xq, I_exact, D_exact, k, target) -> (nprobe, recall)
      Placement.place(cpu_index) -> the index searches run on (a GPU copy, or itself)

Boundary checks live here too: vectors and queries must be float32 (n, d) and finite,
stored vectors unit norm (inner product = cosine), ids int64 and strictly increasing.
"""

# ruff: noqa: E741  (I is faiss's name for the id matrix; names follow the maths)

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
import zipfile
from contextlib import AbstractContextManager, nullcontext

import faiss
import numpy as np

from services.index.factory import IndexChoice
from services.index.recall import drop_ids, recall_at_k
from services.index.refined import K_FACTORS, RefinedIndex, is_refined_file, rows_full

REFINE_SUFFIX = ",RFlat"  # factory strings of RefinedIndex: codes index + exact re-rank

log = logging.getLogger(__name__)

METRIC = faiss.METRIC_INNER_PRODUCT
KMEANS_ITERS = 10  # faiss's IVF default; enough for coarse quantizers, cheap at 10^6
KMEANS_SEED = 1234
UNIT_NORM_TOL = 1e-3  # stored vectors must have |x| within this of 1
GPU_MAX_K = 2048  # faiss GPU search limit on k (and nprobe)
# Searches of fewer query rows than this run on one OpenMP thread. faiss splits even a
# single query's scan (exact indexes) over an OpenMP team; with the API's many threads on
# a busy 2-core host the team's barrier waits cost 10-20x the scan itself (10^4 x 256
# exact, one query: 15 ms with the team, 0.8 ms alone, measured). Concurrency across
# calls comes from the server's threads; a batch (SearchBatch, builds) keeps the team,
# which parallelises over its queries.
SINGLE_THREAD_BELOW = 16
FILTER_NPROBE_EXPONENT = 0.25  # a filter admitting share s visits nprobe x s^-1/4 lists
FILTER_NPROBE_MAX_FACTOR = 8.0  # ... at most 8x (s = 1/4096)
OMP_THREADS = faiss.omp_get_max_threads()  # the process default, read once at import


# ---------------------------------------------------------------- boundary checks
def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    return int(k)


def check_queries(xq: np.ndarray, dim: int) -> np.ndarray:
    """xq must be a float32 array of shape (nq, dim), finite. Returns it C-contiguous."""
    if not isinstance(xq, np.ndarray):
        raise TypeError(f"xq must be a numpy array, got {type(xq).__name__}")
    if xq.dtype != np.float32:
        raise TypeError(f"xq must be float32, got {xq.dtype} (use xq.astype(np.float32))")
    if xq.ndim != 2 or xq.shape[1] != dim:
        raise ValueError(f"xq must have shape (nq, {dim}), got {xq.shape} (one query: xq[None, :])")
    if not np.isfinite(xq).all():
        raise ValueError("xq holds NaN or infinite values")
    return np.ascontiguousarray(xq)


def check_batch(ids: np.ndarray, xb: np.ndarray, dim: int, *, after_id: int) -> None:
    """A batch of stored vectors: int64 ids > after_id, strictly increasing; unit float32."""
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.ndim != 1:
        raise TypeError(f"ids must be a 1-D int64 array, got {getattr(ids, 'dtype', ids)!r}")
    if not isinstance(xb, np.ndarray) or xb.dtype != np.float32:
        raise TypeError(f"xb must be a float32 array, got {getattr(xb, 'dtype', type(xb))}")
    if xb.ndim != 2 or xb.shape != (len(ids), dim):
        raise ValueError(f"xb must have shape ({len(ids)}, {dim}), got {xb.shape}")
    if len(ids) == 0:
        return
    if ids[0] <= after_id or (len(ids) > 1 and (np.diff(ids) <= 0).any()):
        raise ValueError(f"ids must be strictly increasing and > {after_id}")
    norms = np.linalg.norm(xb, axis=1)
    if not np.isfinite(norms).all() or (np.abs(norms - 1.0) > UNIT_NORM_TOL).any():
        raise ValueError("xb rows must be finite unit vectors (inner product = cosine)")


# ---------------------------------------------------------------- index operations
def new_index(choice: IndexChoice, dim: int) -> faiss.Index:
    """An empty CPU index for `choice` (inner product), k-means set up if it is an IVF.
    A fast-scan choice ("...,RFlat") is a RefinedIndex over the faiss codes index."""
    if choice.factory.endswith(REFINE_SUFFIX):
        base = faiss.index_factory(dim, choice.factory.removesuffix(REFINE_SUFFIX), METRIC)
        index = RefinedIndex(base)
    else:
        index = faiss.index_factory(dim, choice.factory, METRIC)
    if not choice.exact:
        ivf = ivf_of(index)
        ivf.cp.niter = KMEANS_ITERS
        ivf.cp.seed = KMEANS_SEED
        ivf.cp.spherical = True  # unit vectors: centroids on the sphere too
        set_nprobe(index, choice.nprobe)
    return index


def train(index: faiss.Index, xt: np.ndarray) -> None:
    if index.is_trained:
        return
    index.train(np.ascontiguousarray(xt, dtype=np.float32))


def add(index: faiss.Index, ids: np.ndarray, xb: np.ndarray) -> None:
    index.add_with_ids(np.ascontiguousarray(xb), np.ascontiguousarray(ids))


def remove(index: faiss.Index, ids: np.ndarray) -> int:
    """Remove ids (absent ones are ignored); returns how many vectors went."""
    if len(ids) == 0:
        return 0
    return int(index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))


def ivf_of(index: faiss.Index) -> faiss.IndexIVF:
    """The IVF inside `index` (through a RefinedIndex); RuntimeError if there is none."""
    return faiss.extract_index_ivf(index.base if isinstance(index, RefinedIndex) else index)


def ids_of(index: faiss.Index) -> np.ndarray:
    """Every id the index holds, sorted: (ntotal,) int64. An 8-byte copy per vector."""
    try:
        ivf = ivf_of(index)
    except RuntimeError:
        ids = faiss.vector_to_array(faiss.downcast_index(index).id_map)  # IDMap2,Flat
    else:
        lists = ivf.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(lists.nlist)
            if lists.list_size(i)
        ]
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return np.sort(ids.astype(np.int64, copy=False))


def keeps_vectors(index: faiss.Index) -> bool:
    """A RefinedIndex or an exact IDMap2 keeps the full vectors; IVF lists keep codes."""
    return isinstance(index, RefinedIndex) or isinstance(
        faiss.downcast_index(index), faiss.IndexIDMap2
    )


def unmapped_snapshot(index: faiss.Index) -> bool:
    """A fast-scan index read from a snapshot whose kept vectors could not be mapped (an
    older layout): rewriting the snapshot lets the next loads map and share them."""
    return isinstance(index, RefinedIndex) and index.ntotal > 0 and index.mapped_rows == 0


def held_vectors(index: faiss.Index, ids: np.ndarray) -> np.ndarray | None:
    """The full vectors of `ids` kept by `index` (a RefinedIndex, or an exact IDMap2), or
    None when it keeps only codes (IVF) or lacks one of the ids."""
    if isinstance(index, RefinedIndex):
        try:
            return index.vectors(ids)
        except KeyError:
            return None
    if not keeps_vectors(index):
        return None
    try:
        return np.asarray(index.reconstruct_batch(ids), dtype=np.float32).reshape(len(ids), -1)
    except RuntimeError:  # an id it does not hold
        return None


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Apply nprobe to an IVF index (a no-op for exact ones). Do it before publishing."""
    if nprobe <= 0:
        return
    try:
        ivf = ivf_of(index)
    except RuntimeError:
        return
    ivf.nprobe = min(int(nprobe), ivf.nlist)


def search_params(index: faiss.Index, nprobe: int) -> dict[str, int]:
    """What a manifest records of how `index` is searched ({} for an exact index)."""
    if nprobe <= 0:
        return {}
    if isinstance(index, RefinedIndex):
        return {"nprobe": nprobe, "k_factor": index.k_factor}
    return {"nprobe": nprobe}


def get_nprobe(index: faiss.Index) -> int:
    try:
        return int(ivf_of(index).nprobe)
    except RuntimeError:
        return 0


def search(
    index: faiss.Index, xq: np.ndarray, k: int, admitted: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """D (nq, k) float32 inner products, best first; I (nq, k) int64 ids.

    Where fewer than k vectors are found, the tail of the row is I = -1, D = -inf.
    `admitted`: only these ids may be returned, as bits (uint8, id i is bit i % 8 of byte
    i // 8, as np.packbits(..., bitorder="little") packs a flag per id; ids past its end
    are refused). faiss tests them while it scans (an IDSelectorBitmap), so a filter that
    admits a quarter of the library costs the search of an unfiltered one, not a 4-8x
    over-fetch whose refused ids are thrown away after an exact re-rank.
    """
    # per calling thread (OpenMP's nthreads ICV is per thread): other calls are unaffected
    faiss.omp_set_num_threads(1 if len(xq) < SINGLE_THREAD_BELOW else OMP_THREADS)
    if admitted is None:
        D, I = index.search(xq, k)
    else:
        bits = np.ascontiguousarray(admitted, dtype=np.uint8)  # held until the search is done
        selector = faiss.IDSelectorBitmap(8 * len(bits), faiss.swig_ptr(bits))
        D, I = index.search(xq, k, params=selector_params(index, selector, bits))
    D = np.asarray(D, dtype=np.float32)
    I = np.asarray(I, dtype=np.int64)
    if not rows_full(I):  # padding: faiss scores it -FLT_MAX (inner product), not -inf
        D[I < 0] = -np.inf
    return D, I


def selector_params(
    index: faiss.Index, selector: faiss.IDSelector, bits: np.ndarray | None = None
) -> faiss.SearchParameters:
    """Search parameters that carry `selector`, with the index's own nprobe (a
    SearchParametersIVF's default nprobe is 1, not the index's) widened by the share of
    the ids that the selector's `bits` admit (filtered_nprobe; counted only for an IVF); a
    RefinedIndex passes them to its codes' index."""
    try:
        ivf = ivf_of(index)
    except RuntimeError:  # not an IVF: exact
        return faiss.SearchParameters(sel=selector)
    share = 1.0 if bits is None else counted(bits) / max(1, index.ntotal)
    nprobe = filtered_nprobe(int(ivf.nprobe), int(ivf.nlist), share)
    return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)


def filtered_nprobe(nprobe: int, nlist: int, share: float) -> int:
    """Lists a search visits when a filter admits `share` of the ids: nprobe x share^-1/4.

    nprobe is tuned for unfiltered recall, but a filter's nearest admitted vectors lie
    further out (the k-th admitted one is about the (k / share)-th overall), in lists a
    tuned nprobe does not visit. At 10^6 vectors (IVF1024 fast-scan, nprobe 7, 500
    held-out queries) recall@10 fell from 0.967 unfiltered to 0.948 for a quarter of the
    videos, 0.922 for 1/16 and 0.863 for 1/64; with share^-1/4 (nprobe 10, 14, 20) it was
    0.989, 0.996 and 0.968, while share^-1/2 (14, 28, 56) gained little more at up to 3x
    the lists. The factor stops at FILTER_NPROBE_MAX_FACTOR (a share of 1/4096): a filter
    admitting a few ids in 10^6 would otherwise scan ~30x the lists; such a filter's recall
    is not measured. A filter admitting nothing keeps nprobe: there is nothing to find."""
    if share >= 1.0 or share <= 0.0:
        return nprobe
    factor = min(share**-FILTER_NPROBE_EXPONENT, FILTER_NPROBE_MAX_FACTOR)
    return min(nlist, math.ceil(nprobe * factor - 1e-9))


# Counts of filter bits already seen, by the array's identity (a weak reference tells a
# live array from a new one at a freed address; no array is kept alive here: at 10^8 ids a
# filter's bits are 12 MB). A filter's bits are made once a sync (Catalogue.vector_bits)
# and then searched with many times; counting 125 KB at 10^6 ids took ~13 us a search.
_COUNTS: dict[int, tuple[weakref.ref, int]] = {}
_COUNTS_MAX = 64


def counted(bits: np.ndarray) -> int:
    """admitted_count(bits), counted once per array. The count only widens nprobe (see
    filtered_nprobe); the selector tests the bits themselves, so an array changed in place
    after its first search would search with a stale width, never admit a wrong id."""
    held = _COUNTS.get(id(bits))
    if held is not None and held[0]() is bits:
        return held[1]
    n = admitted_count(bits)
    if len(_COUNTS) >= _COUNTS_MAX:
        _COUNTS.clear()
    _COUNTS[id(bits)] = (weakref.ref(bits), n)
    return n


def admitted_count(bits: np.ndarray) -> int:
    """Set bits in a uint8 array (~16 us for 10^6 ids on numpy 2; unpacked on 1.x)."""
    if not hasattr(np, "bitwise_count"):  # numpy < 2.0
        return int(np.unpackbits(bits).sum())
    whole = len(bits) // 8 * 8  # popcount 8 bytes at a time
    return int(np.bitwise_count(bits[:whole].view(np.uint64)).sum()) + int(
        np.bitwise_count(bits[whole:]).sum()
    )


class ExactKnn:
    """Exact top-k inner products of fixed queries over a database streamed in batches."""

    def __init__(self, xq: np.ndarray, k: int) -> None:
        self.xq = np.ascontiguousarray(xq, dtype=np.float32)
        self.k = k
        self._heap = faiss.ResultHeap(len(self.xq), k, keep_max=True)

    def add(self, ids: np.ndarray, xb: np.ndarray) -> None:
        if len(ids) == 0 or len(self.xq) == 0:
            return
        D, I = faiss.knn(self.xq, np.ascontiguousarray(xb), min(self.k, len(ids)), metric=METRIC)
        self._heap.add_result(D, ids[I])  # (nq, k') batch positions -> row ids

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._heap.finalize()
        return self._heap.D, self._heap.I


def tune(
    index: faiss.Index,
    xq: np.ndarray,
    I_exact: np.ndarray,
    D_exact: np.ndarray,
    k: int,
    target: float,
    self_ids: np.ndarray | None = None,
) -> tuple[int, float]:
    """tune_nprobe; a RefinedIndex also gets its k_factor (of K_FACTORS): per factor the
    smallest nprobe reaching the target, and of those pairs the one whose search of these
    queries took least time. A larger factor re-ranks more candidates, a larger nprobe
    scans more codes; which costs less depends on the data (on the bench's segment
    vectors 4 x 8 lists, on their per-video means 8 x fewer lists), so it is measured."""
    if not isinstance(index, RefinedIndex):
        return tune_nprobe(index, xq, I_exact, D_exact, k, target, self_ids)
    reached: list[tuple[float, int, int, float]] = []  # (seconds, k_factor, nprobe, recall)
    best_miss = (0.0, K_FACTORS[-1], ivf_of(index).nlist, -1.0)
    for k_factor in K_FACTORS:
        index.k_factor = k_factor
        nprobe, recall = tune_nprobe(index, xq, I_exact, D_exact, k, target, self_ids)
        if recall < target:
            best_miss = max(best_miss, (0.0, k_factor, nprobe, recall), key=lambda t: t[3])
            continue
        reached.append((_search_seconds(index, xq, k), k_factor, nprobe, recall))
        if nprobe == 1:
            break  # a larger factor costs more and cannot scan less
    _, index.k_factor, nprobe, recall = min(reached) if reached else best_miss
    set_nprobe(index, nprobe)
    return nprobe, recall


def _search_seconds(index: faiss.Index, xq: np.ndarray, k: int, repeats: int = 2) -> float:
    """The best of `repeats` timed searches of xq, one query at a time as the API does."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for row in range(0, len(xq), 4):
            search(index, xq[row : row + 1], k)
        best = min(best, time.perf_counter() - t)
    return best


def serialize_index(index: faiss.Index) -> memoryview:
    """The index as the bytes of its snapshot file (a faiss file, or a RefinedIndex's npz).
    Hold off mutations meanwhile (VectorIndex: its read lock)."""
    if isinstance(index, RefinedIndex):
        return index.to_bytes()
    return memoryview(faiss.serialize_index(index))


def write_index(index: faiss.Index, path: str) -> None:
    with open(path, "wb") as f:
        f.write(serialize_index(index))


def read_index(path: str) -> faiss.Index:
    """A faiss file, or a RefinedIndex's npz; RuntimeError when it is neither readable."""
    if is_refined_file(path):
        try:
            return RefinedIndex.read(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise RuntimeError(f"unreadable refined index: {e}") from e
    return faiss.read_index(path)


def tune_nprobe(
    index: faiss.Index,
    xq: np.ndarray,
    I_exact: np.ndarray,
    D_exact: np.ndarray,
    k: int,
    target: float,
    self_ids: np.ndarray | None = None,
) -> tuple[int, float]:
    """The smallest nprobe reaching recall@k >= target on these queries, and its recall.

    Doubling from 1 until the target is met, then a binary search between the last two
    powers of two (recall grows with nprobe). autofaiss binary-searches for a latency
    bound; we tune for recall, which is what the service promises, at the least cost.
    When no nprobe reaches the target (strong compression), returns nlist and its recall.
    `self_ids`: the queries' own ids when they are stored vectors; each is dropped from
    its row (of I_exact too) before recall is counted (`recall.drop_ids`).
    """
    nlist = ivf_of(index).nlist
    cache: dict[int, float] = {}

    def recall_at(nprobe: int) -> float:
        if nprobe not in cache:
            set_nprobe(index, nprobe)
            cache[nprobe] = measure_recall(index, xq, I_exact, D_exact, k, self_ids)
            log.debug("nprobe=%d recall@%d=%.4f", nprobe, k, cache[nprobe])
        return cache[nprobe]

    hi = 1
    while recall_at(hi) < target and hi < nlist:
        hi = min(2 * hi, nlist)
    if recall_at(hi) < target:
        log.warning("recall@%d %.3f < target %.3f even at nprobe=%d", k, cache[hi], target, hi)
    else:
        lo = hi // 2  # recall_at(lo) < target, or lo == 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if recall_at(mid) >= target else (mid, hi)
    set_nprobe(index, hi)
    return hi, cache[hi]


def measure_recall(
    index: faiss.Index,
    xq: np.ndarray,
    I_exact: np.ndarray,
    D_exact: np.ndarray,
    k: int,
    self_ids: np.ndarray | None = None,
) -> float:
    """recall@k of `index` on xq against exact (D_exact, I_exact), ties tolerated."""
    if self_ids is None:
        _, I = search(index, xq, k)
        return recall_at_k(I, I_exact, k, D_exact)
    D, I = search(index, xq, k + 1)
    _, I = drop_ids(D, I, self_ids, k)
    D_exact, I_exact = drop_ids(D_exact, I_exact, self_ids, I_exact.shape[1] - 1)
    return recall_at_k(I, I_exact, k, D_exact)


def faiss_version() -> str:
    return str(faiss.__version__)


# ---------------------------------------------------------------- placement (CPU / GPU)
def gpu_available() -> bool:
    """True when this faiss build has GPU support and the process sees a GPU."""
    return (
        hasattr(faiss, "StandardGpuResources")
        and hasattr(faiss, "index_cpu_to_gpu")
        and faiss.get_num_gpus() > 0
    )


class Placement:
    """Where searches run. The CPU index stays the truth (mutations, snapshots); on a GPU
    machine `place` returns a GPU copy of it to search, else the CPU index itself.

    GPU indexes are not safe for concurrent searches, so `search_guard` serialises them;
    CPU faiss searches are const and run concurrently.
    """

    def __init__(self, use_gpu: bool | None = None, device: int = 0) -> None:
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        if self.use_gpu and not gpu_available():
            raise RuntimeError("use_gpu=True but faiss has no GPU support or sees no GPU")
        self.device = device
        self._res = faiss.StandardGpuResources() if self.use_gpu else None
        self._gpu_lock = threading.Lock()

    def place(self, cpu_index: faiss.Index) -> faiss.Index:
        if not self.use_gpu or isinstance(cpu_index, RefinedIndex):
            return cpu_index  # fast-scan codes have no GPU version: searched on the CPU
        try:
            gpu_index = faiss.index_cpu_to_gpu(self._res, self.device, cpu_index)
        except RuntimeError as e:  # e.g. a PQ code size the GPU does not support
            log.warning("index stays on CPU, GPU copy failed: %s", e)
            return cpu_index
        nprobe = get_nprobe(cpu_index)
        if nprobe:
            faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", nprobe)
        return gpu_index

    def search_guard(self, index: faiss.Index, cpu_index: faiss.Index) -> AbstractContextManager:
        return nullcontext() if index is cpu_index else self._gpu_lock
