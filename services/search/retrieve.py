"""Stage 2, retrieve: FAISS top-k with over-fetch, for a whole batch of queries at once.
Pure array code: the index's search and the filter stage come in as functions.

    rows     each query's rows: its vector (video level, or a plain vector query), else
             up to MAX_QUERY_ROWS of its segments, evenly spaced (query_rows)
    round    one index search over every active query's rows (xq (R, d) -> D, I (R, k));
             per query, each id keeps its best score and row, best first; `admit` (the
             filter stage) gives each id's video or -1
    done     when `wanted` hits passed (distinct videos at video level), the index is
             exhausted (ntotal, or every row came back with fewer than k ids: the lists
             searched hold no more), k reached MAX_FETCH, or the k-th scores fell under
             min_score;
             the others go again with k x OVER_FETCH
    k        first max(over_fetch * wanted, MIN_FETCH), capped by ntotal and MAX_FETCH;
             over_fetch is OVER_FETCH when a filter or an excluded video may refuse ids,
             1 when every id the index returns is admitted (no filter, or one the index
             tests itself, pipeline.over_fetch_for: the first round
             is enough, and a fast-scan index re-ranks k_factor x k candidates, so an
             over-fetch there costs re-ranking for nothing)
    keep     Candidate objects are made only for the best `keep` admitted ids of a query
             (what re-ranking and the hits can use); the counts come from the arrays

A query gets the same candidates alone as in a batch: its rows, k and admissions do not
depend on the other queries; queries that need another round are searched together.
"""

# ruff: noqa: E741  (I is faiss's name for the id matrix; names follow the maths)

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.store import Level

from .types import Candidate, Query

OVER_FETCH = 4  # first round fetches this many times what is wanted, and grows by it
MIN_FETCH = 16
MAX_FETCH = 4096  # per query row
MAX_QUERY_ROWS = 32  # query segments searched at segment level

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # xq (n, d), k -> D, I
Admit = Callable[[int, np.ndarray], np.ndarray]  # (query, ids (n,)) -> video ids, -1 refused


@dataclass(frozen=True)
class Retrieved:
    candidates: list[Candidate]  # the best `keep` passing the filters, best first
    returned: int  # distinct ids the index returned in the query's last round


def query_rows(query: Query, level: Level) -> tuple[np.ndarray, list[int | None]]:
    """(xq (m', d), which query segment each row is, None for the vector)."""
    if level == "video" or not query.is_sequence:
        return query.vector[None, :], [None]  # (1, d)
    assert query.segments is not None
    m = len(query.segments)
    picked = np.unique(np.linspace(0, m - 1, min(m, MAX_QUERY_ROWS)).round().astype(int))
    return query.segments[picked], [int(i) for i in picked]  # (m', d)


def first_k(wanted: int, ntotal: int, over_fetch: int = OVER_FETCH) -> int:
    return min(max(over_fetch * wanted, MIN_FETCH), ntotal, MAX_FETCH)


def _best_per_id(D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D, I (m, k) of one query -> (ids, scores, rows) with each id once at its best score
    (the first row on a tie), best first."""
    m, k = I.shape
    if m == 1:  # one row: faiss returns each id once, best first
        valid = I[0] >= 0
        return I[0][valid], D[0][valid], np.zeros(int(valid.sum()), np.int64)
    ids, scores = I.reshape(-1), D.reshape(-1)  # (m * k,) row-major
    rows = np.repeat(np.arange(m), k)
    valid = ids >= 0
    ids, scores, rows = ids[valid], scores[valid], rows[valid]
    order = np.lexsort((np.arange(len(ids)), -scores))  # by score, then position
    ids, scores, rows = ids[order], scores[order], rows[order]
    _, first = np.unique(ids, return_index=True)
    first.sort()
    return ids[first], scores[first], rows[first]


def retrieve(
    search: Search,
    queries: Sequence[np.ndarray],
    *,
    ntotal: int,
    wanted: Sequence[int],
    admit: Admit,
    min_score: float | None = None,
    per_video: bool = True,
    keep: Sequence[int] | None = None,
    over_fetch: int = OVER_FETCH,
    check: Callable[[], None] = lambda: None,
) -> list[Retrieved]:
    """Stage 2 for queries[q] = xq (m_q, d) (see the module docstring); one Retrieved per
    query, in order. `per_video`: count distinct videos (video level), else candidates.
    `keep[q]`: candidates made for query q (None: every one admitted)."""
    nq = len(queries)
    if ntotal == 0 or nq == 0:
        return [Retrieved([], 0) for _ in range(nq)]
    out: list[Retrieved | None] = [None] * nq
    k = {q: first_k(wanted[q], ntotal, over_fetch) for q in range(nq)}
    active = list(range(nq))
    while active:
        check()
        still: list[int] = []
        for kk in sorted({k[q] for q in active}):  # one search per distinct k: usually one
            group = [q for q in active if k[q] == kk]
            xq = np.concatenate([queries[q] for q in group])  # (R, d)
            D, I = search(xq, kk)  # (R, kk) each
            start = 0
            for q in group:
                m = len(queries[q])
                Dq, Iq = D[start : start + m], I[start : start + m]
                start += m
                ids, scores, rows = _best_per_id(Dq, Iq)
                vids = admit(q, ids)
                keep_mask = vids >= 0
                if min_score is not None:
                    keep_mask &= scores >= min_score
                admitted = np.flatnonzero(keep_mask)
                found = len(np.unique(vids[admitted])) if per_video else len(admitted)
                sel = admitted if keep is None else admitted[: keep[q]]
                # .tolist(): plain ints and floats at once, not one numpy scalar at a time
                cands = [
                    Candidate(i, v, s, r)
                    for i, v, s, r in zip(ids[sel].tolist(), vids[sel].tolist(),
                                          scores[sel].tolist(), rows[sel].tolist(), strict=True)
                ]  # fmt: skip
                below_min = min_score is not None and float(np.max(Dq[:, -1])) < min_score
                # every row came back short of kk: the lists searched hold no more (an
                # IVF's nprobe lists, or the ids a filter tested by the index admits), so
                # a larger k would find nothing new
                exhausted = bool((Iq[:, -1] < 0).all())
                if (found >= wanted[q] or kk >= ntotal or kk >= MAX_FETCH or below_min
                        or exhausted):  # fmt: skip
                    out[q] = Retrieved(cands, len(ids))
                else:
                    still.append(q)
                    k[q] = min(kk * OVER_FETCH, ntotal, MAX_FETCH)
        active = still
    return [r for r in out if r is not None]
