"""Videos: idempotent registration (also under concurrency), deletion, listing."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest
from sqlalchemy import func, select

import services.store.videos as videos_module
from services.errors import InvalidArgumentError, NotFoundError
from services.store import (
    Job,
    JobStatus,
    SegmentVector,
    Video,
    VideoStatus,
    claim_job,
    complete_ingest,
    delete_video,
    fail_job,
    get_video,
    list_videos,
    register_video,
    set_tags,
    vector_source,
)


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def unit(d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    return x / np.linalg.norm(x)


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_register_new_video_queues_one_ingest_job(db):
    with db.Session.begin() as s:
        video, job, created = register_video(
            s,
            uri="/videos/a.mp4",
            content_sha256=sha(1).upper(),
            size_bytes=1234,
            title="A",
            collection="holiday",
            tags=["beach", " sun ", "beach"],
        )
    assert created is True
    assert video.status is VideoStatus.PENDING
    assert video.content_sha256 == sha(1)  # normalised to lower case
    assert video.tags == ["beach", "sun"]
    assert job is not None and job.status is JobStatus.QUEUED and job.video_id == video.id
    assert job.kind.value == "ingest"


def test_reregistering_the_same_bytes_returns_the_same_video_and_no_job(db):
    with db.Session.begin() as s:
        first, _, _ = register_video(s, uri="/a.mp4", content_sha256=sha(1), size_bytes=10)
    with db.Session.begin() as s:
        again, job, created = register_video(
            s, uri="/copy/of/a.mp4", content_sha256=sha(1), size_bytes=10, title="other"
        )
    assert (again.id, job, created) == (first.id, None, False)
    with db.Session.begin() as s:
        assert count(s, Video) == 1 and count(s, Job) == 1
        assert get_video(s, first.id).uri == "/a.mp4"  # the existing video, unchanged


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content_sha256": "abc"},
        {"content_sha256": "g" * 64},
        {"uri": ""},
        {"size_bytes": -1},
        {"tags": "notalist"},
        {"tags": [""]},
    ],
)
def test_register_rejects_bad_arguments(db, kwargs):
    args = {"uri": "/a.mp4", "content_sha256": sha(1), "size_bytes": 1, **kwargs}
    with db.Session.begin() as s, pytest.raises(InvalidArgumentError):
        register_video(s, **args)


def test_concurrent_registrations_of_the_same_bytes_make_one_video(db):
    n = 6
    barrier = threading.Barrier(n)
    results: list[tuple[int, bool, bool]] = []
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            barrier.wait()
            with db.Session.begin() as s:
                video, job, created = register_video(
                    s, uri=f"/w{i}.mp4", content_sha256=sha("same"), size_bytes=5
                )
                results.append((video.id, job is not None, created))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({r[0] for r in results}) == 1
    assert sorted(r[2] for r in results) == [False] * (n - 1) + [True]
    assert sum(r[1] for r in results) == 1
    with db.Session.begin() as s:
        assert count(s, Video) == 1 and count(s, Job) == 1


def test_a_registration_waits_for_a_concurrent_one_and_returns_its_row(db):
    """Two transactions interleaved: the second commits after the first, sees its row."""
    first = db.Session()
    first.begin()
    try:
        mine, _, _ = register_video(first, uri="/a.mp4", content_sha256=sha(7), size_bytes=1)
        out: dict[str, object] = {}

        def second() -> None:
            with db.Session.begin() as s:
                video, job, created = register_video(
                    s, uri="/b.mp4", content_sha256=sha(7), size_bytes=1
                )
                out["result"] = (video.id, job, created)

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert t.is_alive(), "the second registration must wait for the first transaction"
        first.commit()
        t.join(30)
        assert out["result"] == (mine.id, None, False)
    finally:
        first.close()  # rolls back if the test failed before the commit


def test_insert_race_rolls_back_to_a_savepoint_and_returns_the_winner(db, monkeypatch):
    """The IntegrityError path: the pre-check misses a row that the INSERT then hits."""
    with db.Session.begin() as s:
        winner, _, _ = register_video(s, uri="/a.mp4", content_sha256=sha(3), size_bytes=1)
    real = videos_module.find_video_by_sha
    calls = {"n": 0}

    def miss_once(session, content_sha256, **kw):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(session, content_sha256, **kw)

    monkeypatch.setattr(videos_module, "find_video_by_sha", miss_once)
    with db.Session.begin() as s:
        other, _, _ = register_video(s, uri="/o.mp4", content_sha256=sha(4), size_bytes=1)
        calls["n"] = 0
        video, job, created = register_video(s, uri="/b.mp4", content_sha256=sha(3), size_bytes=1)
        # The outer transaction survived the failed INSERT: earlier work is still there.
        assert get_video(s, other.id).uri == "/o.mp4"
    assert calls["n"] == 2
    assert (video.id, job, created) == (winner.id, None, False)
    with db.Session.begin() as s:
        assert count(s, Video) == 2 and count(s, Job) == 2


def test_failed_video_is_requeued_when_registered_again(db):
    with db.Session.begin() as s:
        video, job, _ = register_video(s, uri="/bad.mp4", content_sha256=sha(5), size_bytes=1)
    with db.Session.begin() as s:
        claim_job(s, job.id, "w1", 60)
        fail_job(s, job.id, "moov atom not found", permanent=True)
    with db.Session.begin() as s:
        v = get_video(s, video.id)
        assert (v.status, v.error) == (VideoStatus.FAILED, "moov atom not found")
    with db.Session.begin() as s:
        again, new_job, created = register_video(
            s, uri="/fixed.mp4", content_sha256=sha(5), size_bytes=1
        )
    assert (again.id, created) == (video.id, False)
    assert new_job is not None and new_job.id != job.id and new_job.status is JobStatus.QUEUED
    assert (again.status, again.error, again.uri) == (VideoStatus.PENDING, None, "/fixed.mp4")


def test_delete_video_tombstones_vectors_and_fails_active_jobs(db):
    with db.Session.begin() as s:
        video, job, _ = register_video(s, uri="/a.mp4", content_sha256=sha(6), size_bytes=1)
        complete_ingest(
            s,
            job.id,
            video.id,
            model_version="m1",
            segments=[SegmentVector(i, 4.0 * i, 4.0 * i + 4, unit(8, i)) for i in range(3)],
            video_vector=unit(8, 99),
        )
        _, job2, _ = register_video(s, uri="/b.mp4", content_sha256=sha(60), size_bytes=1)
        video2_id = job2.video_id
    source = vector_source(db)
    seg_ids = [b.ids for b in source.iter_vectors("segment", "m1")][0].tolist()
    vid_ids = [b.ids for b in source.iter_vectors("video", "m1")][0].tolist()
    before = source.max_tombstone_seq()

    with db.Session.begin() as s:
        delete_video(s, video.id)
        delete_video(s, video2_id)  # no vectors yet: its queued job is failed instead
    assert source.count("segment", "m1") == 0 and source.count("video", "m1") == 0
    assert source.tombstones("segment", "m1", after_seq=before).ids.tolist() == seg_ids
    assert source.tombstones("video", "m1", after_seq=before).ids.tolist() == vid_ids
    seq = source.max_tombstone_seq()
    assert seq == before + 4
    with db.Session.begin() as s:
        with pytest.raises(NotFoundError):
            get_video(s, video.id)
        assert get_video(s, video.id, include_deleted=True).status is VideoStatus.DELETED
        j2 = s.get(Job, job2.id)
        assert (j2.status, j2.error) == (JobStatus.FAILED, "video deleted")
        delete_video(s, video.id)  # twice: a no-op
        with pytest.raises(NotFoundError):
            delete_video(s, 10**9)
    assert source.max_tombstone_seq() == seq


def test_deleted_video_is_revived_by_registering_its_bytes(db):
    with db.Session.begin() as s:
        video, _, _ = register_video(
            s, uri="/a.mp4", content_sha256=sha(8), size_bytes=1, tags=["old"], title="old"
        )
        delete_video(s, video.id)
    with db.Session.begin() as s:
        again, job, created = register_video(
            s, uri="/new.mp4", content_sha256=sha(8), size_bytes=1, tags=["new"], title="new"
        )
    assert (again.id, created) == (video.id, True)
    assert job is not None and job.status is JobStatus.QUEUED
    assert (again.status, again.uri, again.title, again.tags) == (
        VideoStatus.PENDING,
        "/new.mp4",
        "new",
        ["new"],
    )


@pytest.fixture
def library(db):
    """25 videos: collections a/b alternating, tag "red" on every third, "blue" on the rest,
    the first 10 READY, video #24 DELETED."""
    ids = []
    with db.Session.begin() as s:
        for i in range(25):
            v, _, _ = register_video(
                s,
                uri=f"/lib/{i}.mp4",
                content_sha256=sha(f"lib{i}"),
                size_bytes=i,
                collection="ab"[i % 2],
                tags=["red"] if i % 3 == 0 else ["blue"],
            )
            if i < 10:
                v.status = VideoStatus.READY
            ids.append(v.id)
        delete_video(s, ids[24])
    return db, ids


def _all_pages(session, **kw) -> tuple[list[int], int]:
    seen, token, pages = [], None, 0
    while True:
        page, token = list_videos(session, page_token=token, **kw)
        seen += [v.id for v in page]
        pages += 1
        if token is None:
            return seen, pages


def test_list_videos_pages_through_everything_once(library):
    db, ids = library
    with db.Session.begin() as s:
        seen, pages = _all_pages(s, page_size=7)
        assert seen == ids[:24]  # in id order, each once, the deleted one left out
        assert pages == 4
        first, token = list_videos(s, page_size=24)
        assert len(first) == 24 and token is None
        deleted, _ = list_videos(s, status="DELETED")
        assert [v.id for v in deleted] == [ids[24]]


def test_list_videos_filters(library):
    db, ids = library
    live = range(24)
    with db.Session.begin() as s:
        assert _all_pages(s, collection="a", page_size=5)[0] == [ids[i] for i in live if i % 2 == 0]
        assert _all_pages(s, tag="red", page_size=2)[0] == [ids[i] for i in live if i % 3 == 0]
        ready = _all_pages(s, status=VideoStatus.READY, page_size=3)[0]
        assert ready == ids[:10]
        both = _all_pages(s, collection="b", tag="red", page_size=1)[0]
        assert both == [ids[i] for i in live if i % 2 == 1 and i % 3 == 0]
        assert _all_pages(s, tag="green")[0] == []
        assert _all_pages(s, status="PENDING", collection="a")[0] == [
            ids[i] for i in range(10, 24) if i % 2 == 0
        ]


def test_list_videos_sees_tag_changes_and_rejects_bad_arguments(library):
    db, ids = library
    with db.Session.begin() as s:
        set_tags(s, ids[1], ["red", "green"])
    with db.Session.begin() as s:
        assert [v.id for v in list_videos(s, tag="green")[0]] == [ids[1]]
        for bad in ({"page_token": "not-a-token"}, {"page_size": 0}, {"status": "NOPE"}):
            with pytest.raises(InvalidArgumentError):
                list_videos(s, **bad)
