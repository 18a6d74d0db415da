"""Search in stages through a real server: SearchBatch against single searches, its
refusals, the in-memory catalogue (filters and hits without SQL, new videos after a sync),
and deletes that no search sees once DeleteVideo has returned, also under a busy ingest."""

from __future__ import annotations

import contextlib
import threading
import time

import grpc
import numpy as np
import pytest
from sqlalchemy import event

from services.api.client import SoraClient
from services.api.gen.sora.v1 import sora_pb2 as pb
from services.api.index_keeper import IndexKeeper
from services.api.search_service import SearchService
from services.index import IndexSet
from services.search.options import MAX_BATCH
from services.search.types import SearchOptions
from services.store import delete_video
from tests.test_api_harness import *  # noqa: F403 - fixtures
from tests.test_api_harness import DIM, MODEL, TOKEN, Api, add_video, unit


def _hits(r: pb.SearchResponse) -> list[tuple]:
    return [
        (h.video.id, h.segment_id, round(h.target.start_s, 3), h.aligned, h.video.title)
        for h in r.hits
    ]


def _library(api: Api, rng, n: int = 30) -> list[int]:
    ids = []
    for i in range(n):
        ids.append(
            add_video(
                api.store,
                rng.normal(size=(3, DIM)),
                collection=f"c{i % 3}",
                tags=["even"] if i % 2 == 0 else ["odd"],
            )  # fmt: skip
        )
    api.sync()
    return ids


def _count_searches(api: Api, level: str, monkeypatch) -> list[int]:
    """Wrap the served index of `level` so that each FAISS search records its rows."""
    index = api.server.keeper.current()[1][level]
    calls: list[int] = []
    search = type(index).search

    def counting(xq, k, admitted=None):
        calls.append(len(xq))
        return search(index, xq, k, admitted)

    monkeypatch.setattr(index, "search", counting)
    return calls


@pytest.mark.parametrize("level", ["video", "segment"])
def test_search_batch_by_vectors_equals_single_searches_with_one_index_search(
    api: Api, level, monkeypatch
):
    rng = np.random.default_rng(20)
    _library(api, rng)
    xq = unit(rng.normal(size=(24, DIM)))  # >= 20 rows: faiss takes its BLAS path
    for filters in ({}, {"collection": "c1"}, {"tags": ["even"]}, {"min_score": 0.2}):
        singles = [api.client.search(vector=x, level=level, top_k=4, **filters) for x in xq]
        calls = _count_searches(api, level, monkeypatch)
        batch = api.client.search_batch(vectors=xq, level=level, top_k=4, **filters)
        # ONE FAISS search over the whole batch; a filter that leaves too few in the first
        # round sends only the queries that need more for another (together)
        assert calls[0] == 24 and all(n < 24 for n in calls[1:])
        if not filters:
            assert calls == [24]
        assert len(batch) == 24
        for one, got in zip(singles, batch, strict=True):
            assert _hits(got) == _hits(one)
            assert [h.score for h in got.hits] == pytest.approx([h.score for h in one.hits],
                                                                  abs=1e-5)  # fmt: skip
            assert got.model_version == MODEL and got.candidates == one.candidates
        if "collection" in filters:
            assert all(h.video.collection == "c1" for r in batch for h in r.hits)


# filters for batches of vector queries: one that sends queries to a second round
# (external_ids: one asset of 31), min_score, and top_k past the library
VECTOR_FILTERS = (
    {},
    {"collection": "c1"},
    {"tags": ["even"]},
    {"min_score": 0.1},
    {"collection": "c2", "top_k": 200},
    {"external_ids": ["X"], "top_k": 1},
)


@contextlib.contextmanager
def _calibrated_library(db, tmp_path):
    """A server with a copy calibration over 30 videos and one asset "X" -> (api, video
    ids, X's id, 24 queries: query 3 near video 4's vector, query 5 X's own)."""
    from tests.test_api_assets import add_asset
    from tests.test_api_harness import make_api
    from tests.test_api_server import _calibrated_checkpoint

    rng = np.random.default_rng(23)
    a = make_api(db, tmp_path, checkpoint=_calibrated_checkpoint(tmp_path / "ckpt", rng, 0.5))
    try:
        ids = _library(a, rng)
        x_id = add_asset(a.store, rng.normal(size=(3, DIM)), external_id="X")
        a.sync()
        xq = unit(rng.normal(size=(24, DIM)))
        xq[3] = unit(a.client.get_embeddings(ids[4]).video_vector + 0.01 * rng.normal(size=DIM))
        xq[5] = unit(np.asarray(a.client.get_embeddings(x_id).video_vector))  # finds X first
        yield a, ids, x_id, xq
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


@pytest.mark.parametrize("level", ["segment", "video"])
def test_concurrent_searches_answered_together_as_each_alone(db, tmp_path, monkeypatch, level):
    """Single searches by vector that arrive while another is computed are answered in one
    batch (services/api/coalesce.py), each with the hits it gets alone (pipeline.run, as
    SearchBatch without packed runs it: video-level hits placed on their best segment),
    with copy verdicts, under filters (one that sends queries to a second round), min_score
    and top_k past the library; a batch of 23 (faiss's BLAS path)."""
    with _calibrated_library(db, tmp_path) as (a, ids, x_id, xq):
        coalescer = a.server.services.search._coalescer
        compute = coalescer._compute
        for filters in VECTOR_FILTERS:
            opts = {"level": level, "top_k": 4, **filters}
            alone = a.client.search_batch(vectors=xq, **opts)
            entered, release = threading.Event(), threading.Event()
            first, sizes = [True], []

            def held(key, items, first=first, entered=entered, release=release, sizes=sizes):
                if first[0]:  # the first round waits, so that the others queue up behind it
                    first[0] = False
                    entered.set()
                    assert release.wait(30)
                sizes.append(len(items))
                return compute(key, items)

            monkeypatch.setattr(coalescer, "_compute", held)
            rounds = coalescer.rounds
            got: list = [None] * len(xq)

            def search(i: int, got=got, opts=opts) -> None:
                got[i] = a.client.search(vector=xq[i], **opts)

            threads = [threading.Thread(target=search, args=(i,)) for i in range(len(xq))]
            threads[0].start()
            assert entered.wait(30)
            for t in threads[1:]:
                t.start()
            deadline = time.monotonic() + 30
            while coalescer.queued() < len(xq) - 1:  # every other call waits its turn
                assert time.monotonic() < deadline, "the calls did not queue up"
                time.sleep(0.001)
            release.set()
            for t in threads:
                t.join(30)
            monkeypatch.undo()
            # the first call's round, then ONE batch of all the others
            assert coalescer.rounds - rounds == 2 and sizes == [1, len(xq) - 1]
            for one, mine in zip(alone, got, strict=True):
                assert _hits(mine) == _hits(one)
                assert [h.score for h in mine.hits] == pytest.approx(
                    [h.score for h in one.hits], abs=1e-5)  # fmt: skip
                assert [h.copy_score for h in mine.hits] == pytest.approx(
                    [h.copy_score for h in one.hits], abs=1e-5)  # fmt: skip
                assert [h.is_copy for h in mine.hits] == [h.is_copy for h in one.hits]
                assert mine.candidates == one.candidates and mine.model_version == MODEL
                assert mine.copy_threshold == pytest.approx(one.copy_threshold)
        # verdicts were compared, not absent: the calibration's threshold and a score a hit
        assert all(r.copy_threshold == pytest.approx(0.5) for r in got)
        assert all(h.HasField("copy_score") for r in got for h in r.hits)


def _library_with_a_host(api: Api, rng) -> list[int]:
    """12 videos, and a "host" that carries three near copies of the first one's first
    segment in its middle (an aligned match for queries by that video)."""
    ids = _library(api, rng, n=12)
    host = unit(rng.normal(size=(6, DIM)))
    host[2:5] = unit(api.client.get_embeddings(ids[0]).segments[0].vector + 0.01 * rng.normal(
        size=(3, DIM)))  # fmt: skip
    add_video(api.store, host, title="host")
    api.sync()
    return ids


def test_search_batch_by_video_ids_aligns_like_search_by_id(api: Api):
    ids = _library_with_a_host(api, np.random.default_rng(21))
    wanted = ids[:5]
    singles = [api.client.search(video_id=v, top_k=3, exclude_query_video=True) for v in wanted]
    batch = api.client.search_batch(video_ids=wanted, top_k=3, exclude_query_video=True)
    assert [_hits(r) for r in batch] == [_hits(r) for r in singles]
    assert all(v not in {h.video.id for h in r.hits} for v, r in zip(wanted, batch, strict=True))
    seg = api.client.search_batch(video_ids=wanted, level="segment", top_k=3)
    assert [_hits(r) for r in seg] == [
        _hits(api.client.search(video_id=v, level="segment", top_k=3)) for v in wanted
    ]


def test_search_batch_refusals_say_what_to_change(api: Api):
    rng = np.random.default_rng(22)
    _library(api, rng, n=3)

    def refused(**kw) -> str:
        with pytest.raises(grpc.RpcError) as e:
            api.client.search_batch(**kw)
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        return e.value.details()

    assert "the batch is empty: give 1..256" in refused(vectors=[])
    msg = refused(vectors=[np.ones(DIM), np.ones(DIM - 3)])
    assert f"query 1 of the batch has {DIM - 3} values; model version {MODEL} makes " \
           f"{DIM}-d vectors" in msg  # fmt: skip
    msg = refused(vectors=np.ones((MAX_BATCH + 1, DIM)))
    assert f"{MAX_BATCH + 1} queries; at most {MAX_BATCH} per call: split it into 2" in msg
    assert "top_k 5000: expected 1..1000" in refused(vectors=[np.ones(DIM)], top_k=5000)
    both = pb.SearchBatchRequest(vectors=[pb.VectorQuery(values=[1.0] * DIM)], video_ids=[1])
    with pytest.raises(grpc.RpcError) as e:
        api.client.stub.SearchBatch(both, metadata=api.client._auth, timeout=10)
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not both" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        api.client.search_batch(video_ids=[10**9])
    assert e.value.code() is grpc.StatusCode.NOT_FOUND


def test_filters_and_hits_come_from_memory_not_sql(api: Api):
    rng = np.random.default_rng(23)
    q = unit(rng.normal(size=DIM))
    near = add_video(api.store, [q, q], collection="a", tags=["x", "y"], title="near")
    add_video(api.store, [q + 0.3 * rng.normal(size=DIM)], collection="b", tags=["x"])
    api.sync()
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        if threading.current_thread().name.startswith("sora-rpc"):
            statements.append(statement)

    event.listen(api.store.engine, "before_cursor_execute", record)
    try:
        for level in ("video", "segment"):
            r = api.client.search(vector=q, level=level, collection="a", tags=["y"])
            assert {h.video.id for h in r.hits} == {near}
            assert r.hits[0].video.title == "near" and list(r.hits[0].video.tags) == ["x", "y"]
            assert r.hits[0].video.uri and r.hits[0].video.content_sha256
        # video level places its hit on the best segment: found in memory too
        r = api.client.search(vector=q, level="video", top_k=2)
        assert r.hits[0].video.id == near and r.hits[0].segment_id > 0
        assert r.hits[0].target.end_s > r.hits[0].target.start_s
    finally:
        event.remove(api.store.engine, "before_cursor_execute", record)
    assert statements == []  # no SQL at all: filters, hits and segment places from memory


def test_a_new_video_is_searchable_after_the_sync(api: Api):
    rng = np.random.default_rng(24)
    _library(api, rng, n=4)
    q = unit(rng.normal(size=DIM))
    late = add_video(api.store, [q], collection="late", tags=["new"])
    # (not asserted: that it is absent before the sync; the harness's keeper syncs every
    # 0.2 s on its own, so on a loaded machine it may already be in)
    api.sync()
    r = api.client.search(vector=q, top_k=1, collection="late", tags=["new"])
    assert [h.video.id for h in r.hits] == [late]
    catalogue = api.server.keeper.serving().catalogue
    assert catalogue is not None and catalogue.video(late).collection == "late"


def test_a_deleted_video_never_appears_after_delete_returns(api: Api):
    """Delete-then-search, many times, with no sync in between, while another thread keeps
    ingesting and syncing the index (and so the catalogue)."""
    rng = np.random.default_rng(25)
    q = unit(rng.normal(size=DIM))
    stop = threading.Event()
    errors: list[BaseException] = []

    def busy_ingest() -> None:
        r = np.random.default_rng(26)
        try:
            while not stop.is_set():
                add_video(api.store, [q + 0.5 * r.normal(size=DIM)], collection="noise")
                api.sync()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    worker = threading.Thread(target=busy_ingest, daemon=True)
    worker.start()
    try:
        for _ in range(25):
            victim = add_video(api.store, [q, q])
            api.sync()
            found = api.client.search(vector=q, top_k=3).hits
            assert found[0].video.id == victim  # searchable before the delete
            api.client.delete_video(victim)
            for level in ("video", "segment"):
                hits = api.client.search(vector=q, level=level, top_k=50).hits
                assert victim not in {h.video.id for h in hits}
            batch = api.client.search_batch(vectors=[q, q], top_k=50)
            assert all(victim not in {h.video.id for h in r.hits} for r in batch)
    finally:
        stop.set()
        worker.join(30)
    assert not errors, errors


def test_no_search_begun_after_delete_returned_sees_the_video_while_others_search(api: Api):
    """Four clients search all the time (single and batch, both levels) while videos near
    their query are deleted one by one: no search that began after its DeleteVideo
    returned has that video in its hits; searches begun before did find them."""
    rng = np.random.default_rng(27)
    q = unit(rng.normal(size=DIM))
    victims = [add_video(api.store, [unit(q + 0.05 * rng.normal(size=DIM))] * 2) for _ in range(8)]
    api.sync()
    deleted_at: dict[int, float] = {}
    results: list[tuple[float, set[int]]] = []  # (when the search began, videos found)
    progress = threading.Condition()
    stop = threading.Event()
    errors: list[BaseException] = []

    def searcher(level: str, batch: bool) -> None:
        try:
            with SoraClient(api.address, token=TOKEN, timeout=10) as c:
                while not stop.is_set():
                    began = time.monotonic()
                    if batch:
                        found = {h.video.id for r in c.search_batch(vectors=[q, q], level=level,
                                 top_k=20) for h in r.hits}  # fmt: skip
                    else:
                        found = {h.video.id for h in c.search(vector=q, level=level, top_k=20).hits}
                    with progress:
                        results.append((began, found))
                        progress.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def wait_for_searches(n: int) -> None:
        with progress:
            target = len(results) + n
            assert progress.wait_for(lambda: len(results) >= target or errors, timeout=30)

    threads = [threading.Thread(target=searcher, args=(lv, b), daemon=True)
               for lv in ("video", "segment") for b in (False, True)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        wait_for_searches(8)
        for victim in victims:
            api.client.delete_video(victim)
            deleted_at[victim] = time.monotonic()
            wait_for_searches(8)  # searches under way across the delete, and after it
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    for began, found in results:
        seen = [v for v, at in deleted_at.items() if began > at and v in found]
        assert not seen, f"a search begun after DeleteVideo returned found {seen}"
    first = min(deleted_at.values())
    assert any(began < first and set(victims) & found for began, found in results)


def test_a_delete_during_a_version_switch_stays_deleted(db, tmp_path, monkeypatch):
    """A fresh IndexSet (a new serving version) read its catalogue before a delete
    committed; the keeper replays the delete on it before swapping it in."""
    rng = np.random.default_rng(27)
    ids = [add_video(db, rng.normal(size=(2, DIM))) for _ in range(3)]
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL)
    victim = ids[1]
    original = IndexSet.sync

    def sync_then_delete(self, **kw):
        out = original(self, **kw)
        if self.catalogue is not None and self.catalogue.video(victim) is not None:
            with db.Session.begin() as s:
                delete_video(s, victim)
            keeper.forget_video(victim)  # what VideoService.delete does after the commit
        return out

    monkeypatch.setattr(IndexSet, "sync", sync_then_delete)
    keeper.sync_once()
    serving = keeper.serving()
    assert serving.catalogue is not None and serving.catalogue.video(victim) is None
    svc = SearchService(db, keeper)
    assert victim not in {h.video.id for h in svc.search_video(ids[0], SearchOptions()).hits}
    for level in ("video", "segment"):
        r = svc.search_vector(rng.normal(size=DIM), SearchOptions(level=level, top_k=10))
        assert victim not in {h.video.id for h in r.hits} and r.hits


def test_the_catalogue_follows_sql_through_the_sync(db, tmp_path):
    """Tombstones drop a deleted video's vectors and the video; new vector rows bring a
    video in (a revived one too); a change of tags arrives with re-ingested vectors."""
    from services.store import complete_ingest, register_video

    rng = np.random.default_rng(28)
    a = add_video(db, rng.normal(size=(2, DIM)), tags=["t"])
    b = add_video(db, rng.normal(size=(3, DIM)))
    sets = IndexSet(db, MODEL, tmp_path / "index", catalogue=True)
    sets.sync(save=False)
    cat = sets.catalogue
    assert cat is not None and cat.video(a).tags == ("t",) and cat.video(b) is not None
    assert cat.vector_count("segment") == 5 and cat.vector_count("video") == 2
    with db.Session.begin() as s:
        sha = delete_video(s, a).content_sha256
    sets.sync(save=False)  # no forget_video: the tombstones alone
    assert cat.video(a) is None and cat.vector_count("segment") == 3
    with db.Session.begin() as s:  # the same bytes again: revived, same id, new tags
        video, job, _ = register_video(s, uri="/again.mp4", content_sha256=sha, size_bytes=1,
                                       tags=["u"])  # fmt: skip
        xb = unit(rng.normal(size=(2, DIM)))
        complete_ingest(s, job.id, video.id, model_version=MODEL,
                        segments=[(i, 4.0 * i, 4.0 * i + 4, x) for i, x in enumerate(xb)],
                        video_vector=unit(xb.mean(axis=0)))  # fmt: skip
    assert video.id == a
    sets.sync(save=False)
    assert cat.video(a).tags == ("u",) and cat.video(a).uri == "/again.mp4"
    assert cat.vector_count("segment") == 5


def test_sora_search_asks_many_queries_in_batches(api: Api, tmp_path, capsys, monkeypatch):
    import json

    import sora_cli.search_cmd as search_cmd
    from sora_cli.main import main

    rng = np.random.default_rng(29)
    ids = _library(api, rng, n=5)
    monkeypatch.setattr(search_cmd, "BATCH", 2)  # 5 queries: 3 calls
    xq = unit(rng.normal(size=(5, DIM)))
    np.save(tmp_path / "q.npy", xq)
    client = ["--address", api.address, "--token", api.settings.api_token, "--json"]
    assert main(["search", "--vectors-file", str(tmp_path / "q.npy"), "--top-k", "2", *client]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["query"] for o in out] == [f"vector {i}" for i in range(5)]
    for o, x in zip(out, xq, strict=True):
        one = api.client.search(vector=x, top_k=2)
        assert [h["video_id"] for h in o["hits"]] == [h.video.id for h in one.hits]
    assert main(["search", "--ids", *map(str, ids[:3]), *client]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["query"] for o in out] == [f"video {v}" for v in ids[:3]]
    assert all(f"video {h['video_id']}" != o["query"] for o in out for h in o["hits"])


def test_delete_takes_the_vectors_out_of_the_served_index_before_any_sync(db, tmp_path):
    from services.api.video_service import VideoService

    rng = np.random.default_rng(30)
    victim = add_video(db, rng.normal(size=(3, DIM)))
    other = add_video(db, rng.normal(size=(2, DIM)))
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL, interval_s=3600)
    keeper.sync_once()
    syncs = keeper.syncs
    VideoService(db, keeper).delete(victim)
    _, indexes = keeper.current()
    assert indexes["segment"].ntotal == 2 and indexes["video"].ntotal == 1
    assert keeper.syncs == syncs  # no sync ran: the delete itself did it
    built = {lv: index.manifest.built_at for lv, index in indexes.items()}
    keeper.sync_once()  # the tombstones find the ids gone: still aligned, nothing rebuilt
    _, indexes = keeper.current()
    assert indexes["segment"].ntotal == 2
    assert {lv: index.manifest.built_at for lv, index in indexes.items()} == built
    r = SearchService(db, keeper).search_video(other, SearchOptions(top_k=5))
    assert [h.video.id for h in r.hits] == [other]


def _columns(p: pb.PackedHits, q: int) -> dict[str, list]:
    """Query q's hits of a packed answer, column by column."""
    lo, hi = p.offsets[q], p.offsets[q + 1]
    cols = {"video_ids": list(p.video_ids[lo:hi]), "segment_ids": list(p.segment_ids[lo:hi]),
            "target_start_s": [round(x, 3) for x in p.target_start_s[lo:hi]],
            "target_end_s": [round(x, 3) for x in p.target_end_s[lo:hi]],
            "aligned": list(p.aligned[lo:hi]), "scores": list(p.scores[lo:hi])}  # fmt: skip
    if p.HasField("copy_threshold"):
        cols["copy_scores"] = list(p.copy_scores[lo:hi])
        cols["is_copy"] = list(p.is_copy[lo:hi])
    return cols


def _as_columns(r: pb.SearchResponse, placed: bool = True) -> dict[str, list]:
    cols = {"video_ids": [h.video.id for h in r.hits],
            "segment_ids": [h.segment_id if placed else 0 for h in r.hits],
            "target_start_s": [round(h.target.start_s, 3) if placed else 0.0 for h in r.hits],
            "target_end_s": [round(h.target.end_s, 3) if placed else 0.0 for h in r.hits],
            "aligned": [h.aligned for h in r.hits],
            "scores": [h.score for h in r.hits]}  # fmt: skip
    if r.HasField("copy_threshold"):
        cols["copy_scores"] = [h.copy_score for h in r.hits]
        cols["is_copy"] = [h.is_copy for h in r.hits]
    return cols


def _assert_same(packed: pb.PackedHits, results: list[pb.SearchResponse], placed: bool) -> None:
    assert len(packed.offsets) == len(results) + 1 and packed.offsets[0] == 0
    for q, r in enumerate(results):
        got, want = _columns(packed, q), _as_columns(r, placed)
        for name in ("scores", "copy_scores"):
            if name in want:
                assert got.pop(name) == pytest.approx(want.pop(name), abs=1e-5), (q, name)
        assert got == want, q
        assert packed.candidates[q] == r.candidates
    assert packed.model_version == results[0].model_version
    assert packed.HasField("copy_threshold") == results[0].HasField("copy_threshold")


@pytest.mark.parametrize("level", ["video", "segment"])
def test_packed_batch_by_vectors_carries_the_same_hits_as_columns(db, tmp_path, level, monkeypatch):
    """The array path (vector queries) against the Hit path, with copy verdicts, filters
    that leave some queries short after the first round (they go again), min_score and
    top_k past the library; video-level vector hits are not placed (segment 0, no range)."""
    with _calibrated_library(db, tmp_path) as (a, ids, x_id, xq):
        for filters in VECTOR_FILTERS:
            opts = {"level": level, "top_k": 4, **filters}
            rows = a.client.search_batch(vectors=xq, **opts)
            calls = _count_searches(a, level, monkeypatch)
            packed = a.client.search_batch_packed(vectors=xq, **opts)
            monkeypatch.undo()
            _assert_same(packed, rows, placed=level == "segment")
            assert calls[0] == 24
            if "external_ids" in filters:  # one video of 31 passes: the queries whose
                # first round missed it go again (a mix: query 5's top hit is X); their
                # columns are put back in the queries' order
                assert len(calls) > 1 and 0 < calls[1] < 24
                assert set(packed.video_ids) == {x_id}
        assert packed.HasField("copy_threshold") and packed.copy_threshold == pytest.approx(0.5)
        if level == "video":
            plain = a.client.search_batch_packed(vectors=xq, level=level, top_k=1)
            assert plain.video_ids[3] == ids[4] and plain.is_copy[3]
            assert not any(plain.is_copy[:3])


def test_packed_batch_by_video_ids_carries_aligned_hits_as_columns(api: Api):
    ids = _library_with_a_host(api, np.random.default_rng(24))
    for level in ("video", "segment"):
        opts = {"level": level, "top_k": 3, "exclude_query_video": True}
        rows = api.client.search_batch(video_ids=ids[:5], **opts)
        packed = api.client.search_batch_packed(video_ids=ids[:5], **opts)
        _assert_same(packed, rows, placed=True)
        assert any(packed.aligned)
    assert not packed.HasField("copy_threshold") and not packed.copy_scores


def test_packed_batch_of_an_empty_library_and_its_refusals(api: Api):
    empty = api.client.search_batch_packed(vectors=unit(np.ones((2, DIM))), top_k=3)
    assert list(empty.offsets) == [0, 0, 0] and not empty.video_ids
    _library(api, np.random.default_rng(25), n=3)
    with pytest.raises(grpc.RpcError) as e:
        api.client.search_batch_packed(vectors=[np.ones(DIM), np.ones(DIM - 3)])
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"query 1 of the batch has {DIM - 3} values" in e.value.details()
