"""A batch's hits as columns (SearchBatch with `packed`): ids, scores, ranges and verdicts
in arrays, one entry per hit, query i's hits at offsets[i]:offsets[i + 1].

Bulk jobs (a library's duplicates, a dedup pass over an upload folder) want ids and
scores; a Hit with its Video message costs more to build and send than the search.

    run_packed   every query a single vector (SearchBatch by vectors): array code from
                 FAISS's (n, k) matrices to the columns, no object per hit: one search,
                 one look-up of the ids' places, the filter's flags, the first top_k
                 admitted ids per row. Queries whose first round left them short (a
                 filter refused too many) go through pipeline.run, its first round again
                 included, as does a batch of sequence queries (video ids: re-ranking by
                 alignment is per hit anyway)
    of_results   SearchResults -> columns (what pipeline.run gave)
    to_results   columns -> SearchResults (coalesced single searches); at video level
                 place_video_hits then puts each hit on its best segment

The ranking is pipeline.run's; what differs is video-level vector queries, whose hits are
not placed on their best segment (segment_ids 0, no target range): placing costs a look
at each hit video's segments, more than the search itself.
"""

# ruff: noqa: E741, N806  (D, I and X are faiss's names; names follow the maths)

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.index import Catalogue, VideoInfo
from sora_encoder.copy_score import CopyCalibration

from . import pipeline
from .filters import admit_videos, admitted_bits, is_filtered
from .pipeline import BATCH_LOAD_MAX_VIDEOS, Index, over_fetch_for
from .rerank import Info, Load, place
from .retrieve import MAX_FETCH, first_k
from .segments import SegmentBlock
from .types import Hit, Query, SearchOptions, SearchResult

# the videos' segment rows held in memory, as one block (None: memory lacks some)
HeldBlock = Callable[[list[int]], SegmentBlock | None]


@dataclass(frozen=True)
class HitColumns:
    offsets: np.ndarray  # (n + 1,) int64
    video_ids: np.ndarray  # (h,) int64
    segment_ids: np.ndarray  # (h,) int64, 0 where not placed
    scores: np.ndarray  # (h,) float32
    target_start_s: np.ndarray  # (h,) float64
    target_end_s: np.ndarray  # (h,) float64
    aligned: np.ndarray  # (h,) bool
    copy_scores: np.ndarray | None  # (h,) float32; None without a calibration
    is_copy: np.ndarray | None  # (h,) bool
    candidates: np.ndarray  # (n,) int64
    model_version: str | None
    copy_threshold: float | None


# the per-hit columns (copy_scores and is_copy may be None: no calibration)
PER_HIT = ("video_ids", "segment_ids", "scores", "target_start_s", "target_end_s", "aligned",
           "copy_scores", "is_copy")  # fmt: skip


def of_results(results: Sequence[SearchResult], version: str | None) -> HitColumns:
    """Columns of SearchResults (one per query, in order)."""
    hits = [h for r in results for h in r.hits]
    threshold = next((r.copy_threshold for r in results if r.copy_threshold is not None), None)
    targets = [h.target or (0.0, 0.0) for h in hits]
    return HitColumns(
        offsets=np.cumsum([0] + [len(r.hits) for r in results], dtype=np.int64),
        video_ids=np.array([h.video.id for h in hits], dtype=np.int64),
        segment_ids=np.array([h.segment_id or 0 for h in hits], dtype=np.int64),
        scores=np.array([h.score for h in hits], dtype=np.float32),
        target_start_s=np.array([t[0] for t in targets], dtype=np.float64),
        target_end_s=np.array([t[1] for t in targets], dtype=np.float64),
        aligned=np.array([h.alignment_score is not None for h in hits], dtype=bool),
        copy_scores=None if threshold is None else np.array(
            [h.copy_score for h in hits], dtype=np.float32),
        is_copy=None if threshold is None else np.array([h.is_copy for h in hits], dtype=bool),
        candidates=np.array([r.candidates for r in results], dtype=np.int64),
        model_version=version,
        copy_threshold=threshold,
    )  # fmt: skip


def to_results(cols: HitColumns, info: Info, *, placed: bool) -> list[SearchResult]:
    """SearchResults of run_packed's columns (the inverse of of_results): a hit per entry
    whose video `info` still knows (None: deleted since the filter passed it, as
    pipeline.run skips it too). `placed`: the columns carry segments and ranges (segment
    level); video-level hits come unplaced (place_video_hits places them)."""
    verdicts = cols.copy_scores is not None and cols.is_copy is not None
    video_ids, segment_ids = cols.video_ids.tolist(), cols.segment_ids.tolist()
    scores, starts, ends = (cols.scores.tolist(), cols.target_start_s.tolist(),
                            cols.target_end_s.tolist())  # fmt: skip
    copy_scores = cols.copy_scores.tolist() if verdicts else None  # type: ignore[union-attr]
    is_copy = cols.is_copy.tolist() if verdicts else None  # type: ignore[union-attr]
    offsets, candidates = cols.offsets.tolist(), cols.candidates.tolist()
    out = []
    for q, found in enumerate(candidates):
        hits = []
        for j in range(offsets[q], offsets[q + 1]):
            video = info(video_ids[j])
            if video is None:
                continue
            hits.append(Hit(scores[j], video, segment_ids[j] if placed else None,
                            (starts[j], ends[j]) if placed else None,
                            first_stage_score=scores[j],
                            copy_score=copy_scores[j] if copy_scores is not None else None,
                            is_copy=is_copy[j] if is_copy is not None else None))  # fmt: skip
        out.append(SearchResult(hits, cols.model_version, found, cols.copy_threshold))
    return out


def place_video_hits(results: Sequence[SearchResult], queries: Sequence[Query], load: Load,
                     held: HeldBlock | None = None) -> None:  # fmt: skip
    """Each video-level hit of vector queries on its video's best segment, as
    pipeline.run's video_hits places them: one `load` for the batch's hit videos, up to
    BATCH_LOAD_MAX_VIDEOS at a time (a batch of 256 queries at top_k 1,000 names up to
    256,000 videos: their segment vectors at once would take gigabytes).

    `held`: the videos' rows from memory as one SegmentBlock (None where memory lacks
    some): then each query's hits are scored by one product over all their segments
    and each hit takes its best by array code, not a product and argmax per hit (which
    cost about as much as the search itself). What memory lacks goes through `load`."""
    pending = [(hit, n) for n, r in enumerate(results) for hit in r.hits]
    while pending:
        videos: dict[int, None] = {}
        n = 0  # hits whose video is in this chunk
        for hit, _ in pending:
            if hit.video.id not in videos and len(videos) == BATCH_LOAD_MAX_VIDEOS:
                break
            videos[hit.video.id] = None
            n += 1
        chunk, pending = pending[:n], pending[n:]
        block = held(list(videos)) if held is not None else None
        if block is not None:
            chunk = _place_from_block(chunk, queries, block)
            videos = {hit.video.id: None for hit, _ in chunk}
        if not chunk:
            continue
        segs = load(list(videos))
        for hit, q in chunk:
            rows = segs.get(hit.video.id)
            if rows is not None and len(rows.ids):
                place(hit, rows, queries[q], False, None)


def _place_from_block(
    hits: list[tuple[Hit, int]], queries: Sequence[Query], block: SegmentBlock
) -> list[tuple[Hit, int]]:
    """Place the hits (each with its query's number) whose video has rows in `block`, on
    their best segment; -> the others. A sequence query's hits are left to place() (its
    best pair of segments takes the query's segments too)."""
    slot = {v: i for i, v in enumerate(block.video_ids)}
    counts = np.diff(block.offsets).tolist()
    mine, left = [], []
    for hit, q in hits:
        g = slot[hit.video.id]
        if counts[g] and not queries[q].is_sequence:
            mine.append((hit, q, g))
        else:
            left.append((hit, q))
    if not mine:
        return left
    g = np.array([g for _, _, g in mine], dtype=np.int64)
    qs = [q for _, q, _ in mine]
    starts, lens = block.offsets[g], block.offsets[g + 1] - block.offsets[g]
    first = np.zeros(len(mine), np.int64)  # each hit's first entry in `rows` / `sims`
    np.cumsum(lens[:-1], out=first[1:])
    rows = np.repeat(starts - first, lens) + np.arange(int(lens.sum()))  # block rows
    # per query (hits come query by query): its hits' rows times its vector, one product
    bounds = [0] + [j for j in range(1, len(qs)) if qs[j] != qs[j - 1]] + [len(qs)]
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:]):  # noqa: B905 - one shorter by construction
        lo, hi = int(first[a]), int(first[b - 1] + lens[b - 1])
        parts.append(block.xb[rows[lo:hi]] @ queries[qs[a]].vector)
    # a NaN (never in checked vectors) must not move a hit onto another hit's rows
    sims = np.nan_to_num(np.concatenate(parts), nan=-np.inf)
    # each hit's first best row (np.argmax's choice within a video's rows in time order)
    top = np.maximum.reduceat(sims, first)
    at_top = np.flatnonzero(sims == np.repeat(top, lens))
    best = rows[at_top[np.searchsorted(at_top, first)]]
    seg_ids, begin, end = (block.ids[best].tolist(), block.start_s[best].tolist(),
                           block.end_s[best].tolist())  # fmt: skip
    for (hit, _, _), s, t0, t1 in zip(mine, seg_ids, begin, end, strict=True):
        hit.segment_id, hit.target = s, (t0, t1)
    return left


def join(parts: Sequence[HitColumns]) -> HitColumns:
    """The queries of several HitColumns, one after the other."""
    base = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])

    def col(name: str) -> np.ndarray | None:
        cols = [getattr(p, name) for p in parts]
        return None if any(c is None for c in cols) else np.concatenate(cols)

    offsets = [p.offsets[1:] + b for p, b in zip(parts, base, strict=True)]
    return dataclasses.replace(
        parts[0],
        offsets=np.concatenate([[0], *offsets]).astype(np.int64),
        candidates=np.concatenate([p.candidates for p in parts]),
        copy_threshold=next((p.copy_threshold for p in parts if p.copy_threshold is not None),
                            None),
        **{name: col(name) for name in PER_HIT},
    )  # fmt: skip


def select(cols: HitColumns, queries: np.ndarray) -> HitColumns:
    """The columns of some queries, in that order."""
    counts = np.diff(cols.offsets)[queries]
    take = np.concatenate(
        [np.arange(cols.offsets[q], cols.offsets[q + 1]) for q in queries.tolist()]
        or [np.zeros(0, np.int64)]
    ).astype(np.int64)
    picked = {name: None if (a := getattr(cols, name)) is None else a[take] for name in PER_HIT}
    return dataclasses.replace(
        cols,
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        candidates=cols.candidates[queries],
        **picked,
    )


def _excludes_query_videos(queries: Sequence[Query], opts: SearchOptions) -> bool:
    """Whether hits of the queries' own videos are to be left out (queries by video id)."""
    return opts.exclude_query_video and any(q.video_id is not None for q in queries)


def _search_first(
    queries: Sequence[Query], opts: SearchOptions, index: Index, catalogue: Catalogue,
    check: Callable[[], None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool] | None:  # fmt: skip
    """The batch's one FAISS search -> (X, D, I, k, excluded); None where pipeline.run
    must answer (sequence queries, an empty index, a vector of the wrong size: its error).
    A collection / tags filter is tested by FAISS itself (admitted_bits)."""
    if not queries or any(q.is_sequence for q in queries) or index.ntotal == 0:
        return None
    for q in queries:
        if q.vector.shape[0] != index.dim:  # the same error as pipeline.run's
            return None
    check()
    # (n, d); one query (a lone search) as a view of its vector: np.stack's checks cost
    # more than the copy, and every array call here counts (see run_packed)
    vectors = [q.vector for q in queries]
    X = vectors[0][None] if len(vectors) == 1 else np.stack(vectors)
    X = X.astype(np.float32, copy=False)
    excluded = _excludes_query_videos(queries, opts)
    bits = admitted_bits(catalogue, opts)  # a collection / tags filter, tested by FAISS
    k = first_k(opts.top_k, index.ntotal,
                over_fetch_for(catalogue, opts, excluded, masked=bits is not None))  # fmt: skip
    # (n, k) each, best first; -1 past the end
    D, I = index.search(X, k) if bits is None else index.search(X, k, admitted=bits)
    check()
    return X, D, I, k, excluded


def run_packed(
    queries: Sequence[Query],
    opts: SearchOptions,
    *,
    index: Index,
    catalogue: Catalogue,
    load: Load,
    version: str | None,
    calibration: CopyCalibration | None = None,
    check: Callable[[], None] = lambda: None,
) -> HitColumns:
    """pipeline.run's hits for these queries, as columns (see the module docstring)."""
    slow = dict(index=index, catalogue=catalogue, load=load, version=version,
                calibration=calibration, check=check)  # fmt: skip
    searched = _search_first(queries, opts, index, catalogue, check)
    if searched is None:
        return of_results(pipeline.run(queries, opts, **slow), version)  # type: ignore[arg-type]
    # From here on array calls over a few dozen ids: each costs its call, a few
    # microseconds on the cache a search leaves, not its data; a lone search made ~60 of
    # them, as much CPU as the FAISS search. So no call whose answer is known already.
    X, D, I, k, excluded = searched
    n, top_k = len(queries), opts.top_k
    places = catalogue.places(opts.level, I.reshape(-1))
    # -1 for an id refused or unknown, padding (I = -1) included: no known id is -1
    vids = admit_videos(catalogue, places.video_id, opts).reshape(n, k)
    if excluded:
        vids = np.where(vids == np.array([q.video_id or -1 for q in queries])[:, None], -1, vids)
    ok = vids >= 0
    if opts.min_score is not None:
        ok &= D >= opts.min_score
    admitted = np.count_nonzero(ok, axis=1)
    # short: fewer than top_k admitted while the index had more to give (a filter refused
    # most of the first round): those queries go again through the pipeline's rounds; a
    # row short of k ids was not (the lists searched hold no more), nor one whose last
    # score is below min_score (a further round finds only lower ones)
    short = (admitted < top_k) & (I[:, -1] >= 0) if k < min(index.ntotal, MAX_FETCH) else None
    if short is not None and opts.min_score is not None:
        short &= D[:, -1] >= opts.min_score
    counts = np.minimum(admitted, top_k)  # each row's hits: its first top_k admitted
    take = ok if (admitted <= top_k).all() else ok & (np.cumsum(ok, axis=1) <= top_k)
    rows, cols = np.nonzero(take)  # row-major: query by query, best first
    segment_level = opts.level == "segment"
    scores = D[rows, cols].astype(np.float32, copy=False)
    copy_scores = is_copy = None
    threshold = None
    if calibration is not None and calibration.dim == index.dim:
        reference = calibration.reference(X, "segment" if segment_level else "video")  # (n,)
        # in float64, as annotate_copies subtracts (Python floats): the same verdicts
        copy64 = scores.astype(np.float64) - reference.astype(np.float64)[rows]
        copy_scores = copy64.astype(np.float32)
        is_copy = np.asarray(calibration.is_copy(copy64), dtype=bool)
        threshold = calibration.threshold
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    if segment_level:
        flat = rows * k + cols
        segment_ids = I[rows, cols].astype(np.int64, copy=False)
        starts, ends = places.start_s[flat], places.end_s[flat]
    else:  # video-level vector hits come unplaced (the module docstring)
        segment_ids = np.zeros(len(rows), np.int64)
        starts, ends = np.zeros(len(rows)), np.zeros(len(rows))
    fast = HitColumns(
        offsets=offsets,
        video_ids=vids[rows, cols],  # int64, as I and the catalogue's video ids
        segment_ids=segment_ids,
        scores=scores,
        target_start_s=starts,
        target_end_s=ends,
        aligned=np.zeros(len(rows), dtype=bool),
        copy_scores=copy_scores,
        is_copy=is_copy,
        candidates=np.count_nonzero(I >= 0, axis=1),
        model_version=version,
        copy_threshold=threshold,
    )  # fmt: skip
    if short is None or not short.any():
        return fast
    again = np.flatnonzero(short)
    redo = of_results(pipeline.run([queries[i] for i in again.tolist()], opts, **slow), version)
    if not segment_level:  # as the array path's: vector hits at video level are not placed
        redo = dataclasses.replace(redo, segment_ids=np.zeros_like(redo.segment_ids),
                                   target_start_s=np.zeros_like(redo.target_start_s),
                                   target_end_s=np.zeros_like(redo.target_end_s))  # fmt: skip
    kept = np.flatnonzero(~short)
    joined = join([select(fast, kept), redo])  # kept queries first, then the again ones
    where = np.empty(n, dtype=np.int64)
    where[np.concatenate([kept, again])] = np.arange(n)  # query q is joined's where[q]-th
    return select(joined, where)


# A batch asking for at most this many hits in all takes run_rows' loops (see run_rows);
# beyond it, run_packed's array code (a SearchBatch of 256 queries at top_k 1,000).
ROWS_MAX_HITS = 256


def run_rows(
    queries: Sequence[Query],
    opts: SearchOptions,
    *,
    index: Index,
    catalogue: Catalogue,
    load: Load,
    version: str | None,
    calibration: CopyCalibration | None = None,
    check: Callable[[], None] = lambda: None,
) -> list[SearchResult]:
    """Segment-level hits of a few vector queries (coalesced single searches): the same
    hits as to_results(run_packed(...)), by a loop over each row's k candidates.

    Why: right after a FAISS search every array call runs on the caches the search
    evicted, 9-21 us each where a loop of its own takes 1-3 us, and run_packed's columns
    then to_results' hits walk ~40 of them for a lone query. Here the search and the ids'
    look-up are one call each (a collection / tags or asset filter adds its flags'), the
    loop admits a candidate by the catalogue's dict of servable videos, and the kept
    hits' ranges are read one by one: for a row of a few dozen candidates, less CPU than
    building columns only to read them back.
    Video-level queries, large batches (past ROWS_MAX_HITS hits), and queries a filter
    left short take run_packed's and the pipeline's paths as before."""
    slow = dict(index=index, catalogue=catalogue, load=load, version=version,
                calibration=calibration, check=check)  # fmt: skip
    if (
        opts.level != "segment"
        or len(queries) * opts.top_k > ROWS_MAX_HITS
        or _excludes_query_videos(queries, opts)
    ):
        cols = run_packed(queries, opts, **slow)  # type: ignore[arg-type]
        return to_results(cols, catalogue.video, placed=opts.level == "segment")
    searched = _search_first(queries, opts, index, catalogue, check)
    if searched is None:
        return pipeline.run(queries, opts, **slow)  # type: ignore[arg-type]
    X, D, I, k, _ = searched
    n, top_k, min_score = len(queries), opts.top_k, opts.min_score
    # Each id's video (-1: not in the catalogue, padding included), by one look-up: with
    # no filter the loop below admits a video by the catalogue's dict of servable ones
    # (what the servable flags say, without the flags' array calls); a collection / tags
    # filter (FAISS tested its bits) or an asset id filter is checked by array code, as
    # run_packed's.
    table, pos, found = catalogue.lookup("segment", I)
    vids = np.where(found, table.video_ids.take(pos), -1) if len(table) else np.full_like(I, -1)
    if is_filtered(opts):
        vids = admit_videos(catalogue, vids.reshape(-1), opts).reshape(n, k)
    more = k < min(index.ntotal, MAX_FETCH)  # a further round could find more
    threshold = None
    references: list[float] = []
    if calibration is not None and calibration.dim == index.dim:
        threshold = calibration.threshold
        references = calibration.reference(X, "segment").astype(np.float64).tolist()
    video_of, starts, ends = catalogue.video, table.start_s, table.end_s
    rows = zip(D.tolist(), I.tolist(), vids.tolist(), pos.tolist(), strict=True)
    out: list[SearchResult] = []
    for q, (scores, ids, row_vids, row_pos) in enumerate(rows):
        # the row's first top_k admitted candidates, best first, with their videos (a
        # video deleted since FAISS or the filter passed it is not admitted)
        kept: list[tuple[int, VideoInfo]] = []
        for j in range(k):
            if row_vids[j] < 0 or (min_score is not None and scores[j] < min_score):
                continue
            video = video_of(row_vids[j])
            if video is not None:
                kept.append((j, video))
                if len(kept) == top_k:
                    break
        # short: as run_packed's (fewer than top_k admitted, the row not at the lists'
        # end, a further round possible, its last score not below min_score)
        if (len(kept) < top_k and ids[-1] >= 0 and more
                and (min_score is None or scores[-1] >= min_score)):  # fmt: skip
            out.extend(pipeline.run([queries[q]], opts, **slow))  # type: ignore[arg-type]
            continue
        copy_scores: list = [None] * len(kept)
        is_copy: list = [None] * len(kept)
        if threshold is not None and kept:  # the row's verdicts in one array call each
            copy64 = np.array([scores[j] - references[q] for j, _ in kept])  # as run_packed's
            copy_scores = copy64.astype(np.float32).tolist()
            is_copy = np.asarray(calibration.is_copy(copy64), dtype=bool).tolist()  # type: ignore[union-attr]
        # a few rows' ranges: scalar reads, not a gather of every candidate's
        hits = [Hit(scores[j], video, ids[j],
                    (float(starts[row_pos[j]]), float(ends[row_pos[j]])),
                    first_stage_score=scores[j], copy_score=c, is_copy=v)
                for (j, video), c, v in zip(kept, copy_scores, is_copy, strict=True)]  # fmt: skip
        candidates = k if ids[-1] >= 0 else sum(1 for i in ids if i >= 0)
        out.append(SearchResult(hits, version, candidates, threshold))
    return out
