"""Videos: registration (idempotent on the bytes' sha256), lookup, listing, deletion.

Every function takes the caller's Session and never commits: the caller owns the
transaction (`with store.Session.begin() as session: ...`).

Registering bytes that are already known:

    existing status          result                                     job
    PENDING/PROCESSING/READY the existing video, unchanged              None (one is queued
                                                                        or it is done)
    FAILED                   re-queued: status PENDING, error cleared,  a new ingest job
                             uri updated to the one just given
    DELETED                  revived with the new uri/title/collection/ a new ingest job
                             tags, same id, created=True

`created` is True when the call made the video visible (a new row or a revived one); the
caller sends a task to the workers exactly when the returned job is not None.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.errors import InvalidArgumentError, NotFoundError

from .models import Job, JobKind, JobStatus, Video, VideoStatus, VideoTag, utcnow
from .segments import delete_vectors

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_TAG_LEN = 128
MAX_COLLECTION_LEN = 255
MAX_PAGE_SIZE = 1000
_TOKEN_VERSION = 1


def normalize_sha256(content_sha256: str) -> str:
    sha = content_sha256.strip().lower() if isinstance(content_sha256, str) else ""
    if not _SHA256.fullmatch(sha):
        raise InvalidArgumentError(f"content_sha256 {content_sha256!r}: expected 64 hex digits")
    return sha


def normalize_tags(tags: Iterable[str]) -> list[str]:
    """Stripped, non-empty, unique, sorted."""
    if isinstance(tags, str):
        raise InvalidArgumentError("tags must be a list of strings, not one string")
    out = set()
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidArgumentError(f"tag {tag!r}: expected a non-empty string")
        if len(tag.strip()) > MAX_TAG_LEN:
            raise InvalidArgumentError(f"tag {tag[:20]!r}...: longer than {MAX_TAG_LEN}")
        out.add(tag.strip())
    return sorted(out)


def _check_collection(collection: str | None) -> str | None:
    if collection is not None and (not collection.strip() or len(collection) > MAX_COLLECTION_LEN):
        raise InvalidArgumentError(f"collection {collection[:20]!r}: empty or too long")
    return collection


def find_video_by_sha(
    session: Session, content_sha256: str, *, for_update: bool = False
) -> Video | None:
    """The video with these bytes (any status, DELETED included), or None."""
    stmt = select(Video).where(Video.content_sha256 == normalize_sha256(content_sha256))
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalar(stmt)


def _new_ingest_job(session: Session, video: Video, now: datetime) -> Job:
    job = Job(video_id=video.id, kind=JobKind.INGEST, status=JobStatus.QUEUED, queued_at=now)
    session.add(job)
    session.flush()
    return job


def register_video(
    session: Session,
    *,
    uri: str,
    content_sha256: str,
    size_bytes: int,
    title: str | None = None,
    collection: str | None = None,
    tags: Sequence[str] = (),
    now: datetime | None = None,
) -> tuple[Video, Job | None, bool]:
    """Register a video by the sha256 of its bytes -> (video, new ingest job or None, created).

    Idempotent: known bytes give the existing video (see the module docstring for FAILED
    and DELETED ones). Safe against a concurrent registration of the same bytes: the
    losing INSERT rolls back to a savepoint and the winner's row is returned.
    """
    sha = normalize_sha256(content_sha256)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgumentError("uri must be a non-empty string")
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
        raise InvalidArgumentError(f"size_bytes {size_bytes!r}: expected an integer >= 0")
    tag_names = normalize_tags(tags)
    _check_collection(collection)
    now = now or utcnow()

    video = find_video_by_sha(session, sha, for_update=True)
    if video is None:
        try:
            with session.begin_nested():
                video = Video(
                    uri=uri,
                    content_sha256=sha,
                    size_bytes=size_bytes,
                    status=VideoStatus.PENDING,
                    title=title,
                    collection=collection,
                    created_at=now,
                    updated_at=now,
                    tag_rows=[VideoTag(tag=t) for t in tag_names],
                )
                session.add(video)
                session.flush()
        except IntegrityError:
            # Another transaction registered the same bytes between our SELECT and INSERT.
            video = find_video_by_sha(session, sha, for_update=True)
            if video is None:
                raise
            log.info("video %s: registered concurrently, returning the existing row", video.id)
        else:
            return video, _new_ingest_job(session, video, now), True

    if video.status is VideoStatus.FAILED:
        log.info("video %s: re-registered after failing (%s); re-queued", video.id, video.error)
        video.status, video.error, video.uri = VideoStatus.PENDING, None, uri
        return video, _new_ingest_job(session, video, now), False
    if video.status is VideoStatus.DELETED:
        log.info("video %s: re-registered after deletion; revived", video.id)
        video.status, video.error, video.uri = VideoStatus.PENDING, None, uri
        video.size_bytes, video.title, video.collection = size_bytes, title, collection
        video.tag_rows = [VideoTag(tag=t) for t in tag_names]
        session.flush()
        return video, _new_ingest_job(session, video, now), True
    return video, None, False


def get_video(session: Session, video_id: int, *, include_deleted: bool = False) -> Video:
    """The video, or NotFoundError (a DELETED one counts as not found unless asked for)."""
    video = session.get(Video, video_id)
    if video is None or (video.status is VideoStatus.DELETED and not include_deleted):
        raise NotFoundError(f"video {video_id} not found")
    return video


def set_tags(session: Session, video_id: int, tags: Sequence[str]) -> Video:
    """Replace the video's tags."""
    video = get_video(session, video_id)
    video.tag_rows = [VideoTag(tag=t) for t in normalize_tags(tags)]
    session.flush()
    return video


def delete_video(session: Session, video_id: int, *, now: datetime | None = None) -> Video:
    """Soft-delete: status DELETED, every vector row of the video removed and tombstoned,
    queued or running jobs failed ("video deleted"), all in the caller's transaction.

    The row itself stays (its sha256 keeps re-registration idempotent, its jobs keep their
    history); re-registering the same bytes revives it. Deleting twice is a no-op.
    Raises NotFoundError for an unknown id.
    """
    now = now or utcnow()
    video = session.scalar(
        select(Video)
        .where(Video.id == video_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if video is None:
        raise NotFoundError(f"video {video_id} not found")
    if video.status is VideoStatus.DELETED:
        return video
    removed = delete_vectors(session, video_id, now=now)
    active = session.scalars(
        select(Job)
        .where(Job.video_id == video_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    for job in active:
        job.status, job.error, job.finished_at = JobStatus.FAILED, "video deleted", now
        job.lease_owner = job.lease_expires_at = None
    video.status, video.error = VideoStatus.DELETED, None
    session.flush()
    log.info("video %s deleted, %d vectors tombstoned", video_id, removed)
    return video


def encode_page_token(after_id: int) -> str:
    raw = json.dumps({"v": _TOKEN_VERSION, "after": int(after_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The id a page token continues after, or InvalidArgumentError."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after = data["after"]
        if data.get("v") != _TOKEN_VERSION or not isinstance(after, int) or after < 0:
            raise ValueError(data)
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise InvalidArgumentError(f"invalid page token {token[:40]!r}") from e
    return after


def list_videos(
    session: Session,
    *,
    collection: str | None = None,
    tag: str | None = None,
    status: VideoStatus | str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
) -> tuple[list[Video], str | None]:
    """One page of videos in id order -> (videos, next_page_token or None at the end).

    Filters combine with AND. `status=None` lists every video except DELETED ones; ask for
    `status="DELETED"` to see those. Keyset pagination: the opaque token carries the last
    id, so pages stay consistent while videos are added or deleted.
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidArgumentError(f"page_size {page_size!r}: expected an integer")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page_size {page_size}: expected 1..{MAX_PAGE_SIZE}")
    after = decode_page_token(page_token) if page_token else 0
    stmt = select(Video).where(Video.id > after)
    if status is None:
        stmt = stmt.where(Video.status != VideoStatus.DELETED)
    else:
        try:
            stmt = stmt.where(Video.status == VideoStatus(status))
        except ValueError as e:
            raise InvalidArgumentError(f"unknown status {status!r}") from e
    if collection is not None:
        stmt = stmt.where(Video.collection == collection)
    if tag is not None:
        stmt = stmt.join(VideoTag, (VideoTag.video_id == Video.id) & (VideoTag.tag == tag))
    videos = list(session.scalars(stmt.order_by(Video.id).limit(page_size + 1)))
    if len(videos) > page_size:
        videos = videos[:page_size]
        return videos, encode_page_token(videos[-1].id)
    return videos, None
