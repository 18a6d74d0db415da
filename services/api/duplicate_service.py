"""Library-wide duplicates (FindDuplicates): every servable video searched as a query,
through the index, then grouped (services/search/duplicates.py draws the grouping).

    the catalogue's READY videos (of a collection), in id order
      -> batches of MAX_BATCH video ids -> SearchService.search_videos (SearchBatch's path:
         ONE FAISS search a batch at video level, alignment re-ranks the candidates)
      -> pairs_of: the hits that pass the copy verdict (or min_score)   progress per batch
      -> unique_pairs -> refine: each pair's ranges placed by frames, the shorter video
         as the query (an excerpt is placed inside its source)         progress per video
      -> group_pairs -> DuplicatesReport (the servicer pages it)

Cost: one video-id query per video, so the work grows as n x (FAISS search of one vector
+ alignment of up to max(2 top_k, 20) candidates), not as n^2; README "Duplicates" has the
numbers. A video deleted while this runs is skipped, not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from services.errors import ConflictError, NotFoundError
from services.index import VideoInfo
from services.search.duplicates import (
    DuplicateGroup,
    DuplicatePair,
    group_pairs,
    pairs_of,
    unique_pairs,
)
from services.search.moments import refine_targets, video_thumbnails
from services.search.options import MAX_BATCH, check_options
from services.search.types import Hit, SearchOptions, SearchResult

from .call import Call
from .search_service import SearchService

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DuplicatesRequest:
    collection: str | None = None
    min_score: float | None = None  # None: the copy verdict
    top_k: int = 10
    refine: bool = True


@dataclass(frozen=True)
class DuplicatesProgress:
    videos_searched: int
    videos_total: int
    pairs_found: int
    pairs_refined: int = 0


@dataclass(frozen=True)
class DuplicatesReport:
    groups: list[DuplicateGroup]
    model_version: str | None
    copy_threshold: float | None
    min_score: float | None


class DuplicateService:
    def __init__(self, search: SearchService) -> None:
        self.search = search

    def find(
        self, request: DuplicatesRequest, call: Call | None = None
    ) -> Iterator[DuplicatesProgress | DuplicatesReport]:
        """Progress after each batch of queries and each refined video, then the report."""
        call = call or Call()
        check_options(SearchOptions(top_k=request.top_k, min_score=request.min_score))
        serving = self.search.serving()
        calibration = self.search.copy_calibration(serving.version)
        if request.min_score is None and calibration is None:
            raise ConflictError(
                f"model version {serving.version} has no copy calibration, so there is no "
                "copy verdict to find duplicates by: give min_score (a cosine, e.g. 0.9), "
                "or calibrate the checkpoint (`sora checkpoint calibrate`) and restart"
            )
        videos = serving.catalogue.videos(request.collection) if serving.catalogue else []
        options = SearchOptions(level="video", top_k=request.top_k, exclude_query_video=True,
                                collection=request.collection)  # fmt: skip
        found: list[DuplicatePair] = []
        for start in range(0, len(videos), MAX_BATCH):
            call.check()
            batch = videos[start : start + MAX_BATCH]
            for video, result in self._search(batch, options, call):
                found += pairs_of(video, result.hits, request.min_score)
            found = unique_pairs(found)
            yield DuplicatesProgress(start + len(batch), len(videos), len(found))
        if request.refine:
            found = [shorter_first(p) for p in found]
            yield from self._refine(found, len(videos), call)
        yield DuplicatesReport(
            groups=group_pairs(found),
            model_version=serving.version,
            copy_threshold=calibration.threshold if calibration is not None else None,
            min_score=request.min_score,
        )

    def _search(
        self, batch: Sequence[VideoInfo], options: SearchOptions, call: Call
    ) -> list[tuple[VideoInfo, SearchResult]]:
        """(video, its result) for the batch; when a video vanished since the catalogue was
        read (deleted, re-indexed), the batch is asked again without it."""
        ids = [v.id for v in batch]
        try:
            return list(zip(batch, self.search.search_videos(ids, options, call), strict=True))
        except (NotFoundError, ConflictError) as exc:
            logger.info("duplicates: a video of the batch is gone (%s); one by one", exc)
        out = []
        for video in batch:
            try:
                out.append((video, self.search.search_video(video.id, options, call)))
            except (NotFoundError, ConflictError):
                continue
        return out

    def _refine(
        self, pairs: list[DuplicatePair], total: int, call: Call
    ) -> Iterator[DuplicatesProgress]:
        """Place each pair's ranges by frames: the query video's thumbnails decoded once
        for all its pairs; a pair whose files are not on this machine keeps its ranges."""
        by_query: dict[int, list[DuplicatePair]] = {}
        for p in pairs:
            if p.query_range is not None and p.target_range is not None:
                by_query.setdefault(p.query.id, []).append(p)
        done = 0
        for group in by_query.values():
            call.check()
            hits = [Hit(score=p.score, video=p.target, target=p.target_range,
                        query=p.query_range, alignment_score=p.score) for p in group]  # fmt: skip
            query = group[0].query
            placed: list[Hit] = []
            refine_targets(hits, lambda q=query: video_thumbnails(q), top=len(hits),
                           placed=placed)  # fmt: skip
            placed_ids = {id(h) for h in placed}
            for p, h in zip(group, hits, strict=True):
                if id(h) in placed_ids:
                    p.target_range, p.query_range, p.refined = h.target, h.query, True
            done += len(group)
            yield DuplicatesProgress(total, total, len(pairs), done)


def shorter_first(p: DuplicatePair) -> DuplicatePair:
    """The pair with its shorter video as the query: frames place a query inside its
    target (sora_encoder.moments slides the query along), so an excerpt is placed inside
    its source, not the other way round."""
    q, t = p.query.duration_s, p.target.duration_s
    if q is None or t is None or q <= t:
        return p
    return replace(p, query=p.target, target=p.query, query_range=p.target_range,
                   target_range=p.query_range)  # fmt: skip
