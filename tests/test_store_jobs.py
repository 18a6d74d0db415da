"""Jobs: leases, duplicate deliveries, idempotent completion, failures, the reconciler."""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import func, select

from services.errors import ConflictError, InvalidArgumentError, LeaseLostError
from services.store import (
    JobKind,
    JobStatus,
    ProbeFacts,
    Segment,
    VideoEmbedding,
    VideoStatus,
    claim_job,
    complete_ingest,
    delete_video,
    enqueue_job,
    expired_jobs,
    fail_job,
    get_job,
    get_segments,
    get_video,
    register_video,
    renew_lease,
    requeue_job,
    vector_source,
)

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
D = 16


def unit(seed: int, d: int = D) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    return x / np.linalg.norm(x)


def segments(n: int, seed: int = 0, d: int = D) -> list[tuple[int, float, float, np.ndarray]]:
    return [(i, 4.0 * i, 4.0 * i + 4.0, unit(seed * 1000 + i, d)) for i in range(n)]


@pytest.fixture
def queued(db):
    """A registered video and its queued ingest job -> (store, video_id, job_id)."""
    with db.Session.begin() as s:
        video, job, _ = register_video(
            s, uri="/a.mp4", content_sha256=hashlib.sha256(b"a").hexdigest(), size_bytes=1
        )
    return db, video.id, job.id


def n_rows(session, model, video_id: int) -> int:
    return session.scalar(select(func.count()).where(model.video_id == video_id))


def test_claim_refuses_a_live_lease_of_another_owner_and_grants_after_expiry(queued):
    db, video_id, job_id = queued
    with db.Session.begin() as s:
        job = claim_job(s, job_id, "worker-1", 60, now=T0)
        assert job is not None and job.status is JobStatus.RUNNING
        assert (job.attempts, job.lease_owner) == (1, "worker-1")
        assert job.lease_expires_at == T0 + timedelta(seconds=60)
        assert get_video(s, video_id).status is VideoStatus.PROCESSING
    with db.Session.begin() as s:
        assert claim_job(s, job_id, "worker-2", 60, now=T0 + timedelta(seconds=59)) is None
    with db.Session.begin() as s:
        job = claim_job(s, job_id, "worker-2", 60, now=T0 + timedelta(seconds=61))
        assert job is not None and (job.attempts, job.lease_owner) == (2, "worker-2")
    with db.Session.begin() as s, pytest.raises(LeaseLostError):
        renew_lease(s, job_id, "worker-1", 60, now=T0 + timedelta(seconds=62))
    with db.Session.begin() as s:
        expiry = renew_lease(
            s, job_id, "worker-2", 30, done=3, total=10, now=T0 + timedelta(seconds=90)
        )
        assert expiry == T0 + timedelta(seconds=90) + timedelta(seconds=30)
        job = get_job(s, job_id)
        assert (job.progress_done, job.progress_total) == (3, 10)


def test_duplicate_delivery_writes_one_set_of_segments(queued):
    db, video_id, job_id = queued
    for delivery in range(2):
        with db.Session.begin() as s:
            if claim_job(s, job_id, f"worker-{delivery}", 60) is None:
                assert delivery == 1  # the second delivery sees SUCCEEDED and stops here
            complete_ingest(
                s,
                job_id,
                video_id,
                model_version="m1",
                segments=segments(5),
                video_vector=unit(99),
                probe=ProbeFacts(
                    duration_s=20.0,
                    fps=25.0,
                    width=640,
                    height=360,
                    codec="h264",
                    content_box="0.0000,0.1250,1.0000,0.7500",
                ),
                timings={"decode_s": 1.5, "encode_s": 2.5, "write_s": 0.1},
            )
    source = vector_source(db)
    with db.Session.begin() as s:
        assert n_rows(s, Segment, video_id) == 5
        assert n_rows(s, VideoEmbedding, video_id) == 1
        video = get_video(s, video_id)
        assert video.status is VideoStatus.READY
        assert (video.duration_s, video.width, video.codec) == (20.0, 640, "h264")
        assert video.content_box == "0.0000,0.1250,1.0000,0.7500"
        job = get_job(s, job_id)
        assert job.status is JobStatus.SUCCEEDED and job.lease_owner is None
        assert (job.decode_s, job.encode_s, job.progress_done, job.progress_total) == (
            1.5,
            2.5,
            5,
            5,
        )
        stored = get_segments(s, video_id, "m1")
        assert [g.segment_index for g in stored] == [0, 1, 2, 3, 4]
        expected = [v for _, _, _, v in segments(5)]
        assert all(np.array_equal(g.as_array(), v) for g, v in zip(stored, expected, strict=True))
    assert source.max_tombstone_seq() == 0  # nothing was replaced


def test_a_second_job_for_the_same_model_version_replaces_and_tombstones(queued):
    db, video_id, job_id = queued
    with db.Session.begin() as s:
        complete_ingest(
            s, job_id, video_id, model_version="m1", segments=segments(4), video_vector=unit(9)
        )
        old_ids = [g.id for g in get_segments(s, video_id, "m1")]
        reindex, created = enqueue_job(s, video_id, kind=JobKind.REINDEX, model_version="m1")
        assert created
        assert enqueue_job(s, video_id, kind=JobKind.REINDEX, model_version="m1") == (
            reindex,
            False,
        )
    source = vector_source(db)
    old_video_id = source.max_id("video", "m1")
    with db.Session.begin() as s:
        assert claim_job(s, reindex.id, "w", 60) is not None
        complete_ingest(
            s,
            reindex.id,
            video_id,
            model_version="m1",
            segments=segments(3, seed=1),
            video_vector=unit(10),
        )
        new = get_segments(s, video_id, "m1")
    assert len(new) == 3 and min(g.id for g in new) > max(old_ids)
    assert np.array_equal(new[0].as_array(), segments(3, seed=1)[0][3])
    assert sorted(source.tombstones("segment", "m1").ids.tolist()) == old_ids
    assert source.tombstones("video", "m1").ids.tolist() == [old_video_id]
    assert source.count("segment", "m1") == 3 and source.count("video", "m1") == 1


def test_fail_job_transient_requeues_and_permanent_fails_the_video(queued):
    db, video_id, job_id = queued
    with db.Session.begin() as s:
        claim_job(s, job_id, "w1", 60)
        job = fail_job(s, job_id, "broker hiccup", permanent=False, owner="w1")
        assert (job.status, job.error, job.lease_owner) == (JobStatus.QUEUED, "broker hiccup", None)
        assert get_video(s, video_id).status is VideoStatus.PENDING
    with db.Session.begin() as s:
        claim_job(s, job_id, "w2", 60)
        with pytest.raises(LeaseLostError):
            fail_job(s, job_id, "not mine", permanent=True, owner="w1")
    with db.Session.begin() as s:
        job = fail_job(s, job_id, "not a video file", permanent=True, owner="w2")
        assert job.status is JobStatus.FAILED and job.attempts == 2
        video = get_video(s, video_id)
        assert (video.status, video.error) == (VideoStatus.FAILED, "not a video file")
        assert claim_job(s, job_id, "w3", 60) is None  # a failed job is not run again


def test_late_failure_after_success_is_ignored(queued):
    db, video_id, job_id = queued
    with db.Session.begin() as s:
        claim_job(s, job_id, "w1", 60)
        complete_ingest(
            s, job_id, video_id, model_version="m1", segments=segments(2), video_vector=unit(1)
        )
    with db.Session.begin() as s:
        assert fail_job(s, job_id, "timeout", permanent=True).status is JobStatus.SUCCEEDED
        assert get_video(s, video_id).status is VideoStatus.READY
        assert claim_job(s, job_id, "w2", 60) is None


def test_reconciler_finds_expired_leases_and_requeues_them(queued):
    db, video_id, job_id = queued
    with db.Session.begin() as s:
        claim_job(s, job_id, "dead-worker", 60, now=T0)
    with db.Session.begin() as s:
        assert expired_jobs(s, T0 + timedelta(seconds=30)) == []
        expired = expired_jobs(s, T0 + timedelta(seconds=61))
        assert [j.id for j in expired] == [job_id]
        job = requeue_job(s, job_id)
        assert (job.status, job.lease_owner, job.error) == (JobStatus.QUEUED, None, "lease expired")
        assert get_video(s, video_id).status is VideoStatus.PENDING
    with db.Session.begin() as s:
        assert expired_jobs(s, T0 + timedelta(days=1)) == []


def test_a_job_that_keeps_losing_its_worker_fails_after_max_attempts(queued):
    db, video_id, job_id = queued
    for attempt in range(2):
        with db.Session.begin() as s:
            now = T0 + timedelta(minutes=10 * attempt)
            assert claim_job(s, job_id, f"w{attempt}", 60, now=now, max_attempts=2) is not None
    with db.Session.begin() as s:
        assert claim_job(s, job_id, "w9", 60, now=T0 + timedelta(hours=1), max_attempts=2) is None
        job = get_job(s, job_id)
        assert job.status is JobStatus.FAILED and "gave up after 2 attempts" in job.error
        assert get_video(s, video_id).status is VideoStatus.FAILED


def test_completion_for_a_deleted_video_is_refused_and_writes_nothing(queued):
    db, video_id, job_id = queued
    with db.Session.begin() as s:
        claim_job(s, job_id, "w1", 60)
    with db.Session.begin() as s:
        delete_video(s, video_id)
    with pytest.raises(ConflictError), db.Session.begin() as s:
        complete_ingest(
            s, job_id, video_id, model_version="m1", segments=segments(2), video_vector=unit(1)
        )
    with db.Session.begin() as s:
        assert n_rows(s, Segment, video_id) == 0
        assert get_job(s, job_id).status is JobStatus.FAILED


@pytest.mark.parametrize(
    ("segs", "video_vector", "error"),
    [
        ([(0, 0.0, 4.0, unit(1).astype(np.float64))], unit(2), TypeError),
        ([(0, 0.0, 4.0, unit(1) * 2)], unit(2), InvalidArgumentError),  # not unit norm
        ([(0, 0.0, 4.0, unit(1, d=8))], unit(2), InvalidArgumentError),  # d differs
        ([(0, 0.0, 4.0, unit(1)), (0, 4.0, 8.0, unit(2))], unit(3), InvalidArgumentError),
        ([(0, 4.0, 4.0, unit(1))], unit(2), InvalidArgumentError),  # empty window
        ([(0, 0.0, 4.0, np.full(D, np.nan, np.float32))], unit(2), InvalidArgumentError),
        ([(0, 0.0, 4.0, unit(1)[None])], unit(2), InvalidArgumentError),  # (1, d)
    ],
)
def test_complete_ingest_rejects_bad_vectors(queued, segs, video_vector, error):
    db, video_id, job_id = queued
    with pytest.raises(error), db.Session.begin() as s:
        complete_ingest(
            s, job_id, video_id, model_version="m1", segments=segs, video_vector=video_vector
        )


def test_a_model_version_keeps_one_dimension(db, queued):
    _, video_id, job_id = queued
    with db.Session.begin() as s:
        complete_ingest(
            s, job_id, video_id, model_version="m1", segments=segments(2), video_vector=unit(1)
        )
        _, job2, _ = register_video(
            s, uri="/b.mp4", content_sha256=hashlib.sha256(b"b").hexdigest(), size_bytes=1
        )
    with pytest.raises(InvalidArgumentError, match="d=16"), db.Session.begin() as s:
        complete_ingest(
            s,
            job2.id,
            job2.video_id,
            model_version="m1",
            segments=segments(2, d=32),
            video_vector=unit(1, d=32),
        )
    with db.Session.begin() as s:  # another model version may have another dimension
        complete_ingest(
            s,
            job2.id,
            job2.video_id,
            model_version="m2",
            segments=segments(2, d=32),
            video_vector=unit(1, d=32),
        )


def test_concurrent_claims_grant_the_job_once(queued):
    db, _, job_id = queued
    n = 4
    barrier = threading.Barrier(n)
    granted: list[str] = []
    errors: list[BaseException] = []

    def claim(owner: str) -> None:
        try:
            barrier.wait()
            with db.Session.begin() as s:
                if claim_job(s, job_id, owner, 60) is not None:
                    granted.append(owner)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(granted) == 1
    with db.Session.begin() as s:
        job = get_job(s, job_id)
        assert (job.lease_owner, job.attempts) == (granted[0], 1)
