"""SqlVectorSource: the VectorSource contract over SQL, bit-exact and in id order."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest
from sqlalchemy import event

from services.index.source import VectorSource
from services.store import (
    SqlVectorSource,
    complete_ingest,
    delete_video,
    get_segments,
    register_video,
    vector_source,
)

D = 32


def vectors(n: int, seed: int, d: int = D) -> np.ndarray:
    xb = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)  # (n, d)
    return xb / np.linalg.norm(xb, axis=1, keepdims=True)


def ingest(session, name: str, xb: np.ndarray, model_version: str = "m1") -> tuple[int, list[int]]:
    """Register a video and complete its ingest with these segment vectors -> (video id,
    segment ids)."""
    video, job, _ = register_video(
        session, uri=f"/{name}.mp4", content_sha256=hashlib.sha256(name.encode()).hexdigest(),
        size_bytes=1,
    )  # fmt: skip
    mean = xb.mean(axis=0)
    complete_ingest(
        session,
        job.id,
        video.id,
        model_version=model_version,
        segments=[(i, 4.0 * i, 4.0 * i + 4, x) for i, x in enumerate(xb)],
        video_vector=(mean / np.linalg.norm(mean)).astype(np.float32),
    )
    return video.id, [g.id for g in get_segments(session, video.id, model_version)]


def collect(source, level, model_version, **kw) -> tuple[np.ndarray, np.ndarray, list[int]]:
    batches = list(source.iter_vectors(level, model_version, **kw))
    if not batches:
        return np.zeros(0, np.int64), np.zeros((0, D), np.float32), []
    ids = np.concatenate([b.ids for b in batches])
    xb = np.concatenate([b.xb for b in batches])
    return ids, xb, [len(b.ids) for b in batches]


def test_is_a_vector_source(db):
    source: VectorSource = vector_source(db)
    assert isinstance(source, SqlVectorSource)
    assert source.count("segment", "m1") == 0 and source.max_id("segment", "m1") == 0
    assert list(source.iter_vectors("segment", "m1")) == []
    assert source.max_tombstone_seq() == 0
    tomb = source.tombstones("video", "m1")
    assert tomb.ids.dtype == np.int64 and len(tomb.ids) == 0 and tomb.last_seq == 0
    with pytest.raises(ValueError, match="level"):
        source.count("frame", "m1")  # type: ignore[arg-type]


def test_iter_vectors_after_id_returns_exactly_the_newer_rows_bit_for_bit(db):
    xa, xb_new = vectors(7, seed=1), vectors(5, seed=2)
    with db.Session.begin() as s:
        _, ids_a = ingest(s, "a", xa)
    source = vector_source(db)
    watermark = source.max_id("segment", "m1")
    assert watermark == max(ids_a)
    with db.Session.begin() as s:
        _, ids_b = ingest(s, "b", xb_new)

    ids, xb, sizes = collect(source, "segment", "m1", after_id=watermark, batch_size=2)
    assert ids.tolist() == ids_b and sizes == [2, 2, 1]
    assert ids.dtype == np.int64 and xb.dtype == np.float32 and xb.shape == (5, D)
    assert xb.tobytes() == xb_new.tobytes()  # bit for bit
    assert xb.flags.writeable and xb.flags.c_contiguous

    ids, xb, sizes = collect(source, "segment", "m1", batch_size=5)
    assert ids.tolist() == ids_a + ids_b and np.all(np.diff(ids) > 0)
    assert sizes == [5, 5, 2]
    assert xb.tobytes() == np.concatenate([xa, xb_new]).tobytes()
    assert collect(source, "segment", "m1", after_id=int(ids[-1]))[2] == []


def test_count_and_max_id_per_level_and_model_version(db):
    with db.Session.begin() as s:
        _, ids_a = ingest(s, "a", vectors(3, seed=1), model_version="m1")
        _, ids_b = ingest(s, "b", vectors(4, seed=2), model_version="m1")
        _, ids_c = ingest(s, "c", vectors(6, seed=3, d=8), model_version="m2")
    source = vector_source(db)
    assert source.count("segment", "m1") == 7 and source.count("segment", "m2") == 6
    assert source.count("video", "m1") == 2 and source.count("video", "m2") == 1
    assert source.max_id("segment", "m1") == max(ids_b)
    assert source.max_id("segment", "m2") == max(ids_c)
    assert source.count("segment", "m3") == 0 and source.max_id("video", "m3") == 0
    ids, xb, _ = collect(source, "segment", "m2")
    assert ids.tolist() == ids_c and xb.shape == (6, 8)
    video_ids, _, _ = collect(source, "video", "m1")
    assert len(video_ids) == 2 and source.max_id("video", "m1") == int(video_ids[-1])


def test_tombstones_after_seq(db):
    with db.Session.begin() as s:
        va, ids_a = ingest(s, "a", vectors(3, seed=1))
        vb, ids_b = ingest(s, "b", vectors(2, seed=2))
        vc, ids_c = ingest(s, "c", vectors(2, seed=3, d=8), model_version="m2")
    source = vector_source(db)
    start = source.max_tombstone_seq()
    with db.Session.begin() as s:
        delete_video(s, va)
    middle = source.max_tombstone_seq()
    assert middle == start + 3 + 1  # three segments and one video vector
    with db.Session.begin() as s:
        delete_video(s, vb)
        delete_video(s, vc)

    first = source.tombstones("segment", "m1", after_seq=start)
    assert first.ids.tolist() == ids_a + ids_b
    assert first.last_seq == source.max_tombstone_seq()
    assert source.tombstones("segment", "m1", after_seq=middle).ids.tolist() == ids_b
    assert source.tombstones("segment", "m2", after_seq=middle).ids.tolist() == ids_c
    assert len(source.tombstones("video", "m1", after_seq=start).ids) == 2
    statements: list[str] = []
    listen = (db.ReadSession.kw["bind"], "before_cursor_execute",
              lambda conn, cursor, sql, *rest: statements.append(sql))  # fmt: skip
    event.listen(*listen)
    try:
        caught_up = source.tombstones("segment", "m1", after_seq=first.last_seq)
    finally:
        event.remove(*listen)
    assert len(caught_up.ids) == 0 and caught_up.last_seq == first.last_seq
    # caught up (the keeper's idle sync, every second per level): the log's head only
    assert [q for q in statements if "vector_tombstones" in q] == statements[-1:]
    assert "max" in statements[-1].lower()
    assert source.count("segment", "m1") == 0 and list(source.iter_vectors("segment", "m1")) == []


def test_ids_are_never_reused_after_the_newest_row_is_deleted(db):
    with db.Session.begin() as s:
        va, ids_a = ingest(s, "a", vectors(3, seed=1))
        delete_video(s, va)
    with db.Session.begin() as s:
        _, ids_b = ingest(s, "b", vectors(3, seed=2))
    assert min(ids_b) > max(ids_a)


def test_vector_writers_commit_in_id_order(db):
    """A second writer waits for the first's commit, so no id can become visible below a
    watermark that a reader already passed."""
    first = db.Session()
    first.begin()
    try:
        _, ids_a = ingest(first, "a", vectors(2, seed=1))
        out: dict[str, list[int]] = {}

        def second() -> None:
            with db.Session.begin() as s:
                out["ids"] = ingest(s, "b", vectors(2, seed=2))[1]

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert t.is_alive(), "the second writer must wait for the first to commit"
        source = vector_source(db)
        assert source.max_id("segment", "m1") == 0  # readers are not blocked, see nothing yet
        first.commit()
        t.join(30)
        assert min(out["ids"]) > max(ids_a)
        assert collect(source, "segment", "m1")[0].tolist() == ids_a + out["ids"]
    finally:
        first.close()  # rolls back if the test failed before the commit


def test_search_hits_map_back_to_segments_and_videos(db):
    from services.store import segments_by_ids, video_embeddings_by_ids

    with db.Session.begin() as s:
        video_id, ids = ingest(s, "a", vectors(3, seed=1))
    source = vector_source(db)
    video_vector_id = source.max_id("video", "m1")
    with db.ReadSession() as s:
        hits = segments_by_ids(s, [ids[2], ids[0], 10**9])
        assert sorted(hits) == [ids[0], ids[2]]  # a deleted or unknown id is just absent
        assert (hits[ids[2]].video_id, hits[ids[2]].start_s, hits[ids[2]].end_s) == (
            video_id,
            8.0,
            12.0,
        )
        assert video_embeddings_by_ids(s, [video_vector_id])[video_vector_id].video_id == video_id
