"""Model versions: which one searches serve while a re-embedding is under way.

A library is served from one model version at a time. When the configured checkpoint
changes, `sora reindex` queues a job per READY video lacking the new version's vectors;
until every READY video has them, searches keep serving the old version, then switch.
Versions never mix in one index (an index is per (level, model_version)).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import VectorTombstone, Video, VideoChange, VideoEmbedding, VideoStatus


def coverage(session: Session) -> dict[str, int]:
    """model version -> how many READY videos have its video vector."""
    rows = session.execute(
        select(VideoEmbedding.model_version, func.count())
        .join(Video, Video.id == VideoEmbedding.video_id)
        .where(Video.status == VideoStatus.READY)
        .group_by(VideoEmbedding.model_version)
    ).all()
    return dict(rows)


def videos_missing_version(session: Session, model_version: str) -> list[int]:
    """READY videos without a vector of `model_version` (what a reindex must do)."""
    has = select(VideoEmbedding.video_id).where(VideoEmbedding.model_version == model_version)
    return list(
        session.scalars(
            select(Video.id)
            .where(Video.status == VideoStatus.READY, Video.id.not_in(has))
            .order_by(Video.id)
        )
    )


def serving_model_version(session: Session, configured: str) -> str | None:
    """The version searches should use: `configured` once it covers every READY video,
    else the version covering the most READY videos (the old one, mid-reindex); None when
    there are no vectors at all."""
    cov = coverage(session)
    if not cov:
        return None
    ready = session.scalar(select(func.count()).where(Video.status == VideoStatus.READY)) or 0
    if cov.get(configured, 0) >= ready:
        return configured
    return max(cov, key=lambda v: (cov[v], v == configured))


def versions_fingerprint(session: Session) -> tuple:
    """What moves whenever serving_model_version's answer can: the newest video vector
    (an ingest, a reindex), tombstone (a delete), video change and video. Four primary-key
    maxima (index look-ups), where serving_model_version counts every READY video."""
    return tuple(
        session.scalar(select(func.max(column)))
        for column in (VideoEmbedding.id, VectorTombstone.seq, VideoChange.seq, Video.id)
    )
