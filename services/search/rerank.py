"""Stage 4, re-rank: candidates -> hits with their matched ranges, by temporal alignment
of the query's segment sequence with each candidate video's (services.search.alignment).

    depth    the first clamp(2 * top_k, RERANK_MIN, RERANK_MAX) candidate videos (retrieve
             over-fetches for that many) when the query is a sequence and alignment is on
    segments the candidates' SegmentRows, SEGMENT_CHUNK videos at a time, from `load`
             (the one read not held in memory: segment vectors)
    video    a hit per video: its best-matching segment (the aligned block's best cell,
             else the single most similar segment); aligned: target/query ranges, and
                 score = (first-stage score + alignment.score) / 2
    segment  a hit per segment; one inside its video's aligned range takes the combined
             score and the query range paired with it along the path
    rank     aligned hits first, then the others, best first

The alignment threshold is the query's own (adaptive_threshold), from its similarities to
the first chunk of candidates' segments (mostly unrelated material).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from services.index import VideoInfo
from services.store import SegmentRows

from .alignment import Alignment, adaptive_threshold, align
from .types import Candidate, Hit, Query, SearchOptions

RERANK_MIN, RERANK_MAX = 20, 200  # candidate videos aligned: clamp(2 * top_k)
SEGMENT_CHUNK = 16  # videos whose segment vectors are loaded at once

Load = Callable[[Sequence[int]], Mapping[int, SegmentRows]]
Info = Callable[[int], VideoInfo | None]


def depth(opts: SearchOptions, rerank: bool) -> int:
    """Candidates a query wants from retrieve: top_k, or the re-ranking depth."""
    return min(max(2 * opts.top_k, RERANK_MIN), RERANK_MAX) if rerank else opts.top_k


def rank(hits: list[Hit]) -> list[Hit]:
    """Aligned hits first (re-ranked by the combined score), then the others, best first."""
    return sorted(hits, key=lambda h: (h.alignment_score is not None, h.score), reverse=True)


def rows_unit(x: np.ndarray) -> np.ndarray:
    """Rows renormalised: stored vectors are unit within bf16 rounding, align() wants 1e-3."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def threshold_of(query: Query, seg_rows: Iterable[SegmentRows]) -> float:
    assert query.segments is not None
    xb = [r.xb for r in seg_rows if len(r.ids)]
    if not xb:
        return adaptive_threshold(np.empty(0))
    return adaptive_threshold(rows_unit(query.segments) @ rows_unit(np.concatenate(xb)).T)


def _align(query: Query, rows: SegmentRows, threshold: float) -> Alignment | None:
    assert query.segments is not None
    return align(rows_unit(query.segments), rows_unit(rows.xb), threshold=threshold)


def _chunks(items: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def place(hit: Hit, rows: SegmentRows, query: Query, rerank: bool, threshold: float | None) -> None:
    """Set a video-level hit's best segment and times (and its alignment)."""
    T = rows.xb  # (n, d)
    if query.segments is not None:
        sims = query.segments @ T.T  # (m, n)
        qi, tj = np.unravel_index(int(np.argmax(sims)), sims.shape)
        hit.query = query.times[int(qi)]
    else:
        sims = (T @ query.vector)[None, :]  # (1, n)
        tj = int(np.argmax(sims[0]))
    j = int(tj)
    hit.segment_id, hit.target = int(rows.ids[j]), (float(rows.start_s[j]), float(rows.end_s[j]))
    if not rerank or threshold is None:
        return
    a = _align(query, rows, threshold)
    if a is None:
        return
    i0, i1 = (int(x) for x in a.query_range)
    j0, j1 = (int(x) for x in a.target_range)
    inside = sims[i0 : i1 + 1, j0 : j1 + 1]  # the aligned block
    _, tj = np.unravel_index(int(np.argmax(inside)), inside.shape)
    hit.segment_id = int(rows.ids[j0 + int(tj)])
    hit.target = (float(rows.start_s[j0]), float(rows.end_s[j1]))
    hit.query = (query.times[i0][0], query.times[i1][1])
    hit.alignment_score = float(a.score)
    hit.score = (hit.first_stage_score + float(a.score)) / 2.0


def video_hits(
    cands: list[Candidate],
    query: Query,
    opts: SearchOptions,
    *,
    rerank: bool,
    info: Info,
    load: Load,
    check: Callable[[], None] = lambda: None,
) -> list[Hit]:
    d = depth(opts, rerank)
    hits = []
    for c in cands[: max(opts.top_k, d)]:
        video = info(c.video_id)
        if video is not None:  # None: deleted since the filter passed it
            hits.append(Hit(c.score, video, first_stage_score=c.score))
    threshold: float | None = None
    for chunk in _chunks(hits[:d], SEGMENT_CHUNK):
        check()
        segs = load([h.video.id for h in chunk])
        if threshold is None and rerank:
            threshold = threshold_of(query, segs.values())
        for hit in chunk:
            rows = segs.get(hit.video.id)
            if rows is not None and len(rows.ids):
                place(hit, rows, query, rerank, threshold)
    return rank(hits)


def segment_hits(
    cands: list[Candidate],
    query_rows: list[int | None],
    query: Query,
    opts: SearchOptions,
    *,
    rerank: bool,
    info: Info,
    load: Load,
    check: Callable[[], None] = lambda: None,
) -> list[Hit]:
    limit = depth(opts, True)
    cands = cands[: max(opts.top_k, limit if rerank else 0)]
    alignments: dict[int, Alignment | None] = {}
    if rerank:
        scope = list(dict.fromkeys(c.video_id for c in cands))[:limit]  # in rank order
        threshold: float | None = None
        for chunk in _chunks(scope, SEGMENT_CHUNK):
            check()
            segs = load(chunk)
            if threshold is None:
                threshold = threshold_of(query, segs.values())
            for vid, rows in segs.items():
                if len(rows.ids):
                    alignments[vid] = _align(query, rows, threshold)
    hits: list[Hit] = []
    for c in cands:
        video = info(c.video_id)
        if video is None or c.segment is None:
            continue
        index, start_s, end_s = c.segment
        hit = Hit(c.score, video, c.vector_id, (start_s, end_s), first_stage_score=c.score)
        row = query_rows[c.query_row] if c.query_row < len(query_rows) else None
        if row is not None:
            hit.query = query.times[row]
        a = alignments.get(c.video_id)
        if a is not None:
            j0, j1 = (int(x) for x in a.target_range)
            if j0 <= index <= j1:
                hit.alignment_score = float(a.score)
                hit.score = (c.score + float(a.score)) / 2.0
                paired = [int(i) for i, j in a.path if int(j) == index]
                if paired:
                    hit.query = (query.times[min(paired)][0], query.times[max(paired)][1])
        hits.append(hit)
    return rank(hits)
