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

External ids (optional, unique per collection among live videos). Registering with one:

    the id names a live video of OTHER bytes      AlreadyExistsError: the id keeps naming
                                                  what it named (replacing the content of
                                                  an asset is a delete, then an ingest)
    the bytes are a live video with ANOTHER       AlreadyExistsError: one video, one id
    external id (or the same id, in another
    collection)
    the bytes are a live video with this id,      an update of that video's metadata:
    or with none                                  collection, external id, and every field
                                                  the call gives (title, tags, user metadata,
                                                  original name/path) replace the stored
                                                  ones; fields it leaves empty stay
    otherwise                                     as the table above (new, re-queued,
                                                  revived), the id and metadata set

Never a silent second video: a tool that re-runs its sync gets the same video ids back,
with its metadata brought up to date. Deleting a video frees its external id.

Every change of what search filters on (title, collection, tags, external id, user
metadata) of an existing video appends a `video_changes` row (`record_video_change`), so
every search catalogue re-reads it (services/index/catalogue.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from services.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError

from .db import lock_vector_log
from .models import (
    Job,
    JobKind,
    JobStatus,
    Video,
    VideoChange,
    VideoMetadataEntry,
    VideoStatus,
    VideoTag,
    utcnow,
)
from .segments import delete_vectors

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_TAG_LEN = 128
MAX_COLLECTION_LEN = 255
MAX_PAGE_SIZE = 1000
MAX_EXTERNAL_ID_LEN = 255
MAX_METADATA_KEY_LEN = 128
MAX_METADATA_VALUE_LEN = 1024
MAX_METADATA_ENTRIES = 64  # per video: metadata rides along in every hit
_TOKEN_VERSION = 1


@dataclass(frozen=True)
class AssetFields:
    """What a caller tells about an asset beyond its bytes; every field optional."""

    title: str | None = None
    collection: str | None = None
    tags: Sequence[str] = ()
    external_id: str | None = None
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    original_name: str | None = None  # the file's name on the client's disk
    original_path: str | None = None  # its path there (or the URL / path as given)


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


def normalize_external_id(external_id: str | None) -> str | None:
    """Stripped; None for None or an empty string."""
    if external_id is None:
        return None
    if not isinstance(external_id, str):
        raise InvalidArgumentError(f"external_id {external_id!r}: expected a string")
    ext = external_id.strip()
    if len(ext) > MAX_EXTERNAL_ID_LEN:
        raise InvalidArgumentError(
            f"external_id {ext[:20]!r}...: longer than {MAX_EXTERNAL_ID_LEN} characters"
        )
    return ext or None


def normalize_user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Keys stripped and non-empty, values strings; both within their lengths."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError("user metadata must be a mapping of strings to strings")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidArgumentError(
            f"{len(metadata)} user metadata entries: at most {MAX_METADATA_ENTRIES} a video"
        )
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidArgumentError(f"user metadata key {key!r}: expected a non-empty string")
        if len(key.strip()) > MAX_METADATA_KEY_LEN:
            raise InvalidArgumentError(
                f"user metadata key {key[:20]!r}...: longer than {MAX_METADATA_KEY_LEN}"
            )
        if not isinstance(value, str):
            raise InvalidArgumentError(f"user metadata {key!r}: the value must be a string")
        if len(value) > MAX_METADATA_VALUE_LEN:
            raise InvalidArgumentError(
                f"user metadata {key!r}: value longer than {MAX_METADATA_VALUE_LEN} characters"
            )
        out[key.strip()] = value
    return out


def external_key(collection: str | None, external_id: str) -> str:
    """The unique key of an external id in its collection (see `Video.external_key`)."""
    c = collection or ""
    return f"{len(c)}:{c}:{external_id}"


def record_video_change(session: Session, video_id: int, *, now: datetime | None = None) -> None:
    """Log that a video's metadata changed. Under `lock_vector_log`, so that the log's
    seqs commit in order (a catalogue reads "changes after my seq")."""
    lock_vector_log(session)
    session.add(VideoChange(video_id=video_id, changed_at=now or utcnow()))
    session.flush()


def find_video_by_external_id(
    session: Session, external_id: str, collection: str | None = None, *, for_update: bool = False
) -> Video | None:
    """The live video with this external id in this collection (None: no collection), or
    None."""
    ext = normalize_external_id(external_id)
    if ext is None:
        raise InvalidArgumentError("external_id is empty")
    stmt = select(Video).where(Video.external_key == external_key(collection, ext))
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalar(stmt)


def get_video_by_external_id(
    session: Session, external_id: str, collection: str | None = None
) -> Video:
    """The live video with this external id in this collection, or NotFoundError."""
    video = find_video_by_external_id(session, external_id, collection)
    if video is None:
        where = f"collection {collection!r}" if collection else "no collection"
        raise NotFoundError(
            f"no video with external id {external_id.strip()!r} in {where} "
            "(an external id is unique within its collection: give the collection too)"
        )
    return video


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
    external_id: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
    original_name: str | None = None,
    original_path: str | None = None,
    default_title: str | None = None,
    now: datetime | None = None,
) -> tuple[Video, Job | None, bool]:
    """Register a video by the sha256 of its bytes -> (video, new ingest job or None, created).

    Idempotent: known bytes give the existing video (see the module docstring for FAILED
    and DELETED ones, and for external ids). Safe against a concurrent registration of the
    same bytes or external id: the losing INSERT rolls back to a savepoint and the
    winner's row decides. `default_title` (e.g. the file's stem) is the title of a new or
    revived video when `title` is empty; unlike `title`, it never replaces a stored one.
    """
    sha = normalize_sha256(content_sha256)
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgumentError("uri must be a non-empty string")
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
        raise InvalidArgumentError(f"size_bytes {size_bytes!r}: expected an integer >= 0")
    fields = AssetFields(
        title=title or None,
        collection=_check_collection(collection),
        tags=normalize_tags(tags),
        external_id=normalize_external_id(external_id),
        user_metadata=normalize_user_metadata(user_metadata),
        original_name=original_name or None,
        original_path=original_path or None,
    )
    now = now or utcnow()

    for attempt in (1, 2):
        video = find_video_by_sha(session, sha, for_update=True)
        if fields.external_id is not None:
            _check_external_id(session, sha, video, fields)
        if video is not None:
            break
        try:
            with session.begin_nested():
                video = Video(
                    uri=uri,
                    content_sha256=sha,
                    size_bytes=size_bytes,
                    status=VideoStatus.PENDING,
                    created_at=now,
                    updated_at=now,
                )
                _set_all(video, fields, default_title)
                session.add(video)
                session.flush()
        except IntegrityError:
            # Another transaction registered the same bytes (or took the same external
            # id) between our SELECTs and INSERT: look again, now that it has committed.
            if attempt == 2:
                raise
            log.info("sha %s: registered concurrently, looking again", sha[:12])
            continue
        return video, _new_ingest_job(session, video, now), True
    assert video is not None

    if video.status is VideoStatus.DELETED:
        log.info("video %s: re-registered after deletion; revived", video.id)
        video.status, video.error, video.uri, video.size_bytes = (
            VideoStatus.PENDING, None, uri, size_bytes,
        )  # fmt: skip
        _set_all(video, fields, default_title)
        _flush_claiming_external_id(session, fields)
        return video, _new_ingest_job(session, video, now), True
    if fields.external_id is not None and _update(video, fields):
        _flush_claiming_external_id(session, fields)
        record_video_change(session, video.id, now=now)
        log.info("video %s: metadata updated for external id %r", video.id, fields.external_id)
    if video.status is VideoStatus.FAILED:
        log.info("video %s: re-registered after failing (%s); re-queued", video.id, video.error)
        video.status, video.error, video.uri = VideoStatus.PENDING, None, uri
        return video, _new_ingest_job(session, video, now), False
    return video, None, False


def _where(collection: str | None) -> str:
    return f"collection {collection!r}" if collection else "no collection"


def _check_external_id(
    session: Session, sha: str, video: Video | None, fields: AssetFields
) -> None:
    """AlreadyExistsError when registering these bytes under this external id would make
    a second video for the id, or a second id for the video (the module docstring)."""
    assert fields.external_id is not None
    holder = find_video_by_external_id(
        session, fields.external_id, fields.collection, for_update=True
    )
    if holder is not None and holder.content_sha256 != sha:
        raise AlreadyExistsError(
            f"external id {fields.external_id!r} in {_where(fields.collection)} already "
            f"names video {holder.id} ({holder.status.value}), whose bytes differ from "
            "these: to replace that asset's content delete video "
            f"{holder.id} first; otherwise give this file another external id"
        )
    if (
        video is not None
        and video.status is not VideoStatus.DELETED
        and video.external_key is not None
        and video.external_key != external_key(fields.collection, fields.external_id)
    ):
        raise AlreadyExistsError(
            f"these bytes are already video {video.id}, external id "
            f"{video.external_id!r} in {_where(video.collection)}; a video has one "
            f"external id, so it cannot also be {fields.external_id!r} in "
            f"{_where(fields.collection)}: look it up by its id, or delete it first"
        )


def _set_all(video: Video, fields: AssetFields, default_title: str | None) -> None:
    """A new or revived video: every field from the call."""
    video.title = fields.title or default_title
    video.collection = fields.collection
    video.tag_rows = [VideoTag(tag=t) for t in fields.tags]
    video.metadata_rows = [
        VideoMetadataEntry(key=k, value=v) for k, v in sorted(fields.user_metadata.items())
    ]
    video.original_name, video.original_path = fields.original_name, fields.original_path
    video.external_id = fields.external_id
    video.external_key = (
        external_key(fields.collection, fields.external_id) if fields.external_id else None
    )


def _update(video: Video, fields: AssetFields) -> bool:
    """A known video registered again with an external id: the id and collection, and
    the fields the call gives, replace the stored ones -> whether anything changed."""
    assert fields.external_id is not None
    before = _snapshot(video)
    video.collection = fields.collection
    video.external_id = fields.external_id
    video.external_key = external_key(fields.collection, fields.external_id)
    if fields.title:
        video.title = fields.title
    if fields.tags and list(fields.tags) != video.tags:
        video.tag_rows = [VideoTag(tag=t) for t in fields.tags]
    if fields.user_metadata and dict(fields.user_metadata) != video.user_metadata:
        video.metadata_rows = [
            VideoMetadataEntry(key=k, value=v) for k, v in sorted(fields.user_metadata.items())
        ]
    if fields.original_name:
        video.original_name = fields.original_name
    if fields.original_path:
        video.original_path = fields.original_path
    return _snapshot(video) != before


def _snapshot(video: Video) -> tuple:
    return (
        video.title, video.collection, video.external_id, tuple(video.tags),
        tuple(sorted(video.user_metadata.items())), video.original_name, video.original_path,
    )  # fmt: skip


def _flush_claiming_external_id(session: Session, fields: AssetFields) -> None:
    """Flush an existing row that takes an external id; AlreadyExistsError when another
    transaction took the same id meanwhile."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise AlreadyExistsError(
            f"external id {fields.external_id!r} in {_where(fields.collection)} was just "
            "given to another video by a concurrent ingest: look it up, or retry"
        ) from None


def get_video(session: Session, video_id: int, *, include_deleted: bool = False) -> Video:
    """The video, or NotFoundError (a DELETED one counts as not found unless asked for)."""
    video = session.get(Video, video_id)
    if video is None or (video.status is VideoStatus.DELETED and not include_deleted):
        raise NotFoundError(f"video {video_id} not found")
    return video


def set_tags(session: Session, video_id: int, tags: Sequence[str]) -> Video:
    """Replace the video's tags."""
    video = get_video(session, video_id)
    new = normalize_tags(tags)
    if new != video.tags:
        video.tag_rows = [VideoTag(tag=t) for t in new]
        session.flush()
        record_video_change(session, video.id)
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
    video.external_key = None  # the external id is free for another video
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
    external_id: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
    page_size: int = 50,
    page_token: str | None = None,
) -> tuple[list[Video], str | None]:
    """One page of videos in id order -> (videos, next_page_token or None at the end).

    Filters combine with AND; `user_metadata` matches videos carrying every key=value.
    `status=None` lists every video except DELETED ones; ask for
    `status="DELETED"` to see those. Keyset pagination: the opaque token carries the last
    id, so pages stay consistent while videos are added or deleted.
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidArgumentError(f"page_size {page_size!r}: expected an integer")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page_size {page_size}: expected 1..{MAX_PAGE_SIZE}")
    after = decode_page_token(page_token) if page_token else 0
    stmt = videos_where(
        select(Video).where(Video.id > after),
        collection=collection, tag=tag, status=status, external_id=external_id,
        user_metadata=user_metadata,
    )  # fmt: skip
    videos = list(session.scalars(stmt.order_by(Video.id).limit(page_size + 1)))
    if len(videos) > page_size:
        videos = videos[:page_size]
        return videos, encode_page_token(videos[-1].id)
    return videos, None


def videos_where(
    stmt: Select,
    *,
    collection: str | None = None,
    tag: str | None = None,
    status: VideoStatus | str | None = None,
    external_id: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
) -> Select:
    """`stmt` (a SELECT from videos) with the listing filters, ANDed (see list_videos)."""
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
    ext = normalize_external_id(external_id)
    if ext is not None:
        stmt = stmt.where(Video.external_id == ext)
    for key, value in normalize_user_metadata(user_metadata).items():
        m = aliased(VideoMetadataEntry)
        stmt = stmt.join(m, (m.video_id == Video.id) & (m.key == key) & (m.value == value))
    return stmt
