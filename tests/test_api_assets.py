"""Asset identity over gRPC, through a real server on port 0: external ids and user
metadata on every ingest RPC, in Video and hits, lookups, filters in ListVideos / Search /
SearchBatch, metadata-only updates reaching search, a server restart; ListEmbeddings."""

from __future__ import annotations

import os
import time

import grpc
import numpy as np
import pytest

import services.api.video_service as video_service
from services.store import complete_ingest, register_video
from tests.test_api_harness import *  # noqa: F403 - the fixtures (api, db, ...)
from tests.test_api_harness import DIM, MODEL, TOKEN, make_api, unit
from tests.test_api_services import _http_server

_n = iter(range(1, 1 << 30))


def add_asset(store, segments, *, external_id=None, collection=None, user_metadata=None):
    """A READY video with these segment vectors, an external id and user metadata."""
    xb = unit(np.asarray(segments, dtype=np.float32))
    n = next(_n)
    with store.Session.begin() as s:
        video, job, _ = register_video(
            s, uri=f"/videos/a{n}.mp4", content_sha256=f"{n + 10**6:064x}", size_bytes=n,
            collection=collection, external_id=external_id, user_metadata=user_metadata,
        )  # fmt: skip
        complete_ingest(
            s, job.id, video.id, model_version=MODEL,
            segments=[(i, 4.0 * i, 4.0 * i + 4, xb[i]) for i in range(len(xb))],
            video_vector=unit(xb.mean(axis=0)),
        )  # fmt: skip
        return video.id


def eventually(predicate, timeout=10.0):
    """Wait for the keeper's next sync to make `predicate()` true (it syncs every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not seen by the search catalogue in time"
        time.sleep(0.05)


def code(e) -> grpc.StatusCode:
    return e.value.code()


def test_upload_keeps_external_id_metadata_and_the_clients_name_and_path(api, tmp_path):
    clip = tmp_path / "my footage" / "Beach Day.mp4"
    clip.parent.mkdir()
    clip.write_bytes(os.urandom(3000))
    r = api.client.upload(clip, collection="trips", external_id="ASSET-1",
                          user_metadata={"reel": "3", "camera": "A"})  # fmt: skip
    v = api.client.get_video(r.video_id)
    assert (v.external_id, dict(v.user_metadata)) == ("ASSET-1", {"reel": "3", "camera": "A"})
    assert (v.original_name, v.original_path, v.title) == (
        "Beach Day.mp4",
        str(clip.absolute()),
        "Beach Day",
    )
    assert v.uri != v.original_path  # the server's copy, under its uploads folder
    assert api.client.get_video_by_external_id("ASSET-1", collection="trips").id == r.video_id
    with pytest.raises(grpc.RpcError) as e:
        api.client.get_video_by_external_id("ASSET-1")  # the id lives in its collection
    assert code(e) is grpc.StatusCode.NOT_FOUND and "collection" in e.value.details()

    # the same id and bytes again: an update, no second video and no job
    again = api.client.upload(clip, collection="trips", external_id="ASSET-1",
                              user_metadata={"reel": "4"})  # fmt: skip
    assert (again.video_id, again.job_id, again.created) == (r.video_id, 0, False)
    assert dict(api.client.get_video(r.video_id).user_metadata) == {"reel": "4"}
    # the same id with other bytes: ALREADY_EXISTS, saying what to do
    other = tmp_path / "other.mp4"
    other.write_bytes(os.urandom(3000))
    with pytest.raises(grpc.RpcError) as e:
        api.client.upload(other, collection="trips", external_id="ASSET-1")
    assert code(e) is grpc.StatusCode.ALREADY_EXISTS
    assert f"names video {r.video_id}" in e.value.details() and "delete" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        api.client.get_video_by_external_id("x" * 300, collection="trips")
    assert code(e) is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        api.client.upload(other, user_metadata={"k": "v" * 2000})
    assert code(e) is grpc.StatusCode.INVALID_ARGUMENT and "1024" in e.value.details()


def test_server_paths_urls_and_bulk_keep_ids_and_where_they_came_from(db, tmp_path):
    body = os.urandom(4000)
    with _http_server({"/ok/webclip.mp4": body}) as base:
        a = make_api(db, tmp_path, allowed_url_prefixes=(f"{base}/ok/",))
        try:
            local = a.roots[0] / "local.mp4"
            local.write_bytes(os.urandom(2000))
            r1 = a.client.ingest_uri(str(local), external_id="L1", user_metadata={"src": "disk"})
            url = f"{base}/ok/webclip.mp4"
            r2 = a.client.ingest_uri(url, external_id="W1", collection="web")
            v1, v2 = a.client.get_video(r1.video_id), a.client.get_video(r2.video_id)
            assert (v1.external_id, v1.original_name, v1.original_path) == (
                "L1",
                "local.mp4",
                str(local),
            )
            assert dict(v1.user_metadata) == {"src": "disk"}
            assert (v2.external_id, v2.original_name, v2.original_path, v2.title) == (
                "W1",
                "webclip.mp4",
                url,
                "webclip",
            )
            more = a.roots[0] / "more.mp4"
            more.write_bytes(os.urandom(2000))
            items = a.client.bulk_ingest({str(more): "B1", str(local): "L2"})
            assert items[0].result.video_id and not items[0].error
            assert a.client.get_video(items[0].result.video_id).external_id == "B1"
            assert items[1].error_code == "ALREADY_EXISTS"  # local.mp4 is L1 already
            assert "'L1'" in items[1].error
        finally:
            a.client.close()
            a.server.stop(0).wait(10)


def test_filters_on_external_ids_and_metadata_in_list_search_and_batch(api):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(DIM)
    ids = {
        name: add_asset(api.store, [base + 0.1 * rng.standard_normal(DIM) for _ in range(2)],
                        external_id=name, collection="c", user_metadata=meta)
        for name, meta in [("A", {"reel": "1"}), ("B", {"reel": "2"}), ("C", {"reel": "1",
                                                                         "cam": "x"})]
    }  # fmt: skip
    api.sync()
    listed = api.client.iter_videos(user_metadata={"reel": "1"}, page_size=1)
    assert [v.id for v in listed] == [ids["A"], ids["C"]]
    assert [v.id for v in api.client.iter_videos(external_id="B")] == [ids["B"]]

    def hit_ids(**filters):
        r = api.client.search(vector=base, top_k=10, **filters)
        return sorted(h.video.id for h in r.hits)

    assert hit_ids() == sorted(ids.values())
    assert hit_ids(external_ids=["A", "B"]) == sorted([ids["A"], ids["B"]])
    assert hit_ids(user_metadata={"reel": "1", "cam": "x"}) == [ids["C"]]
    assert hit_ids(user_metadata={"reel": "9"}) == []
    hit = api.client.search(vector=base, external_ids=["C"]).hits[0]
    assert (hit.video.external_id, dict(hit.video.user_metadata)) == (
        "C",
        {"reel": "1", "cam": "x"},
    )
    batch = api.client.search_batch(video_ids=[ids["A"], ids["B"]], user_metadata={"reel": "2"})
    assert [[h.video.id for h in r.hits] for r in batch] == [[ids["B"]], [ids["B"]]]
    segs = api.client.search(vector=base, level="segment", external_ids=["B"], top_k=5)
    assert {h.video.id for h in segs.hits} == {ids["B"]}

    # a metadata-only update (same id, same bytes) reaches search at the keeper's next sync
    with api.store.ReadSession.begin() as s:
        from services.store import get_video

        row = get_video(s, ids["B"])
    with api.store.Session.begin() as s:
        register_video(s, uri=row.uri, content_sha256=row.content_sha256,
                       size_bytes=row.size_bytes, collection="c", external_id="B",
                       user_metadata={"reel": "1"})  # fmt: skip
    eventually(lambda: ids["B"] in hit_ids(user_metadata={"reel": "1"}))


def test_ids_metadata_and_filters_survive_a_server_restart(db, tmp_path):
    rng = np.random.default_rng(1)
    first = make_api(db, tmp_path)
    try:
        vid = add_asset(db, rng.standard_normal((2, DIM)), external_id="KEEP",
                        collection="c", user_metadata={"k": "v"})  # fmt: skip
        add_asset(db, rng.standard_normal((2, DIM)), external_id="OTHER", collection="c")
    finally:
        first.client.close()
        first.server.stop(0).wait(10)
    second = make_api(db, tmp_path)  # a new process's view: catalogue read from SQL
    try:
        v = second.client.get_video_by_external_id("KEEP", collection="c")
        assert (v.id, dict(v.user_metadata)) == (vid, {"k": "v"})
        r = second.client.search(vector=rng.standard_normal(DIM), user_metadata={"k": "v"})
        assert [h.video.id for h in r.hits] == [vid]
    finally:
        second.client.close()
        second.server.stop(0).wait(10)


def test_list_embeddings_pages_equal_get_embeddings(api, monkeypatch):
    rng = np.random.default_rng(2)
    made = [
        add_asset(api.store, rng.standard_normal((n, DIM)), external_id=f"E{n}",
                  collection="c", user_metadata={"n": str(n)})
        for n in (3, 1, 4, 2)
    ]  # fmt: skip
    add_asset(api.store, rng.standard_normal((2, DIM)), collection="elsewhere")
    api.sync()
    monkeypatch.setattr(video_service, "MAX_PAGE_SEGMENTS", 5)  # pages end early on segments
    pages = []
    token = ""
    while True:
        page = api.client.list_embeddings(collection="c", page_size=3, page_token=token)
        pages.append([e.video_id for e in page.videos])
        assert page.model_version == MODEL
        token = page.next_page_token
        if not token:
            break
    assert pages == [[made[0], made[1]], [made[2]], [made[3]]]  # 3+1 <= 5 < 3+1+4
    got = list(api.client.iter_embeddings(collection="c"))
    assert [e.video_id for e in got] == made
    for e in got:
        one = api.client.get_embeddings(e.video_id)
        assert np.array_equal(e.video_vector, one.video_vector)
        assert [list(s.vector) for s in e.segments] == [list(s.vector) for s in one.segments]
        assert [(s.start_s, s.end_s) for s in e.segments] == [
            (s.start_s, s.end_s) for s in one.segments
        ]
        assert e.video.external_id == f"E{len(e.segments)}"
        assert dict(e.video.user_metadata) == {"n": str(len(e.segments))}
    light = api.client.list_embeddings(collection="c", video_vectors_only=True, page_size=10)
    assert [len(e.segments) for e in light.videos] == [0] * 4 and len(light.videos) == 4
    assert [e.video_id for e in api.client.iter_embeddings(user_metadata={"n": "4"})] == [made[2]]
    with pytest.raises(grpc.RpcError) as e:
        api.client.list_embeddings(page_size=5000)
    assert code(e) is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        api.client.list_embeddings(page_token="garbage")
    assert code(e) is grpc.StatusCode.INVALID_ARGUMENT
    assert TOKEN  # the harness's server requires it; the client sends it
