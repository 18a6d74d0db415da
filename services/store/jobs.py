"""Jobs: the workers' side of ingest. Leases make duplicate deliveries harmless.

    QUEUED --claim_job--> RUNNING --complete_ingest--> SUCCEEDED
      ^                     |  '--fail_job(permanent)--> FAILED
      '---fail_job(transient) / requeue_job (lease expired) ---'

A worker claims a job for `lease_s` seconds and renews the lease while it works; a claim
is refused while another owner's lease is live, and granted once it has expired (the
worker died). The reconciler lists `expired_jobs` and re-sends them. Every function takes
the caller's Session and never commits.

Locks are taken in one order everywhere, video row then job row (then the vector-log lock),
so that concurrent calls on PostgreSQL cannot deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.errors import ConflictError, InvalidArgumentError, LeaseLostError, NotFoundError

from .models import Job, JobKind, JobStatus, Video, VideoStatus, utcnow
from .segments import SegmentVector, check_model_version, write_vectors

log = logging.getLogger(__name__)

# A job claimed this many times without finishing (each claim after a lease expired means
# a worker died on it) fails for good: a poison video must not crash workers forever.
MAX_ATTEMPTS = 5
TIMING_FIELDS = ("decode_s", "encode_s", "write_s")
_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class ProbeFacts:
    """What the media probe found; stored on the video when its ingest completes."""

    duration_s: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int | None = None  # degrees
    codec: str | None = None
    content_box: str | None = None  # "x,y,w,h" inside the borders (ContentBox.to_text)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise InvalidArgumentError("now must be timezone-aware")
    return now


def _check_lease_args(owner: str, lease_s: float) -> None:
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 255:
        raise InvalidArgumentError("owner must be a non-empty string of at most 255 characters")
    if not lease_s > 0:
        raise InvalidArgumentError(f"lease_s {lease_s!r}: expected > 0")


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job


def _lock_job(session: Session, job_id: int) -> tuple[Job, Video]:
    """The job and its video, both locked FOR UPDATE (video first) and freshly read."""
    video_id = session.scalar(select(Job.video_id).where(Job.id == job_id))
    if video_id is None:
        raise NotFoundError(f"job {job_id} not found")
    video = session.scalar(
        select(Video)
        .where(Video.id == video_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    job = session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert video is not None and job is not None, "foreign key guarantees both rows"
    return job, video


def enqueue_job(
    session: Session,
    video_id: int,
    *,
    kind: JobKind = JobKind.REINDEX,
    model_version: str | None = None,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """A queued job for the video -> (job, created). An active (queued or running) job of
    the same kind and model version is returned instead of a second one."""
    if model_version is not None:
        check_model_version(model_version)
    now = _now(now)
    video = session.scalar(
        select(Video)
        .where(Video.id == video_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if video is None or video.status is VideoStatus.DELETED:
        raise NotFoundError(f"video {video_id} not found")
    existing = session.scalar(
        select(Job)
        .where(
            Job.video_id == video_id,
            Job.kind == JobKind(kind),
            Job.status.in_(_ACTIVE),
            Job.model_version.is_(None)
            if model_version is None
            else Job.model_version == model_version,
        )
        .order_by(Job.id)
        .limit(1)
    )
    if existing is not None:
        return existing, False
    job = Job(
        video_id=video_id,
        kind=JobKind(kind),
        status=JobStatus.QUEUED,
        model_version=model_version,
        queued_at=now,
    )
    session.add(job)
    session.flush()
    return job, True


def claim_job(
    session: Session,
    job_id: int,
    owner: str,
    lease_s: float,
    *,
    now: datetime | None = None,
    max_attempts: int | None = MAX_ATTEMPTS,
) -> Job | None:
    """Take the job for `lease_s` seconds -> the RUNNING job, or None when there is nothing
    to do: it SUCCEEDED or FAILED already, or another owner holds a live lease (a duplicate
    delivery). A job claimed `max_attempts` times already fails for good instead (None).
    Claiming again under one's own live lease is granted (a retry in the same worker).
    """
    _check_lease_args(owner, lease_s)
    now = _now(now)
    job, video = _lock_job(session, job_id)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        log.info("job %s: %s already, not claimed by %s", job_id, job.status.value, owner)
        return None
    if (
        job.status is JobStatus.RUNNING
        and job.lease_owner != owner
        and job.lease_expires_at is not None
        and job.lease_expires_at > now
    ):
        log.info("job %s: leased to %s until %s", job_id, job.lease_owner, job.lease_expires_at)
        return None
    if video.status is VideoStatus.DELETED:
        _finish_failed(job, video, "video deleted", now)
        return None
    if max_attempts is not None and job.attempts >= max_attempts:
        reason = (
            f"gave up after {job.attempts} attempts; last error: {job.error or 'lease expired'}"
        )
        _finish_failed(job, video, reason, now)
        log.warning("job %s: %s", job_id, reason)
        return None
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.lease_owner = owner
    job.lease_expires_at = now + timedelta(seconds=lease_s)
    job.started_at, job.finished_at = now, None
    if job.kind is JobKind.INGEST and video.status in (VideoStatus.PENDING, VideoStatus.FAILED):
        video.status = VideoStatus.PROCESSING
    session.flush()
    return job


def renew_lease(
    session: Session,
    job_id: int,
    owner: str,
    lease_s: float,
    *,
    done: int | None = None,
    total: int | None = None,
    now: datetime | None = None,
) -> datetime:
    """Extend the caller's lease (and record progress: `done` of `total` segments) -> the new
    expiry. LeaseLostError when the job is no longer RUNNING under `owner`."""
    _check_lease_args(owner, lease_s)
    now = _now(now)
    job = session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    if job.status is not JobStatus.RUNNING or job.lease_owner != owner:
        raise LeaseLostError(
            f"job {job_id} is {job.status.value} under {job.lease_owner!r}, not {owner!r}"
        )
    job.lease_expires_at = now + timedelta(seconds=lease_s)
    _set_progress(job, done, total)
    session.flush()
    return job.lease_expires_at


def _set_progress(job: Job, done: int | None, total: int | None) -> None:
    if total is not None:
        if total < 0:
            raise InvalidArgumentError(f"total {total}: expected >= 0")
        job.progress_total = total
    if done is not None:
        if done < 0 or (job.progress_total is not None and done > job.progress_total):
            raise InvalidArgumentError(f"done {done}: expected 0..{job.progress_total}")
        job.progress_done = done


def _finish_failed(job: Job, video: Video, reason: str, now: datetime) -> None:
    job.status, job.error, job.finished_at = JobStatus.FAILED, reason, now
    job.lease_owner = job.lease_expires_at = None
    # A failed reindex leaves the video READY with its old vectors; a failed ingest fails it.
    if job.kind is JobKind.INGEST and video.status in (VideoStatus.PENDING, VideoStatus.PROCESSING):
        video.status, video.error = VideoStatus.FAILED, reason


def _back_to_queue(job: Job, video: Video, reason: str) -> None:
    """QUEUED again, lease released, the reason kept; an ingest's video back to PENDING."""
    job.status, job.error = JobStatus.QUEUED, reason
    job.lease_owner = job.lease_expires_at = None
    if job.kind is JobKind.INGEST and video.status is VideoStatus.PROCESSING:
        video.status = VideoStatus.PENDING


def fail_job(
    session: Session,
    job_id: int,
    reason: str,
    *,
    permanent: bool,
    owner: str | None = None,
    now: datetime | None = None,
) -> Job:
    """Record a failure. permanent: job FAILED (and an ingest's video FAILED with the
    reason); otherwise the job goes back to QUEUED for a retry, with the reason kept in
    `error`. A job that SUCCEEDED or FAILED already is left as it is (a late report from a
    worker whose lease was taken over). With `owner`, LeaseLostError if another owner
    holds the job."""
    if not reason:
        raise InvalidArgumentError("a failure needs a reason")
    now = _now(now)
    job, video = _lock_job(session, job_id)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        log.info("job %s: %s already; ignoring failure %r", job_id, job.status.value, reason)
        return job
    if owner is not None and job.status is JobStatus.RUNNING and job.lease_owner != owner:
        raise LeaseLostError(f"job {job_id} is leased to {job.lease_owner!r}, not {owner!r}")
    if permanent:
        _finish_failed(job, video, reason, now)
    else:
        _back_to_queue(job, video, reason)
    session.flush()
    return job


def complete_ingest(
    session: Session,
    job_id: int,
    video_id: int,
    *,
    model_version: str,
    segments: Sequence[SegmentVector | tuple[int, float, float, np.ndarray]],
    video_vector: np.ndarray | None,
    probe: ProbeFacts | None = None,
    timings: Mapping[str, float] | None = None,
    now: datetime | None = None,
) -> Video:
    """Write the job's result in the caller's one transaction: the segment vectors, the
    video vector, the probe facts, video READY and job SUCCEEDED.

    Idempotent: a job that SUCCEEDED already is left alone (a duplicate delivery writes
    nothing). Otherwise vectors of this (video, model version) from an earlier job are
    replaced: deleted and tombstoned, the new rows get new ids. Raises ConflictError when
    the video was deleted meanwhile, InvalidArgumentError / TypeError for bad vectors.
    Works for reindex jobs too (the video stays READY).
    """
    now = _now(now)
    check_model_version(model_version)
    timing_values = dict(timings or {})
    unknown = set(timing_values) - set(TIMING_FIELDS)
    if unknown:
        raise InvalidArgumentError(f"unknown timings {sorted(unknown)}; known: {TIMING_FIELDS}")
    job, video = _lock_job(session, job_id)
    if job.video_id != video_id:
        raise InvalidArgumentError(f"job {job_id} belongs to video {job.video_id}, not {video_id}")
    if job.status is JobStatus.SUCCEEDED:
        log.info("job %s: SUCCEEDED already; duplicate completion ignored", job_id)
        return video
    if video.status is VideoStatus.DELETED:
        raise ConflictError(f"video {video_id} was deleted; its result is discarded")
    if job.model_version is not None and job.model_version != model_version:
        raise ConflictError(
            f"job {job_id} asks for model version {job.model_version!r}, got {model_version!r}"
        )
    segment_ids, _ = write_vectors(
        session,
        video_id,
        model_version=model_version,
        segments=segments,
        video_vector=video_vector,
        now=now,
    )
    if probe is not None:
        for field in ("duration_s", "fps", "width", "height", "rotation", "codec", "content_box"):
            setattr(video, field, getattr(probe, field))
    video.status, video.error = VideoStatus.READY, None
    job.status, job.error, job.finished_at = JobStatus.SUCCEEDED, None, now
    job.lease_owner = job.lease_expires_at = None
    job.progress_done = job.progress_total = len(segment_ids)
    for field, value in timing_values.items():
        setattr(job, field, float(value))
    session.flush()
    return video


def expired_jobs(session: Session, now: datetime | None = None, *, limit: int = 1000) -> list[Job]:
    """RUNNING jobs whose lease ran out before `now` (their worker died), oldest first, for
    the reconciler to re-send. Rows are locked (SKIP LOCKED on PostgreSQL, so several
    reconcilers split the work); pair with `requeue_job` in the same transaction."""
    now = _now(now)
    return list(
        session.scalars(
            select(Job)
            .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
            .order_by(Job.lease_expires_at, Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def requeue_job(session: Session, job_id: int, *, reason: str = "lease expired") -> Job:
    """Put a RUNNING job back to QUEUED (lease cleared, reason in `error`) so it can be
    re-sent; other statuses are left as they are."""
    job, video = _lock_job(session, job_id)
    if job.status is JobStatus.RUNNING:
        log.info("job %s: re-queued (%s, was %s)", job_id, reason, job.lease_owner)
        _back_to_queue(job, video, reason)
        session.flush()
    return job


def mark_dispatched(session: Session, job_id: int, *, now: datetime | None = None) -> None:
    """Record that the job's message was just handed to the broker."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    job.dispatched_at = _now(now)
    session.flush()


def undispatched_jobs(
    session: Session,
    *,
    older_than_s: float,
    now: datetime | None = None,
    limit: int = 1000,
) -> list[Job]:
    """QUEUED jobs never dispatched, or dispatched more than `older_than_s` ago and still
    not claimed: their message was lost (never sent, or dropped by a broker restart). The
    reconciler re-sends them; a duplicate message is harmless since claims are idempotent.
    Rows are locked like `expired_jobs`'s."""
    cutoff = _now(now) - timedelta(seconds=older_than_s)
    return list(
        session.scalars(
            select(Job)
            .where(
                Job.status == JobStatus.QUEUED,
                (Job.dispatched_at.is_(None) & (Job.queued_at < cutoff))
                | (Job.dispatched_at < cutoff),
            )
            .order_by(Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
