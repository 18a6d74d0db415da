"""Filling an index from the store: a fresh build, and catching up with what changed.

Fresh build (build_from_source):
    tombstone_seq = source.max_tombstone_seq()        FIRST: a delete racing the build is
                                                      replayed by the next catch-up
    choice = choose_index(source.count(), ...)
    exact: one pass, add every batch
    IVF:   pass 1 samples a training set and 2 x 500 queries at random positions,
           train; pass 2 adds every batch while computing the queries' exact top-2k,
           tune nprobe on the first half of the queries, measure recall@10 on the other

Catch-up (catch_up):
    tombstones(after_seq=tombstone_seq) -> remove_ids (absent ids are harmless)
    iter_vectors(after_id=watermark)    -> add_with_ids, watermark = last id added

The queries are stored vectors, as in search-by-video or "find moments like this one";
each query's own id is left out of its results when recall is counted.
"""

# ruff: noqa: E741  (I is faiss's name for the id matrix; names follow the maths)

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import faiss
import numpy as np

from services.index import faiss_index as fi
from services.index.factory import (
    DEFAULT_EXACT_THRESHOLD,
    DEFAULT_MEMORY_BUDGET_BYTES,
    MIN_POINTS_PER_LIST,
    RECALL_TARGET,
    IndexChoice,
    choose_index,
)
from services.index.source import VectorSource
from services.store import Level

log = logging.getLogger(__name__)

RECALL_K = 10
TUNE_QUERIES = 500  # queries nprobe is tuned on
EVAL_QUERIES = 500  # held-out queries the stored recall@10 is measured on
TUNE_MARGIN = 0.01  # tune for target + margin so held-out recall lands above the target
BATCH_SIZE = 65_536

Guard = Callable[[], AbstractContextManager]


@dataclass
class BuildResult:
    index: faiss.Index  # CPU index, nprobe applied
    choice: IndexChoice  # nprobe = the tuned value
    watermark: int  # highest id added (0 when none)
    tombstone_seq: int  # read before the first vector
    n_at_build: int  # vectors added
    recall_at_10: float  # held-out recall@10 against exact (1.0 for exact)
    rows_read: int  # rows read from the source, both passes
    seconds: float


@dataclass(frozen=True)
class CatchUp:
    added: int
    removed: int
    watermark: int
    tombstone_seq: int


def _sample_positions(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(size, n), replace=False)) if n else np.zeros(0, int)


def _sample_pass(
    source: VectorSource,
    level: Level,
    model_version: str,
    dim: int,
    n: int,
    sizes: tuple[int, ...],
    seed: int,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """(ids, vectors) at random positions 0..n-1 of the id-ordered stream, one per size;
    and the rows read."""
    rng = np.random.default_rng(seed)
    positions = [_sample_positions(rng, n, size) for size in sizes]
    picked: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in sizes]
    offset, rows, after = 0, 0, 0
    for batch in source.iter_vectors(level, model_version, batch_size=BATCH_SIZE):
        fi.check_batch(batch.ids, batch.xb, dim, after_id=after)
        after = int(batch.ids[-1]) if len(batch.ids) else after
        nb = len(batch.ids)
        for pos, out in zip(positions, picked, strict=True):
            lo, hi = np.searchsorted(pos, [offset, offset + nb])
            at = pos[lo:hi] - offset
            out.append((batch.ids[at], batch.xb[at]))
        offset += nb
        rows += nb
    samples = []
    for p in picked:
        ids = np.concatenate([b[0] for b in p]) if p else np.zeros(0, np.int64)
        xb = np.concatenate([b[1] for b in p]) if p else np.zeros((0, dim), np.float32)
        samples.append((ids, xb))
    return samples, rows


def build_from_source(
    source: VectorSource,
    level: Level,
    model_version: str,
    dim: int,
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
    target_recall: float = RECALL_TARGET,
    seed: int = 0,
    fastscan: bool = True,
) -> BuildResult:
    """A fresh CPU index of the source's live vectors (see the module docstring)."""
    t0 = time.perf_counter()
    tombstone_seq = source.max_tombstone_seq()  # first, before any vector is read
    n = source.count(level, model_version)
    choice = choose_index(
        n, dim, memory_budget_bytes, exact_threshold=exact_threshold, fastscan=fastscan
    )
    index = fi.new_index(choice, dim)
    rows = 0
    exact_knn: fi.ExactKnn | None = None
    if not choice.exact:
        n_q = min(TUNE_QUERIES + EVAL_QUERIES, max(2, n // 10))
        ((_, xt), (q_ids, xq)), rows = _sample_pass(
            source, level, model_version, dim, n, (choice.train_size, n_q), seed
        )
        if len(xt) < MIN_POINTS_PER_LIST * choice.nlist:
            # Rows were deleted between count() and the pass: too few to train this IVF.
            # Build exact now; the next sync's rebuild_reason() re-chooses from the count.
            log.warning("only %d training vectors for %s: exact", len(xt), choice.factory)
            choice = choose_index(0, dim, memory_budget_bytes, exact_threshold=exact_threshold)
            index = fi.new_index(choice, dim)
        else:
            t_train = time.perf_counter()
            fi.train(index, xt)
            log.info(
                "trained %s on %d vectors in %.1fs",
                choice.factory,
                len(xt),
                time.perf_counter() - t_train,
            )
            # 2k + 1 columns: the query itself, then 2k so that ties across rank k show
            exact_knn = fi.ExactKnn(xq, 2 * RECALL_K + 1)
        del xt

    watermark = 0
    for batch in source.iter_vectors(level, model_version, batch_size=BATCH_SIZE):
        fi.check_batch(batch.ids, batch.xb, dim, after_id=watermark)
        if len(batch.ids) == 0:
            continue
        fi.add(index, batch.ids, batch.xb)
        if exact_knn is not None:
            exact_knn.add(batch.ids, batch.xb)
        watermark = int(batch.ids[-1])
        rows += len(batch.ids)

    recall = 1.0
    if exact_knn is not None:
        D_exact, I_exact = exact_knn.result()
        tune, held_out = slice(0, len(xq) // 2), slice(len(xq) // 2, len(xq))
        nprobe, tune_recall = fi.tune(
            index,
            xq[tune],
            I_exact[tune],
            D_exact[tune],
            RECALL_K,
            min(1.0, target_recall + TUNE_MARGIN),
            self_ids=q_ids[tune],
        )
        recall = fi.measure_recall(
            index, xq[held_out], I_exact[held_out], D_exact[held_out], RECALL_K, q_ids[held_out]
        )
        choice = replace(choice, nprobe=nprobe)
        log.info(
            "%s nprobe=%d: recall@10 %.4f (tuning set %.4f)",
            choice.factory,
            nprobe,
            recall,
            tune_recall,
        )
    seconds = time.perf_counter() - t0
    log.info(
        "built %s/%s: %s, %d vectors in %.1fs",
        level,
        model_version,
        choice.factory,
        index.ntotal,
        seconds,
    )
    return BuildResult(
        index, choice, watermark, tombstone_seq, int(index.ntotal), recall, rows, seconds
    )


def catch_up(
    index: faiss.Index,
    source: VectorSource,
    level: Level,
    model_version: str,
    dim: int,
    *,
    watermark: int,
    tombstone_seq: int,
    guard: Guard = nullcontext,
) -> CatchUp:
    """Apply the source's tombstones and new rows to `index`; returns the new watermarks.

    Each mutation runs inside `guard()` (the caller's write lock), one batch at a time,
    so that searches interleave with a long catch-up. Source reads happen outside it.
    """
    tomb = source.tombstones(level, model_version, after_seq=tombstone_seq)
    removed = 0
    if len(tomb.ids):
        with guard():
            removed = fi.remove(index, np.asarray(tomb.ids, dtype=np.int64))
    tombstone_seq = max(tombstone_seq, int(tomb.last_seq))

    added = 0
    for batch in source.iter_vectors(level, model_version, after_id=watermark):
        fi.check_batch(batch.ids, batch.xb, dim, after_id=watermark)
        if len(batch.ids) == 0:
            continue
        with guard():
            fi.add(index, batch.ids, batch.xb)
        watermark = int(batch.ids[-1])
        added += len(batch.ids)
    if added or removed:
        log.info("%s/%s caught up: +%d -%d", level, model_version, added, removed)
    return CatchUp(added, removed, watermark, tombstone_seq)
