"""Ingest through real worker processes, on both stacks:

    embedded:        SQLite + kombu's SQLAlchemy broker on SQLite (no server)
    redis-postgres:  PostgreSQL (127.0.0.1:5432) + a Redis server started by the test

`sora ingest` registers and sends, `sora worker` processes embed and write; faults are real
(SIGKILL of a worker mid-job, a Redis restart that loses its queue)."""

from __future__ import annotations

import math
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.index import IndexSet
from services.store import Job, JobStatus, Segment, Video, VideoEmbedding, VideoStatus, open_store
from tests.conftest import _empty_database
from tests.media_factory import make_video
from tests.workers_harness import IngestEnv, RedisServer, wait_for, wait_for_progress

pytestmark = pytest.mark.slow

STALL_S = 120.0  # no job or worker log moving for this long: the test is stuck
DURATIONS = {"a.mp4": 9.0, "b.mp4": 3.0, "c.mp4": 5.0, "d.mp4": 1.5}
SOURCES = ("testsrc2", "mandelbrot", "smptebars", "rgbtestsrc")


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("library")
    for (name, dur), src in zip(DURATIONS.items(), SOURCES, strict=True):
        make_video(d / name, duration_s=dur, source=src, size=(192, 144))
    (d / "sub").mkdir()
    make_video(d / "sub" / "e.mkv", duration_s=2.0, source="testsrc2", size=(128, 96))
    (d / "notes.txt").write_text("not a video, and not picked up by its extension")
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    return d


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    # Long enough (30 segments) that a worker is reliably caught in the middle of it.
    d = tmp_path_factory.mktemp("long")
    return make_video(d / "long.mp4", duration_s=120.0, fps=10, source="testsrc2", size=(160, 120))


@pytest.fixture(params=["embedded", "redis-postgres"])
def env(request, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    redis = None
    with _empty_database(
        "sqlite" if request.param == "embedded" else "postgresql", tmp_path, request
    ) as db_url:
        if request.param == "embedded":
            broker = f"sqla+sqlite:///{home / 'broker.db'}"
        else:
            redis = RedisServer(tmp_path)
            redis.start()
            broker = redis.url
        e = IngestEnv(home=home, database_url=db_url, broker_url=broker)
        e.redis = redis
        try:
            yield e
        finally:
            e.stop_workers()
            if redis is not None:
                redis.kill()


def video_rows(store) -> dict[str, Video]:
    with store.ReadSession.begin() as s:
        return {Path(v.uri).name: v for v in s.scalars(select(Video))}


def segment_counts(store) -> Counter:
    with store.ReadSession.begin() as s:
        return Counter(dict(s.execute(
            select(Segment.video_id, func.count()).group_by(Segment.video_id)
        ).all()))  # fmt: skip


def ingest_progress(env: IngestEnv, store) -> tuple:
    """What moves while workers start and ingest: jobs' states and progress, log sizes."""
    with store.ReadSession.begin() as s:
        jobs = tuple(s.execute(select(Job.id, Job.status, Job.attempts, Job.progress_done)))
    return jobs, tuple(p.stat().st_size for p in sorted(env.home.glob("worker-*.log")))


def assert_exactly_once(store, durations: dict[str, float]) -> None:
    videos = video_rows(store)
    counts = segment_counts(store)
    for name, dur in durations.items():
        v = videos[name]
        assert v.status is VideoStatus.READY, (name, v.status, v.error)
        assert counts[v.id] == math.ceil(dur / 4.0), (name, counts[v.id])
    with store.ReadSession.begin() as s:
        per_video = Counter(s.scalars(select(VideoEmbedding.video_id)))
    assert all(n == 1 for n in per_video.values()), per_video


def assert_index_aligned(env: IngestEnv, store) -> IndexSet:
    with store.ReadSession.begin() as s:
        versions = set(s.scalars(select(Segment.model_version)))
    assert len(versions) == 1
    indexes = IndexSet(store, versions.pop(), env.home / "index")
    statuses = indexes.sync()
    assert {st.level for st in statuses} == {"segment", "video"}
    for st in statuses:
        assert st.ntotal == st.sql_count > 0, st
    return indexes


def test_ingest_folder_then_reingest_is_a_no_op(env, library):
    env.start_worker()
    res = env.sora(
        "ingest", "--direct", str(library), "--wait", "--timeout", "150", "--collection", "lib",
        "--external-id-from", "name", "--meta", "shoot=day1",
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr + env.worker_logs()  # broken.mp4 failed
    assert "6 video(s): 6 queued, 0 already known" in res.stdout
    assert "FAILED" in res.stderr and "broken.mp4" in res.stderr

    store = open_store(env.database_url)
    expected = {**DURATIONS, "e.mkv": 2.0}
    assert_exactly_once(store, expected)
    videos = video_rows(store)
    broken = videos["broken.mp4"]
    assert broken.status is VideoStatus.FAILED and broken.error  # the reason is kept
    assert "notes.txt" not in videos
    assert {v.collection for v in videos.values()} == {"lib"}
    # asset ids and metadata on the direct path too (issue 10)
    assert all(v.external_id == name for name, v in videos.items()), videos
    assert all(v.original_name == name for name, v in videos.items())
    with store.ReadSession.begin() as s:
        metas = [s.get(Video, v.id).user_metadata for v in videos.values()]
    assert metas == [{"shoot": "day1"}] * len(videos)
    with store.ReadSession.begin() as s:
        jobs = s.scalars(select(Job).where(Job.video_id == broken.id)).all()
    assert [(j.status, j.attempts) for j in jobs] == [(JobStatus.FAILED, 1)]  # no retry
    # Index lines printed by the CLI agree with SQL.
    n_segments = sum(math.ceil(d / 4.0) for d in expected.values())
    assert f"{n_segments} vectors (SQL: {n_segments})" in res.stdout

    # The index is a cache: a corrupt or missing snapshot is rebuilt from SQL, aligned.
    snapshots = sorted((env.home / "index").glob("*.faiss"))
    assert len(snapshots) == 2  # segment and video level
    snapshots[0].write_bytes(b"garbage" + snapshots[0].read_bytes()[7:])
    snapshots[1].unlink()
    reasons = {
        level: index.last_load.rebuilt_reason
        for level, index in assert_index_aligned(env, store).indexes.items()
    }
    assert all(reasons.values()), reasons  # both rebuilt, neither served as loaded
    # And a sound snapshot is loaded, not rebuilt.
    reasons = {
        level: index.last_load.rebuilt_reason
        for level, index in assert_index_aligned(env, store).indexes.items()
    }
    assert not any(reasons.values()), reasons

    # Identical bytes again, under another name too: no new video, no new job for READY ones.
    (library / "copy-of-a.mp4").write_bytes((library / "a.mp4").read_bytes())
    try:
        again = env.sora("ingest", "--direct", str(library), "--timeout", "60")
    finally:
        (library / "copy-of-a.mp4").unlink()
    assert again.returncode == 0, again.stderr
    # 7 files: the 5 READY ones and the copy are known; broken.mp4 (FAILED) is re-queued.
    assert "7 video(s): 1 queued, 6 already known" in again.stdout
    with store.ReadSession.begin() as s:
        assert s.scalar(select(func.count()).select_from(Video)) == 6
    # An external id that other bytes hold is refused, saying which video holds it.
    taken = env.sora("ingest", "--direct", str(library / "b.mp4"), "--collection", "lib",
                     "--external-id", "a.mp4", "--timeout", "60")  # fmt: skip
    assert taken.returncode == 2 and f"names video {videos['a.mp4'].id}" in taken.stderr
    assert_exactly_once(store, expected)
    store.dispose()


def test_worker_killed_mid_job_loses_nothing(env, library, long_video):
    store = open_store(env.database_url)
    first = env.start_worker()
    res = env.sora("ingest", "--direct", str(long_video), *(str(library / n) for n in DURATIONS))
    assert res.returncode == 0, res.stderr

    def long_job_running():
        with store.ReadSession.begin() as s:
            job = s.scalar(select(Job).join(Video).where(Video.uri.like("%long.mp4")))
            return job is not None and job.status is JobStatus.RUNNING and job.progress_done >= 1

    # Waits follow progress, not a deadline sized for a quiet machine (a busy one loads the
    # model and encodes several times slower); they fail once nothing moves for STALL_S.
    progress = lambda: ingest_progress(env, store)  # noqa: E731
    wait_for_progress(long_job_running, progress, STALL_S, "the long job mid-way", every=0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(60)
    with store.ReadSession.begin() as s:
        assert s.scalar(select(func.count()).select_from(Segment).join(Video).where(
            Video.uri.like("%long.mp4"))) == 0  # fmt: skip  # nothing half-written

    env.start_worker()

    def all_ready():
        rows = video_rows(store)
        return len(rows) == 5 and all(v.status is VideoStatus.READY for v in rows.values())

    try:
        wait_for_progress(all_ready, progress, STALL_S, "every video READY after the kill", 0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{env.worker_logs()}") from None
    assert_exactly_once(store, {"long.mp4": 120.0, **DURATIONS})
    with store.ReadSession.begin() as s:
        long_job = s.scalar(select(Job).join(Video).where(Video.uri.like("%long.mp4")))
    assert long_job.attempts >= 2 and long_job.status is JobStatus.SUCCEEDED
    assert_index_aligned(env, store)
    store.dispose()


@pytest.mark.parametrize("env", ["redis-postgres"], indirect=True)
def test_redis_restart_loses_no_video(env, library):
    """Jobs queued in Redis, then Redis restarts empty: the reconciler re-sends them."""
    store = open_store(env.database_url)
    res = env.sora("ingest", "--direct", *(str(library / n) for n in DURATIONS))
    assert res.returncode == 0, res.stderr
    env.redis.kill()  # the queue is gone with it
    env.redis.start()  # same port, empty
    env.start_worker()
    try:
        wait_for(
            lambda: all(v.status is VideoStatus.READY for v in video_rows(store).values()),
            120, "every video READY after the Redis restart", every=0.2,
        )  # fmt: skip
    except AssertionError:
        raise AssertionError(env.worker_logs()) from None
    assert_exactly_once(store, DURATIONS)
    store.dispose()
