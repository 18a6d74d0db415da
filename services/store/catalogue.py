"""The reads that keep the search catalogue (services.index.catalogue) current: the vector
rows' places (no vector bytes) above a watermark, and the videos they belong to.

    vector_places(s, "segment", v, after_id) -> ids, video ids, segment index, start, end
    vector_places(s, "video", v, after_id)   -> ids, video ids (index -1, times 0)
    videos_by_ids(s, ids) / ready_videos(s)  -> Video rows with their tags and metadata
    video_changes(s, after_seq)              -> ids of videos whose metadata changed, head seq
    segment_rows(s, video ids, v)            -> SegmentRows (the vectors re-ranking aligns)
    video_vectors(s, video ids, v)           -> video vectors (video-id queries, a batch)

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Segment, Video, VideoChange, VideoEmbedding, VideoStatus
from .segments import decode_vectors
from .vector_source import Level

ID_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class VectorPlaces:
    """Where vectors sit: one row per vector id, in id order."""

    ids: np.ndarray  # (n,) int64, increasing
    video_ids: np.ndarray  # (n,) int64
    segment_index: np.ndarray  # (n,) int32; -1 at video level
    start_s: np.ndarray  # (n,) float64; 0 at video level
    end_s: np.ndarray  # (n,) float64

    @classmethod
    def empty(cls) -> VectorPlaces:
        return cls(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0, np.float64),
            np.zeros(0, np.float64),
        )

    def __len__(self) -> int:
        return len(self.ids)


def vector_places(
    session: Session, level: Level, model_version: str, *, after_id: int = 0, limit: int = 65536
) -> VectorPlaces:
    """Up to `limit` live vector rows of this level and version with id > after_id."""
    if level == "segment":
        cols = (Segment.id, Segment.video_id, Segment.segment_index, Segment.start_s, Segment.end_s)
        model = Segment
    elif level == "video":
        cols = (VideoEmbedding.id, VideoEmbedding.video_id)  # type: ignore[assignment]
        model = VideoEmbedding  # type: ignore[assignment]
    else:
        raise ValueError(f"level {level!r}: expected 'segment' or 'video'")
    rows = session.execute(
        select(*cols)
        .where(model.model_version == model_version, model.id > after_id)
        .order_by(model.id)
        .limit(limit)
    ).all()
    n = len(rows)
    if n == 0:
        return VectorPlaces.empty()
    ids = np.fromiter((r[0] for r in rows), np.int64, n)
    vids = np.fromiter((r[1] for r in rows), np.int64, n)
    if level == "video":
        return VectorPlaces(ids, vids, np.full(n, -1, np.int32), np.zeros(n), np.zeros(n))
    return VectorPlaces(
        ids,
        vids,
        np.fromiter((r[2] for r in rows), np.int32, n),
        np.fromiter((r[3] for r in rows), np.float64, n),
        np.fromiter((r[4] for r in rows), np.float64, n),
    )


def video_changes(session: Session, *, after_seq: int = 0) -> tuple[set[int], int]:
    """(ids of the videos whose metadata changed after `after_seq`, the new watermark).

    Bounded by the log's head read first: writers append under `lock_vector_log`, so
    every change up to it has committed and the head skips nothing."""
    head = int(session.scalar(select(func.max(VideoChange.seq))) or 0)
    if head <= after_seq:
        return set(), max(head, int(after_seq))
    ids = session.scalars(
        select(VideoChange.video_id).where(VideoChange.seq > after_seq, VideoChange.seq <= head)
    ).all()
    return {int(v) for v in ids}, head


def videos_by_ids(session: Session, video_ids: Iterable[int]) -> list[Video]:
    """The video rows (any status) of these ids, tags loaded."""
    ids = sorted({int(v) for v in video_ids})
    out: list[Video] = []
    for i in range(0, len(ids), ID_CHUNK):
        out.extend(session.scalars(select(Video).where(Video.id.in_(ids[i : i + ID_CHUNK]))))
    return out


def ready_videos(session: Session, *, batch: int = 5000) -> Iterator[Video]:
    """Every READY video, in id order, tags loaded (keyset pages of `batch`)."""
    after = 0
    while True:
        page = list(
            session.scalars(
                select(Video)
                .where(Video.status == VideoStatus.READY, Video.id > after)
                .order_by(Video.id)
                .limit(batch)
            )
        )
        yield from page
        if len(page) < batch:
            return
        after = page[-1].id


@dataclass(frozen=True)
class SegmentRows:
    """One video's segments of one model version, in time order, with their vectors: what
    re-ranking aligns a query with (the one search read that is not in memory)."""

    ids: np.ndarray  # (n,) int64 segment ids
    start_s: np.ndarray  # (n,) float64
    end_s: np.ndarray  # (n,) float64
    xb: np.ndarray  # (n, d) float32


def segment_rows(
    session: Session, video_ids: Iterable[int], model_version: str | None
) -> dict[int, SegmentRows]:
    """video id -> its SegmentRows; a video without segments of the version is absent."""
    ids = sorted({int(v) for v in video_ids})
    rows: dict[int, list] = {}
    for i in range(0, len(ids), ID_CHUNK):
        stmt = (
            select(Segment.video_id, Segment.id, Segment.start_s, Segment.end_s, Segment.vector)
            .where(Segment.video_id.in_(ids[i : i + ID_CHUNK]),
                   Segment.model_version == model_version)
            .order_by(Segment.video_id, Segment.segment_index)
        )  # fmt: skip
        for r in session.execute(stmt):
            rows.setdefault(int(r[0]), []).append(r)
    out = {}
    for vid, rs in rows.items():
        n = len(rs)
        out[vid] = SegmentRows(
            np.fromiter((r[1] for r in rs), np.int64, n),
            np.fromiter((r[2] for r in rs), np.float64, n),
            np.fromiter((r[3] for r in rs), np.float64, n),
            decode_vectors([r[4] for r in rs]),  # (n, d)
        )
    return out


def video_vectors(
    session: Session, video_ids: Iterable[int], model_version: str
) -> dict[int, np.ndarray]:
    """video id -> its video vector (d,) of the version; a video without one is absent."""
    ids = sorted({int(v) for v in video_ids})
    out: dict[int, np.ndarray] = {}
    for i in range(0, len(ids), ID_CHUNK):
        stmt = select(VideoEmbedding.video_id, VideoEmbedding.vector).where(
            VideoEmbedding.video_id.in_(ids[i : i + ID_CHUNK]),
            VideoEmbedding.model_version == model_version,
        )
        for vid, blob in session.execute(stmt):
            out[int(vid)] = decode_vectors([blob])[0]
    return out
