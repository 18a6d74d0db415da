"""Worker pieces without processes: the reconciler over the real store (both databases),
the task's transient-fault handling, back-off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from services.jobs import reconcile_once
from services.store import Job, JobStatus, claim_job, register_video
from services.store.models import utcnow
from workers import resources, tasks


class RecordingDispatcher:
    """Stands in for the broker: records what would be sent, marks nothing."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, job_ids):
        self.sent.extend(job_ids)
        return list(job_ids)


def _video(db, n: int) -> int:
    with db.Session.begin() as s:
        _, job, _ = register_video(s, uri=f"/v/{n}.mp4", content_sha256=f"{n:064x}", size_bytes=10)
        return job.id


def test_reconciler_resends_lost_and_abandoned_jobs(db):
    lost, abandoned, fresh, running = (_video(db, n) for n in range(4))
    hour_ago = utcnow() - timedelta(hours=1)
    with db.Session.begin() as s:
        # `lost`: queued an hour ago, never claimed (its message vanished).
        s.execute(update(Job).where(Job.id == lost).values(queued_at=hour_ago))
        # `abandoned`: claimed by a worker that died; its lease ran out.
        claim_job(s, abandoned, "dead-worker", 1.0, now=hour_ago)
        # `running`: claimed by a live worker.
        claim_job(s, running, "live-worker", 600.0)
        s.execute(update(Job).where(Job.id.in_([abandoned, running])).values(queued_at=hour_ago))
    d = RecordingDispatcher()
    report = reconcile_once(db, d, dispatch_timeout_s=600)
    assert report.requeued == [abandoned]
    assert sorted(d.sent) == sorted([lost, abandoned])  # not `fresh`, not `running`
    with db.ReadSession.begin() as s:
        assert s.get(Job, abandoned).status is JobStatus.QUEUED
        assert s.get(Job, running).status is JobStatus.RUNNING
    assert fresh not in d.sent


def test_backoff_grows_and_is_capped():
    assert [tasks.backoff_s(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert tasks.backoff_s(20) == 60.0


def test_database_down_is_retried_up_to_the_cap(monkeypatch):
    calls = []

    def down():
        calls.append(1)
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(resources, "store", down)
    monkeypatch.setattr(resources, "embedder", lambda: None)
    # apply() runs the retries eagerly (count-downs not slept): 1 try + MAX_RETRIES retries,
    # then the error surfaces. The job itself stays in SQL for the reconciler.
    result = tasks.ingest_video.apply(args=[1])
    assert len(calls) == tasks.MAX_RETRIES + 1
    assert result.state == "FAILURE"
    assert isinstance(result.result, OperationalError)


def test_unexpected_errors_are_not_swallowed(monkeypatch):
    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr(resources, "store", broken)
    monkeypatch.setattr(resources, "embedder", lambda: None)
    calls = []
    monkeypatch.setattr(resources, "store", lambda: calls.append(1) or broken())
    result = tasks.ingest_video.apply(args=[1])
    assert result.state == "FAILURE" and len(calls) == 1  # a bug is not retried
    with pytest.raises(RuntimeError):
        result.get(propagate=True)
