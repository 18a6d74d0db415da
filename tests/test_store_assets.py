"""Asset identity in the store: external ids (unique per collection among live videos),
user metadata, the client's file name and path, and the change log that brings
metadata-only edits to the search catalogue."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from sqlalchemy import func, select

from services.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from services.index import Catalogue, sync_catalogue
from services.store import (
    Job,
    SegmentVector,
    Video,
    complete_ingest,
    delete_video,
    get_video,
    get_video_by_external_id,
    list_videos,
    register_video,
    set_tags,
    video_changes,
)


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def unit(d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    return x / np.linalg.norm(x)


def ready(s, video, job) -> None:
    complete_ingest(
        s, job.id, video.id, model_version="m1",
        segments=[SegmentVector(0, 0.0, 4.0, unit(8, video.id))], video_vector=unit(8, 0),
    )  # fmt: skip


def test_a_new_video_keeps_its_external_id_metadata_and_original_path(db):
    with db.Session.begin() as s:
        video, job, created = register_video(
            s, uri="/srv/uploads/ab.mp4", content_sha256=sha(1), size_bytes=1,
            collection="trips", external_id=" A-1 ", user_metadata={" reel ": "3", "cam": ""},
            original_name="beach.mp4", original_path="/home/u/Videos/beach.mp4",
            default_title="beach",
        )  # fmt: skip
        assert created and job is not None
    with db.Session.begin() as s:
        found = get_video_by_external_id(s, "A-1", "trips")
        assert found.id == video.id
        assert (found.external_id, found.user_metadata) == ("A-1", {"reel": "3", "cam": ""})
        assert (found.original_name, found.original_path, found.title) == (
            "beach.mp4",
            "/home/u/Videos/beach.mp4",
            "beach",
        )
        with pytest.raises(NotFoundError, match="give the collection too"):
            get_video_by_external_id(s, "A-1")  # no collection: another namespace


def test_the_same_external_id_and_bytes_again_update_the_metadata_and_log_a_change(db):
    with db.Session.begin() as s:
        video, job, _ = register_video(
            s, uri="/a.mp4", content_sha256=sha(2), size_bytes=1, collection="c",
            external_id="X", title="first", tags=["t1"], user_metadata={"k": "v"},
        )  # fmt: skip
        ready(s, video, job)
        _, seq0 = video_changes(s)
    with db.Session.begin() as s:
        again, job2, created = register_video(
            s, uri="/a.mp4", content_sha256=sha(2), size_bytes=1, collection="c",
            external_id="X", user_metadata={"k": "w", "new": "1"}, default_title="stem",
        )  # fmt: skip
        assert (again.id, job2, created) == (video.id, None, False)
    with db.Session.begin() as s:
        row = get_video(s, video.id)
        # given fields replace, empty ones stay (a default title never replaces one)
        assert row.user_metadata == {"k": "w", "new": "1"}
        assert (row.title, row.tags, row.status.value) == ("first", ["t1"], "READY")
        changed, seq1 = video_changes(s, after_seq=seq0)
        assert changed == {video.id} and seq1 > seq0
    with db.Session.begin() as s:  # nothing new: no change logged
        register_video(s, uri="/a.mp4", content_sha256=sha(2), size_bytes=1, collection="c",
                       external_id="X", user_metadata={"k": "w", "new": "1"})  # fmt: skip
        assert video_changes(s, after_seq=seq1) == (set(), seq1)


def test_an_external_id_never_names_two_videos(db):
    with db.Session.begin() as s:
        first, _, _ = register_video(
            s, uri="/a.mp4", content_sha256=sha(3), size_bytes=1, collection="c", external_id="X"
        )
    with db.Session.begin() as s, pytest.raises(AlreadyExistsError, match="delete video"):
        register_video(s, uri="/b.mp4", content_sha256=sha(4), size_bytes=1, collection="c",
                       external_id="X")  # fmt: skip
    with db.Session.begin() as s, pytest.raises(AlreadyExistsError, match="one external id"):
        register_video(s, uri="/a.mp4", content_sha256=sha(3), size_bytes=1, collection="c",
                       external_id="Y")  # fmt: skip
    with db.Session.begin() as s:  # the same id in another collection is another asset
        other, _, created = register_video(
            s, uri="/b.mp4", content_sha256=sha(4), size_bytes=1, collection="d", external_id="X"
        )
        assert created and other.id != first.id
    # without a collection the id is unique too (NULLs do not escape the constraint)
    with db.Session.begin() as s:
        register_video(s, uri="/e.mp4", content_sha256=sha(5), size_bytes=1, external_id="Z")
    with db.Session.begin() as s, pytest.raises(AlreadyExistsError, match="no collection"):
        register_video(s, uri="/f.mp4", content_sha256=sha(6), size_bytes=1, external_id="Z")
    with db.Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(Video)) == 3


def test_known_bytes_without_an_id_take_the_external_id_given(db):
    with db.Session.begin() as s:
        video, _, _ = register_video(s, uri="/a.mp4", content_sha256=sha(7), size_bytes=1)
    with db.Session.begin() as s:
        again, job, created = register_video(
            s, uri="/a.mp4", content_sha256=sha(7), size_bytes=1, collection="c",
            external_id="X", tags=["x"],
        )  # fmt: skip
        assert (again.id, job, created) == (video.id, None, False)
    with db.Session.begin() as s:
        row = get_video_by_external_id(s, "X", "c")
        assert (row.id, row.collection, row.tags) == (video.id, "c", ["x"])


def test_deleting_frees_the_external_id_and_reviving_takes_it_back(db):
    with db.Session.begin() as s:
        old, _, _ = register_video(
            s, uri="/a.mp4", content_sha256=sha(8), size_bytes=1, collection="c", external_id="X"
        )
    with db.Session.begin() as s:
        delete_video(s, old.id)
    with db.Session.begin() as s:
        with pytest.raises(NotFoundError):
            get_video_by_external_id(s, "X", "c")
        new, _, created = register_video(
            s, uri="/b.mp4", content_sha256=sha(9), size_bytes=1, collection="c", external_id="X"
        )
        assert created and new.id != old.id
    with db.Session.begin() as s, pytest.raises(AlreadyExistsError):
        # reviving the old bytes under the id the new video holds now
        register_video(s, uri="/a.mp4", content_sha256=sha(8), size_bytes=1, collection="c",
                       external_id="X")  # fmt: skip
    with db.Session.begin() as s:
        revived, job, created = register_video(
            s, uri="/a.mp4", content_sha256=sha(8), size_bytes=1, collection="c",
            external_id="X-old", user_metadata={"k": "v"},
        )  # fmt: skip
        assert (revived.id, created, job is not None) == (old.id, True, True)
        assert get_video_by_external_id(s, "X-old", "c").user_metadata == {"k": "v"}


def test_concurrent_ingests_of_one_external_id_make_one_video(db):
    n = 5
    barrier = threading.Barrier(n)
    outcomes: list[str] = []

    def register(i: int) -> None:
        barrier.wait()
        try:
            with db.Session.begin() as s:
                register_video(s, uri=f"/w{i}.mp4", content_sha256=sha(f"race{i}"),
                               size_bytes=1, collection="c", external_id="RACE")  # fmt: skip
            outcomes.append("created")
        except AlreadyExistsError:
            outcomes.append("exists")
        except BaseException as e:  # noqa: BLE001 - reported below
            outcomes.append(repr(e))

    threads = [threading.Thread(target=register, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["created"] + ["exists"] * (n - 1)
    with db.Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"external_id": "x" * 256},
        {"user_metadata": {"": "v"}},
        {"user_metadata": {"k": 3}},
        {"user_metadata": {"k": "v" * 1025}},
        {"user_metadata": {f"k{i}": "v" for i in range(65)}},
    ],
)
def test_bad_external_ids_and_metadata_are_refused(db, kwargs):
    with db.Session.begin() as s, pytest.raises(InvalidArgumentError):
        register_video(s, uri="/a.mp4", content_sha256=sha(10), size_bytes=1, **kwargs)


def test_list_videos_filters_by_external_id_and_metadata(db):
    with db.Session.begin() as s:
        a, _, _ = register_video(
            s,
            uri="/a",
            content_sha256=sha(11),
            size_bytes=1,
            external_id="A",
            user_metadata={"reel": "1", "cam": "x"},
        )
        b, _, _ = register_video(
            s,
            uri="/b",
            content_sha256=sha(12),
            size_bytes=1,
            external_id="B",
            user_metadata={"reel": "1", "cam": "y"},
        )
        register_video(s, uri="/c", content_sha256=sha(13), size_bytes=1)
    with db.Session.begin() as s:

        def ids(**kw) -> list[int]:
            return [v.id for v in list_videos(s, **kw)[0]]

        assert ids(external_id="B") == [b.id]
        assert ids(user_metadata={"reel": "1"}) == [a.id, b.id]
        assert ids(user_metadata={"reel": "1", "cam": "y"}) == [b.id]
        assert ids(user_metadata={"reel": "2"}) == []
    # fmt: skip


def test_metadata_only_edits_reach_the_search_catalogue(db):
    """Neither a tag change nor an external-id update moves a vector; the catalogue still
    sees both at its next sync (the video_changes log)."""
    with db.Session.begin() as s:
        video, job, _ = register_video(s, uri="/a.mp4", content_sha256=sha(14), size_bytes=1)
        ready(s, video, job)
    catalogue = Catalogue("m1")
    sync_catalogue(catalogue, db)
    assert catalogue.video(video.id).external_id is None
    with db.Session.begin() as s:
        register_video(s, uri="/a.mp4", content_sha256=sha(14), size_bytes=1, collection="c",
                       external_id="E", user_metadata={"k": "v"})  # fmt: skip
    sync_catalogue(catalogue, db)
    info = catalogue.video(video.id)
    assert (info.external_id, info.collection, info.user_metadata) == ("E", "c", {"k": "v"})
    with db.Session.begin() as s:
        set_tags(s, video.id, ["fresh"])
    sync_catalogue(catalogue, db)
    assert catalogue.video(video.id).tags == ("fresh",)
