"""The values search passes between its stages (services/search/pipeline.py draws them):
options, queries, hits, results. Plain data, no SQL, no gRPC."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from services.index import VideoInfo
from services.store import Level

RegionMode = Literal["auto", "always", "never"]
REGION_MODES: tuple[RegionMode, ...] = ("auto", "always", "never")


@dataclass(frozen=True)
class SearchOptions:
    level: Level = "video"
    top_k: int = 10
    collection: str | None = None
    tags: tuple[str, ...] = ()
    min_score: float | None = None
    exclude_query_video: bool = False
    alignment: bool = True
    # Clip queries: when to also search with the query's corner and centre regions
    # (picture in picture, split screens, heavy crops; 6x the embedding cost, see
    # merge_variant_hits): "always", "never", or "auto": only when the whole picture found
    # no copy, so a plain copy costs one embedding (RegionSearch in the .proto).
    regions: RegionMode = "auto"
    # Only videos whose external id is one of these (empty: any).
    external_ids: tuple[str, ...] = ()
    # Only videos carrying every one of these user metadata (key, value) pairs.
    metadata_items: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Query:
    """A query in vectors. `segments`/`times` only for sequence queries (video id, clip)."""

    vector: np.ndarray  # (d,) unit
    segments: np.ndarray | None = None  # (m, d) unit, in time order
    times: list[tuple[float, float]] = field(default_factory=list)  # m (start_s, end_s)
    video_id: int | None = None  # the query video (video-id queries)

    @classmethod
    def of_embedding(cls, emb: Any) -> Query:
        """A clip's embedding (sora_encoder's VideoEmbedding: vector, segments) as a query."""
        return cls(
            vector=np.asarray(emb.vector, dtype=np.float32),
            segments=np.stack([np.asarray(g.vector, dtype=np.float32) for g in emb.segments]),
            times=[(float(g.start_s), float(g.end_s)) for g in emb.segments],
        )

    @property
    def is_sequence(self) -> bool:
        return self.segments is not None and len(self.segments) > 0


@dataclass
class Hit:
    score: float
    video: VideoInfo
    segment_id: int | None = None
    target: tuple[float, float] | None = None  # seconds in the hit's video
    query: tuple[float, float] | None = None  # seconds in the query (sequence queries)
    alignment_score: float | None = None  # set when the candidate aligned
    first_stage_score: float = 0.0
    # Copy evidence (services/search/copy_verdict.py); None without a calibration.
    copy_score: float | None = None
    is_copy: bool | None = None


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    model_version: str | None
    candidates: int  # ids the index returned before filters and re-ranking
    copy_threshold: float | None = None  # the verdicts' threshold; None: no calibration
    regions_searched: bool = False  # clip queries: the query's regions were searched too


@dataclass(frozen=True)
class Candidate:
    """A vector the index returned that passed the filters."""

    vector_id: int
    video_id: int
    score: float
    query_row: int  # which of the query's searched rows gave the best score
    segment: tuple[int, float, float] | None = None  # (index, start_s, end_s), segment level
