"""Domain objects <-> proto messages. No logic beyond the mapping of names and types."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from services.api.gen.sora.v1 import sora_pb2 as pb
from services.errors import InvalidArgumentError
from services.index import VideoInfo
from services.search.duplicates import DuplicateGroup, DuplicatePair
from services.search.packed import HitColumns
from services.search.types import RegionMode, SearchOptions, SearchResult
from services.store import (
    Classifier,
    Job,
    JobStatus,
    Video,
    VideoStatus,
)

from .duplicate_service import DuplicatesProgress, DuplicatesReport, DuplicatesRequest
from .ingest_service import IngestResult, ItemResult, NewVideo
from .video_service import EmbeddingsView

VIDEO_STATUS_TO_PB = {
    VideoStatus.PENDING: pb.VIDEO_STATUS_PENDING,
    VideoStatus.PROCESSING: pb.VIDEO_STATUS_PROCESSING,
    VideoStatus.READY: pb.VIDEO_STATUS_READY,
    VideoStatus.FAILED: pb.VIDEO_STATUS_FAILED,
    VideoStatus.DELETED: pb.VIDEO_STATUS_DELETED,
}
VIDEO_STATUS_FROM_PB = {v: k for k, v in VIDEO_STATUS_TO_PB.items()}
JOB_STATUS_TO_PB = {
    JobStatus.QUEUED: pb.JOB_STATUS_QUEUED,
    JobStatus.RUNNING: pb.JOB_STATUS_RUNNING,
    JobStatus.SUCCEEDED: pb.JOB_STATUS_SUCCEEDED,
    JobStatus.FAILED: pb.JOB_STATUS_FAILED,
}
REGIONS_FROM_PB = {
    pb.REGION_SEARCH_UNSPECIFIED: "auto",
    pb.REGION_SEARCH_AUTO: "auto",
    pb.REGION_SEARCH_ALWAYS: "always",
    pb.REGION_SEARCH_NEVER: "never",
}
LEVEL_FROM_PB = {
    pb.SEARCH_LEVEL_UNSPECIFIED: "video",
    pb.SEARCH_LEVEL_VIDEO: "video",
    pb.SEARCH_LEVEL_SEGMENT: "segment",
}


def rfc3339(ts: datetime | None) -> str:
    if ts is None:
        return ""
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def video_status_from_pb(value: int) -> VideoStatus | None:
    """UNSPECIFIED -> None (the store's "all but DELETED")."""
    if value == pb.VIDEO_STATUS_UNSPECIFIED:
        return None
    try:
        return VIDEO_STATUS_FROM_PB[value]
    except KeyError:
        raise InvalidArgumentError(f"unknown video status {value}") from None


def video_to_pb(v: Video | VideoInfo) -> pb.Video:
    return pb.Video(
        id=v.id,
        uri=v.uri,
        content_sha256=v.content_sha256,
        size_bytes=v.size_bytes,
        status=VIDEO_STATUS_TO_PB[v.status],
        error=v.error or "",
        duration_s=v.duration_s or 0.0,
        fps=v.fps or 0.0,
        width=v.width or 0,
        height=v.height or 0,
        rotation=v.rotation or 0,
        codec=v.codec or "",
        content_box=v.content_box or "",
        title=v.title or "",
        collection=v.collection or "",
        tags=v.tags,
        created_at=rfc3339(v.created_at),
        external_id=v.external_id or "",
        user_metadata=v.user_metadata,
        original_name=v.original_name or "",
        original_path=v.original_path or "",
    )


def job_to_pb(j: Job) -> pb.Job:
    return pb.Job(
        id=j.id,
        video_id=j.video_id,
        kind=j.kind.value,
        status=JOB_STATUS_TO_PB[j.status],
        attempts=j.attempts,
        error=j.error or "",
        segments_done=j.progress_done or 0,
        segments_total=j.progress_total or 0,
        queued_at=rfc3339(j.queued_at),
        started_at=rfc3339(j.started_at),
        finished_at=rfc3339(j.finished_at),
    )


def ingest_to_pb(r: IngestResult) -> pb.IngestResponse:
    return pb.IngestResponse(
        video_id=r.video_id,
        job_id=r.job_id or 0,
        created=r.created,
        status=VIDEO_STATUS_TO_PB[r.status],
    )


def bulk_item_to_pb(item: ItemResult) -> pb.BulkIngestItem:
    if item.result is not None:
        return pb.BulkIngestItem(uri=item.uri, result=ingest_to_pb(item.result))
    return pb.BulkIngestItem(uri=item.uri, error=item.error, error_code=item.error_code)


def new_video_from_pb(uri: str, m: pb.VideoMetadata, original_path: str = "") -> NewVideo:
    return NewVideo(
        uri=uri,
        title=m.title or None,
        collection=m.collection or None,
        tags=tuple(m.tags),
        external_id=m.external_id or None,
        user_metadata=dict(m.user_metadata),
        original_path=original_path or None,
    )


def vector_from_pb(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def embeddings_to_pb(e: EmbeddingsView) -> pb.Embeddings:
    return pb.Embeddings(
        video=video_to_pb(e.video) if e.video is not None else None,
        video_id=e.video_id,
        model_version=e.model_version,
        video_vector=e.video_vector.tolist() if e.video_vector is not None else [],
        segments=[
            pb.SegmentEmbedding(
                segment_id=s.id,
                index=s.segment_index,
                start_s=s.start_s,
                end_s=s.end_s,
                vector=s.as_array().tolist(),
            )
            for s in e.segments
        ],
    )


# A client sends the same options call after call: each distinct message (by its bytes)
# is read once, not per call (the Python of it cost as much as a tenth of a search's
# FAISS scan). A SearchOptions is frozen, so one serves every call; refusals (raised)
# are never kept. Bounded: cleared when full, and only messages of a few hundred bytes
# are kept (a list of thousands of asset ids is a one-off, and 1,024 of them would pin
# gigabytes).
_OPTIONS: dict[bytes, SearchOptions] = {}
_OPTIONS_MAX = 1024
_OPTIONS_MAX_BYTES = 512


def search_options_from_pb(o: pb.SearchOptions) -> SearchOptions:
    key = o.SerializeToString(deterministic=True)  # map entries sorted: equal, same bytes
    options = _OPTIONS.get(key)
    if options is None:
        options = _search_options_from_pb(o)
        if len(key) <= _OPTIONS_MAX_BYTES:
            if len(_OPTIONS) >= _OPTIONS_MAX:
                _OPTIONS.clear()
            _OPTIONS[key] = options
    return options


def _search_options_from_pb(o: pb.SearchOptions) -> SearchOptions:
    try:
        level = LEVEL_FROM_PB[o.level]
    except KeyError:
        raise InvalidArgumentError(f"unknown search level {o.level}") from None
    return SearchOptions(
        level=level,
        top_k=o.top_k or 10,
        collection=o.collection or None,
        tags=tuple(o.tags),
        min_score=o.min_score or None,
        exclude_query_video=o.exclude_query_video,
        alignment=not o.disable_alignment,
        regions=_regions_from_pb(o),
        external_ids=tuple(o.external_ids),
        metadata_items=tuple(sorted(o.user_metadata.items())),
    )


def _regions_from_pb(o: pb.SearchOptions) -> RegionMode:
    try:
        mode = REGIONS_FROM_PB[o.region_search]
    except KeyError:
        raise InvalidArgumentError(f"unknown region_search {o.region_search}") from None
    if not o.query_regions:
        return mode
    if o.region_search == pb.REGION_SEARCH_NEVER:  # the old flag says the opposite
        raise InvalidArgumentError(
            "query_regions=true contradicts region_search=NEVER: set only region_search"
        )
    return "always"


def _range(r: tuple[float, float] | None) -> pb.TimeRange | None:
    return None if r is None else pb.TimeRange(start_s=r[0], end_s=r[1])


# Hits name the same catalogue videos over and over; a VideoInfo is frozen, so its message
# is built once (a third of a hit's cost) and copied into each hit. Keyed by video id and
# checked by identity (hashing the dataclass costs as much as building the message); the
# catalogue replaces a changed video's VideoInfo, so a stale message is never served.
_VIDEO_PB: dict[int, tuple[VideoInfo, pb.Video]] = {}
_VIDEO_PB_MAX = 65_536


def _hit_video_pb(v: VideoInfo) -> pb.Video:
    cached = _VIDEO_PB.get(v.id)
    if cached is not None and cached[0] is v:
        return cached[1]
    message = video_to_pb(v)
    if len(_VIDEO_PB) >= _VIDEO_PB_MAX:
        _VIDEO_PB.clear()
    _VIDEO_PB[v.id] = (v, message)
    return message


def search_to_pb(r: SearchResult) -> pb.SearchResponse:
    response = pb.SearchResponse(
        model_version=r.model_version or "",
        candidates=r.candidates,
        copy_threshold=r.copy_threshold,
        regions_searched=r.regions_searched,
    )
    # Each hit filled in place (add() with the scalars, then the sub-messages' fields):
    # building a pb.Hit and its TimeRanges first and handing them over copies each of
    # them again, twice the cost. Each sub-message is looked up once (a new wrapper per
    # look-up).
    add = response.hits.add
    for h in r.hits:
        m = add(
            score=h.score,
            segment_id=h.segment_id or 0,
            aligned=h.alignment_score is not None,
            alignment_score=h.alignment_score or 0.0,
            copy_score=h.copy_score,
            is_copy=h.is_copy,
        )
        m.video.CopyFrom(_hit_video_pb(h.video))
        if h.target is not None:
            target = m.target
            target.start_s, target.end_s = h.target
        if h.query is not None:
            query = m.query
            query.start_s, query.end_s = h.query
    return response


def search_batch_to_pb(results: Sequence[SearchResult]) -> pb.SearchBatchResponse:
    return pb.SearchBatchResponse(results=[search_to_pb(r) for r in results])


def packed_hits_to_pb(c: HitColumns) -> pb.PackedHits:
    """Columns straight from arrays (.tolist(): one C loop each, no message per hit)."""
    verdicts = c.copy_threshold is not None and c.copy_scores is not None
    return pb.PackedHits(
        offsets=c.offsets.tolist(),
        video_ids=c.video_ids.tolist(),
        segment_ids=c.segment_ids.tolist(),
        scores=c.scores.tolist(),
        target_start_s=c.target_start_s.tolist(),
        target_end_s=c.target_end_s.tolist(),
        aligned=c.aligned.tolist(),
        copy_scores=c.copy_scores.tolist() if verdicts else [],  # type: ignore[union-attr]
        is_copy=c.is_copy.tolist() if verdicts else [],  # type: ignore[union-attr]
        candidates=c.candidates.tolist(),
        model_version=c.model_version or "",
        copy_threshold=c.copy_threshold,
    )


def _metric(metrics: dict, key: str) -> float:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def classifier_to_pb(c: Classifier) -> pb.Classifier:
    m = c.metrics or {}
    return pb.Classifier(
        id=c.id,
        name=c.name,
        labels=list(c.labels),
        model_version=c.model_version,
        train_examples=int(_metric(m, "train_examples")),
        holdout_examples=int(_metric(m, "holdout_examples")),
        holdout_accuracy=_metric(m, "holdout_accuracy"),
        holdout_macro_f1=_metric(m, "holdout_macro_f1"),
        created_at=rfc3339(c.created_at),
    )


def classify_to_pb(labels: Sequence[tuple[str, float]], model_version: str) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(
        labels=[pb.LabelScore(label=name, probability=p) for name, p in labels],
        model_version=model_version,
    )


# ---- duplicates ------------------------------------------------------------------------

DUPLICATES_PAGE_SIZE, MAX_DUPLICATES_PAGE_SIZE = 100, 1000


def duplicates_request_from_pb(r: pb.FindDuplicatesRequest) -> DuplicatesRequest:
    return DuplicatesRequest(
        collection=r.collection or None,
        min_score=r.min_score or None,
        top_k=r.top_k or 10,
        refine=not r.disable_refinement,
    )


def duplicates_page_size(value: int) -> int:
    if value == 0:
        return DUPLICATES_PAGE_SIZE
    if not 1 <= value <= MAX_DUPLICATES_PAGE_SIZE:
        raise InvalidArgumentError(f"page_size {value}: expected 1..{MAX_DUPLICATES_PAGE_SIZE}")
    return value


def duplicates_progress_to_pb(p: DuplicatesProgress) -> pb.DuplicatesProgress:
    return pb.DuplicatesProgress(
        videos_searched=p.videos_searched,
        videos_total=p.videos_total,
        pairs_found=p.pairs_found,
        pairs_refined=p.pairs_refined,
    )


def duplicate_pair_to_pb(p: DuplicatePair) -> pb.DuplicatePair:
    return pb.DuplicatePair(
        query=pb.DuplicateSide(video=video_to_pb(p.query), range=_range(p.query_range)),
        target=pb.DuplicateSide(video=video_to_pb(p.target), range=_range(p.target_range)),
        score=p.score,
        copy_score=p.copy_score,
        is_copy=p.is_copy,
        refined=p.refined,
    )


def duplicate_group_to_pb(g: DuplicateGroup) -> pb.DuplicateGroup:
    return pb.DuplicateGroup(
        video_ids=list(g.video_ids), pairs=[duplicate_pair_to_pb(p) for p in g.pairs]
    )


def duplicate_pages(r: DuplicatesReport, page_size: int) -> list[pb.DuplicateGroupsPage]:
    """The report's groups in pages of `page_size` (one empty page when there are none)."""
    chunks = [r.groups[i : i + page_size] for i in range(0, len(r.groups), page_size)] or [[]]
    return [
        pb.DuplicateGroupsPage(
            groups=[duplicate_group_to_pb(g) for g in chunk],
            page=n,
            last=n == len(chunks) - 1,
            groups_total=len(r.groups),
            model_version=r.model_version or "",
            copy_threshold=r.copy_threshold,
            min_score=r.min_score or 0.0,
        )
        for n, chunk in enumerate(chunks)
    ]
