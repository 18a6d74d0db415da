"""Many videos' vectors a page at a time: what ListEmbeddings and `sora export` read.

    videos_where(READY, filters) AND has vectors of the version, id > after, id order
      -> page of <= page_size videos, cut short where the segment count passes
         max_segments (counted first with one GROUP BY, so a page never loads more)
      -> their video vectors and segments, two IN (...) queries

Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from .catalogue import video_vectors
from .models import Segment, Video, VideoEmbedding, VideoStatus
from .videos import videos_where


@dataclass(frozen=True)
class VideoVectors:
    video: Video
    video_vector: np.ndarray | None  # (d,) float32
    segments: list[Segment]  # in time order; empty when not asked for


def list_video_vectors(
    session: Session,
    model_version: str,
    *,
    after_id: int = 0,
    page_size: int = 100,
    max_segments: int = 16384,
    with_segments: bool = True,
    collection: str | None = None,
    tag: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
) -> tuple[list[VideoVectors], int | None]:
    """One page -> (videos with their vectors, the id to continue after or None at the end).

    A page holds at least one video (even one with more than max_segments segments)."""
    has_vectors = exists().where(
        VideoEmbedding.video_id == Video.id, VideoEmbedding.model_version == model_version
    ) | exists().where(Segment.video_id == Video.id, Segment.model_version == model_version)
    stmt = videos_where(
        select(Video).where(Video.id > after_id, has_vectors),
        status=VideoStatus.READY, collection=collection, tag=tag, user_metadata=user_metadata,
    )  # fmt: skip
    videos = list(session.scalars(stmt.order_by(Video.id).limit(page_size + 1)))
    more = len(videos) > page_size
    videos = videos[:page_size]
    ids = [v.id for v in videos]
    if with_segments and ids:
        counts = dict(
            session.execute(
                select(Segment.video_id, func.count())
                .where(Segment.video_id.in_(ids), Segment.model_version == model_version)
                .group_by(Segment.video_id)
            ).all()
        )
        total = 0
        for i, vid in enumerate(ids):
            total += counts.get(vid, 0)
            if total > max_segments and i > 0:
                videos, ids, more = videos[:i], ids[:i], True
                break
    vectors = video_vectors(session, ids, model_version)
    segments: dict[int, list[Segment]] = {}
    if with_segments and ids:
        for seg in session.scalars(
            select(Segment)
            .where(Segment.video_id.in_(ids), Segment.model_version == model_version)
            .order_by(Segment.video_id, Segment.segment_index)
        ):
            segments.setdefault(seg.video_id, []).append(seg)
    page = [VideoVectors(v, vectors.get(v.id), segments.get(v.id, [])) for v in videos]
    return page, (ids[-1] if more and ids else None)
