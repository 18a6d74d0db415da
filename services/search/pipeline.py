"""Search in stages, for a batch of queries (one query is a batch of one):

    options   services.search.options   the request checked -> SearchOptions, unit vectors
    retrieve  services.search.retrieve  ONE FAISS search over every query's rows, over-fetch
    filter    services.search.filters   the in-memory catalogue says which ids may appear
    re-rank   services.search.rerank    alignment of sequence queries, best segments, rank
    verdicts  services.search.copy_verdict   copy scores when the model is calibrated
    hits      services.api.converters   to proto (the API layer)
    moments   services.search.moments   clip queries: ranges placed by frames (the API)

run() takes what it reads as arguments: the index (search, ntotal, dim), the catalogue,
and `load`, the one read from SQL (the candidates' segment vectors, for re-ranking and
best segments; once for a whole batch of queries, _batch_load). No gRPC, no SQL here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from services.errors import ConflictError
from services.index import Catalogue
from services.store import Level
from sora_encoder.copy_score import CopyCalibration

from .copy_verdict import annotate_copies
from .filters import admit, admitted_bits, admitted_share, is_filtered
from .rerank import Load, depth, segment_hits, video_hits
from .retrieve import OVER_FETCH, query_rows, retrieve
from .types import Candidate, Hit, Query, RegionMode, SearchOptions, SearchResult


class Index(Protocol):
    """What search needs of services.index.VectorIndex."""

    dim: int

    @property
    def ntotal(self) -> int: ...

    def search(
        self, xq: np.ndarray, k: int, admitted: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def run(
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
    """One SearchResult per query, in order (opts already checked)."""
    for q in queries:
        if q.vector.shape[0] != index.dim:
            raise ConflictError(
                f"the query has {q.vector.shape[0]}-d vectors, the index {index.dim}-d"
            )
    reranks = [q.is_sequence and opts.alignment for q in queries]
    rows = [query_rows(q, opts.level) for q in queries]
    excluded = [q.video_id if opts.exclude_query_video else None for q in queries]
    bits = admitted_bits(catalogue, opts)  # a collection / tags filter, tested by FAISS
    retrieved = retrieve(
        index.search if bits is None else functools.partial(index.search, admitted=bits),
        [xq for xq, _ in rows],
        ntotal=index.ntotal,
        wanted=[depth(opts, r) for r in reranks],
        admit=lambda n, ids: admit(catalogue, opts.level, ids, opts, excluded[n]),
        min_score=opts.min_score,
        per_video=opts.level == "video",
        keep=[max(opts.top_k, depth(opts, r)) for r in reranks],  # what the hits can use
        over_fetch=over_fetch_for(
            catalogue, opts, any(e is not None for e in excluded), masked=bits is not None
        ),  # fmt: skip
        check=check,
    )
    if len(queries) > 1:
        load = _batch_load(load, opts, reranks, retrieved)
    if opts.level == "segment":  # one look-up of every query's candidates' places
        placed = _with_segments(catalogue, opts.level, [r.candidates for r in retrieved])
    out = []
    for n, (q, rr, (xq, qrows), got) in enumerate(zip(queries, reranks, rows, retrieved,
                                                       strict=True)):  # fmt: skip
        check()
        if opts.level == "video":
            hits = video_hits(got.candidates, q, opts, rerank=rr, info=catalogue.video,
                              load=load, check=check)  # fmt: skip
        else:
            hits = segment_hits(placed[n], qrows, q, opts, rerank=rr, info=catalogue.video,
                                load=load, check=check)  # fmt: skip
        if opts.min_score is not None:
            hits = [h for h in hits if h.score >= opts.min_score]
        hits = hits[: opts.top_k]
        threshold = None
        if calibration is not None and calibration.dim == index.dim:
            # the segment rows the score is made of: the rows searched (segment level), or
            # every query segment when alignment mixed segment similarities in (video level)
            query_rows_used = xq if opts.level == "segment" and q.is_sequence else None
            if opts.level == "video" and rr:
                query_rows_used = q.segments
            annotate_copies(hits, calibration, level=opts.level, query_vector=q.vector,
                            query_rows=query_rows_used)  # fmt: skip
            threshold = calibration.threshold
        out.append(SearchResult(hits, version, got.returned, copy_threshold=threshold))
    return out


MAX_OVER_FETCH = 64  # a filter admitting under 1/32 of the videos fetches at most 64x


def over_fetch_for(
    catalogue: Catalogue, opts: SearchOptions, excluding: bool, *, masked: bool = False
) -> int:
    """How many times `wanted` the first FAISS round asks for: 1 when every id is
    admitted, or when the index itself tests the filter (`masked`: admitted_bits); with
    a filter tested afterwards about twice what its share of the videos needs to leave
    `wanted` (a collection of a quarter: 8x), so that one round is usually enough (a
    second round re-ranks 4x as many candidates again)."""
    if masked or not is_filtered(opts):
        return OVER_FETCH if excluding else 1
    share = admitted_share(catalogue, opts)
    return max(OVER_FETCH, min(MAX_OVER_FETCH, math.ceil(2.0 / max(share, 1e-9))))


# A batch reads its candidates' segment vectors in one go (a few IN (...) statements)
# rather than a few statements per query, up to this many videos (about 15 KB each for a
# one-minute video at 256-d: ~120 MB at most); beyond it, per query as for one search.
BATCH_LOAD_MAX_VIDEOS = 8192


def _batch_load(load: Load, opts: SearchOptions, reranks: list[bool], retrieved: list) -> Load:
    """`load` over the union of the videos that re-ranking of the batch may read: every
    query's first max(top_k, depth) candidates (a superset of what rerank.py loads)."""
    wanted: dict[int, None] = {}
    for rr, got in zip(reranks, retrieved, strict=True):
        if opts.level == "segment" and not rr:
            continue  # segment hits without re-ranking read no vectors
        for c in got.candidates[: max(opts.top_k, depth(opts, rr))]:
            wanted[c.video_id] = None
    if not wanted or len(wanted) > BATCH_LOAD_MAX_VIDEOS:
        return load
    held = dict(load(list(wanted)))
    return lambda video_ids: {v: held[v] for v in video_ids if v in held}


def _with_segments(
    catalogue: Catalogue, level: Level, per_query: list[list[Candidate]]
) -> list[list[Candidate]]:
    """Segment-level candidates with their (index, start_s, end_s) from the catalogue,
    looked up for every query at once."""
    flat = [c for cands in per_query for c in cands]
    if not flat:
        return per_query
    p = catalogue.places(level, np.array([c.vector_id for c in flat], dtype=np.int64))
    places = iter(zip(p.segment_index.tolist(), p.start_s.tolist(), p.end_s.tolist(),
                      strict=True))  # fmt: skip
    return [  # a new Candidate, not dataclasses.replace: 3x cheaper, on every search
        [Candidate(c.vector_id, c.video_id, c.score, c.query_row, segment=next(places))
         for c in cands]
        for cands in per_query
    ]  # fmt: skip


def wants_regions(mode: RegionMode, whole: SearchResult) -> bool:
    """Whether a clip query also searches with its regions, given the whole picture's
    result. "auto": only when that found no copy: its top hit is not a copy by the model's
    calibration (or there is no hit). Without a calibration nothing confirms a copy, and
    paying 6x on every query for that would be the wrong default, so "auto" is "never"."""
    if mode != "auto":
        return mode == "always"
    if whole.copy_threshold is None:
        return False
    return not (whole.hits and whole.hits[0].is_copy)


def merge_variant_hits(results: Sequence[SearchResult], top_k: int, level: Level) -> SearchResult:
    """One result from the searches of a query's variants (whole picture, regions): per
    video (video level) or segment (segment level) the variant hit with the best evidence,
    best first. Evidence is the copy score when the model is calibrated (each variant is
    normalised by its own background similarity, so they compare), else the score."""

    def evidence(h: Hit) -> float:
        return h.copy_score if h.copy_score is not None else h.score

    best: dict[int, Hit] = {}
    for r in results:
        for h in r.hits:
            key = h.video.id if level == "video" else (h.segment_id or 0)
            if key not in best or evidence(h) > evidence(best[key]):
                best[key] = h
    hits = sorted(best.values(), key=evidence, reverse=True)[:top_k]
    first = results[0]
    return SearchResult(
        hits,
        first.model_version,
        sum(r.candidates for r in results),
        first.copy_threshold,
        regions_searched=len(results) > 1,
    )
