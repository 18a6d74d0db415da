"""The API's plain service classes without gRPC: the error mapping, URL allow-list checks and
downloads, streamed files, the job watcher, the index keeper."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from services.api.call import Call
from services.api.errors import status_of
from services.api.index_keeper import IndexKeeper
from services.api.ingest_service import IngestService, NewVideo, receive_file
from services.api.search_service import SearchOptions, SearchService
from services.api.video_service import JobService
from services.errors import (
    CallCancelledError,
    ConflictError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)
from services.index import IndexNotReadyError, IndexSet
from services.store import (
    JobKind,
    claim_job,
    complete_ingest,
    delete_video,
    enqueue_job,
    get_video,
    open_store,
    register_video,
    vector_source,
)
from tests.test_api_harness import *  # noqa: F403 - fixtures
from tests.test_api_harness import DIM, MODEL, RecordingDispatcher, add_video, unit

# ---------------------------------------------------------------------------- errors


def test_status_codes_are_mapped_in_one_place():
    cases = [
        (NotFoundError("video 3 not found"), grpc.StatusCode.NOT_FOUND, "video 3 not found"),
        (InvalidArgumentError("bad token"), grpc.StatusCode.INVALID_ARGUMENT, "bad token"),
        (ConflictError("was deleted"), grpc.StatusCode.FAILED_PRECONDITION, "was deleted"),
        (PermissionDeniedError("outside"), grpc.StatusCode.PERMISSION_DENIED, "outside"),
        (ResourceExhaustedError("cap"), grpc.StatusCode.RESOURCE_EXHAUSTED, "cap"),
        (IndexNotReadyError("no index"), grpc.StatusCode.UNAVAILABLE, "retry"),
        (
            OperationalError("SELECT 1", {}, Exception("connection refused\nmore")),
            grpc.StatusCode.UNAVAILABLE,
            "database is unavailable (connection refused); retry later",
        ),
        (DeadlineExceededError("late"), grpc.StatusCode.DEADLINE_EXCEEDED, "late"),
    ]
    for exc, code, needle in cases:
        got_code, message = status_of(exc)
        assert got_code is code and needle in message, exc
    code, message = status_of(KeyError("secret internals"))
    assert code is grpc.StatusCode.INTERNAL and "secret" not in message


# ---------------------------------------------------------------------------- URLs


def _ingest(db, tmp_path: Path, **kw) -> IngestService:
    return IngestService(db, RecordingDispatcher(), uploads_dir=tmp_path / "uploads", **kw)


def test_url_allow_list_matches_scheme_host_port_and_path(db, tmp_path):
    svc = _ingest(
        db, tmp_path, allowed_url_prefixes=("https://media.example.com/videos/", "http://h:8080")
    )
    for url in (
        "https://media.example.com/videos/a.mp4",
        "https://MEDIA.example.com:443/videos/sub/b.mkv",
        "http://h:8080/anything.mp4",
    ):
        svc.check_url(url)
    refused = (
        "https://media.example.com/other/a.mp4",
        "https://media.example.com/videos-private/a.mp4",
        "https://media.example.com.evil.org/videos/a.mp4",
        "http://media.example.com/videos/a.mp4",  # scheme
        "https://media.example.com:8443/videos/a.mp4",  # port
        "https://media.example.com/videos/../admin/a.mp4",
        "https://media.example.com/videos/%2e%2e/admin/a.mp4",
        "http://h:8081/a.mp4",
    )
    for url in refused:
        with pytest.raises(PermissionDeniedError):
            svc.check_url(url)
    with pytest.raises(InvalidArgumentError, match="credentials"):
        svc.check_url("https://user:pw@media.example.com/videos/a.mp4")
    with pytest.raises(InvalidArgumentError):
        svc.check_url("ftp://media.example.com/videos/a.mp4")
    with pytest.raises(ValueError):
        _ingest(db, tmp_path, allowed_url_prefixes=("media.example.com/videos",))


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 - the stdlib's name
        if self.path.startswith("/ok/redirect"):
            self.send_response(302)
            self.send_header("Location", "/secret/x.mp4")
            self.end_headers()
            return
        if self.path == "/ok/unsized.mp4":  # no Content-Length: the cap must still hold
            self.send_response(200)
            self.end_headers()
            for _ in range(8):
                self.wfile.write(b"z" * 1000)
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def _http_server(files: dict[str, bytes]) -> Iterator[str]:
    _Handler.files = files
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_ingest_downloads_into_uploads_with_a_cap(db, tmp_path):
    body = os.urandom(4000)
    files = {"/ok/clip.mp4": body, "/ok/big.mp4": b"x" * 6000, "/secret/x.mp4": b"secret"}
    with _http_server(files) as base:
        svc = _ingest(db, tmp_path, allowed_url_prefixes=(f"{base}/ok/",), max_upload_bytes=5000)
        r = svc.ingest_uri(NewVideo(f"{base}/ok/clip.mp4", collection="web"))
        assert r.created and r.job_id and svc.dispatcher.sent == [r.job_id]
        with db.ReadSession.begin() as s:
            v = get_video(s, r.video_id)
            assert Path(v.uri).parent == tmp_path / "uploads" and Path(v.uri).suffix == ".mp4"
            assert Path(v.uri).read_bytes() == body and v.title == "clip"
        with pytest.raises(PermissionDeniedError):
            svc.ingest_uri(NewVideo(f"{base}/secret/x.mp4"))
        with pytest.raises(PermissionDeniedError):  # a redirect off the allow-list
            svc.ingest_uri(NewVideo(f"{base}/ok/redirect.mp4"))
        with pytest.raises(ResourceExhaustedError, match="cap of 5000"):
            svc.ingest_uri(NewVideo(f"{base}/ok/big.mp4"))
        with pytest.raises(ResourceExhaustedError, match="so far"):
            svc.ingest_uri(NewVideo(f"{base}/ok/unsized.mp4"))
        with pytest.raises(NotFoundError, match="404"):
            svc.ingest_uri(NewVideo(f"{base}/ok/missing.mp4"))
    leftovers = [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]
    assert leftovers == [Path(v.uri)]
    assert len(svc.dispatcher.sent) == 1


# ---------------------------------------------------------------------------- files, calls


def test_a_cancelled_stream_leaves_no_file(tmp_path):
    state = {"active": True}

    def chunks():
        yield b"a" * 10
        state["active"] = False  # the client goes away mid-stream
        yield b"b" * 10

    call = Call(is_active=lambda: state["active"])
    with pytest.raises(CallCancelledError):
        receive_file(chunks(), tmp_path, cap=1000, call=call)
    assert list(tmp_path.iterdir()) == []
    late = Call(time_remaining=lambda: 0.0)
    with pytest.raises(DeadlineExceededError):
        receive_file(iter([b"x"]), tmp_path, cap=1000, call=late)
    assert list(tmp_path.iterdir()) == []
    got = receive_file(iter([b"ab", b"cd"]), tmp_path, cap=4, call=Call())
    assert got.size == 4 and got.path.read_bytes() == b"abcd"


def test_watch_stops_when_the_client_goes_away(db):
    with db.Session.begin() as s:
        _, job, _ = register_video(s, uri="/j.mp4", content_sha256="d" * 64, size_bytes=1)
        job_id = job.id
    gone_at = time.monotonic() + 0.3
    call = Call(is_active=lambda: time.monotonic() < gone_at)
    t0 = time.monotonic()
    seen = []
    with pytest.raises(CallCancelledError):
        for job in JobService(db, poll_s=0.05).watch(job_id, call):
            seen.append(job)
    assert len(seen) == 1 and time.monotonic() - t0 < 2


def test_watch_raises_at_the_deadline_rather_than_ending_quietly(db):
    """A quiet end would reach the client as OK, not DEADLINE_EXCEEDED (a race on a
    loaded machine that tests/test_api_server.py once lost)."""
    with db.Session.begin() as s:
        _, job, _ = register_video(s, uri="/k.mp4", content_sha256="e" * 64, size_bytes=1)
        job_id = job.id
    ends = time.monotonic() + 0.3
    call = Call(time_remaining=lambda: ends - time.monotonic())
    seen = []
    with pytest.raises(DeadlineExceededError):
        for job in JobService(db, poll_s=0.05).watch(job_id, call):
            seen.append(job)
    assert [j.id for j in seen] == [job_id]


# ---------------------------------------------------------------------------- index keeper


def _reembed(db, video_id: int, version: str, xb: np.ndarray) -> None:
    with db.Session.begin() as s:
        job, _ = enqueue_job(s, video_id, kind=JobKind.REINDEX, model_version=version)
        claim_job(s, job.id, "w", 60)
        complete_ingest(
            s, job.id, video_id, model_version=version,
            segments=[(i, 4.0 * i, 4.0 * i + 4, x) for i, x in enumerate(xb)],
            video_vector=unit(xb.mean(axis=0)),
        )  # fmt: skip


@pytest.mark.parametrize("recount_idle_s", [0.0, 3600.0])
def test_keeper_serves_the_old_version_until_the_new_one_covers_every_video(
    db, tmp_path, recount_idle_s
):
    """With a long recount interval the version is re-checked only when the store's
    fingerprint moves: each re-embedding moves it, so the switch is as prompt."""
    rng = np.random.default_rng(0)
    ids = [add_video(db, rng.normal(size=(2, DIM))) for _ in range(3)]
    ready_calls = []
    keeper = IndexKeeper(
        db, tmp_path / "index", configured_version=lambda: "test-v2",
        on_ready=lambda: ready_calls.append(1), recount_idle_s=recount_idle_s,
    )  # fmt: skip
    with pytest.raises(Exception, match="still loading"):
        keeper.current()
    keeper.sync_once()
    assert keeper.ready and ready_calls == [1] and keeper.model_version == MODEL
    _reembed(db, ids[0], "test-v2", unit(rng.normal(size=(2, DIM))))
    keeper.sync_once()
    assert keeper.model_version == MODEL  # 1 of 3 videos re-embedded: keep the old version
    for vid in ids[1:]:
        _reembed(db, vid, "test-v2", unit(rng.normal(size=(2, DIM))))
    keeper.sync_once()
    version, indexes = keeper.current()
    assert version == "test-v2" and indexes["video"].ntotal == 3 and ready_calls == [1]


def test_keeper_asks_the_serving_version_again_only_when_the_store_moved(db, tmp_path, monkeypatch):
    """Once the configured version is served, the store's moves (an ingest, a delete) do
    not recount it until recount_idle_s has passed; until then (first video, reindex:
    test_keeper_serves_the_old_version_until...) every move does."""
    import services.api.index_keeper as keeper_module

    calls = []
    real = keeper_module.serving_model_version
    monkeypatch.setattr(keeper_module, "serving_model_version",
                        lambda s, c: calls.append(1) or real(s, c))  # fmt: skip
    rng = np.random.default_rng(1)
    first = add_video(db, rng.normal(size=(2, DIM)))
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL, recount_idle_s=3600)
    keeper.sync_once()
    keeper.sync_once()
    keeper.sync_once()
    assert len(calls) == 1 and keeper.model_version == MODEL  # nothing moved: asked once
    add_video(db, rng.normal(size=(2, DIM)))
    keeper.sync_once()
    # a new video's vectors moved the fingerprint, but the configured version is served
    # and the interval has not passed: an ingest does not recount every second
    assert len(calls) == 1 and keeper.current()[1]["video"].ntotal == 2
    with db.Session.begin() as s:
        delete_video(s, first)
    keeper.sync_once()
    assert len(calls) == 1  # nor does a delete (its tombstones)
    keeper._version_checked_at -= 3601  # the interval has passed
    keeper.sync_once()
    assert len(calls) == 2
    keeper.sync_once()
    assert len(calls) == 2


def test_keeper_thread_syncs_when_asked_and_survives_errors(db, tmp_path):
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL, interval_s=30)
    keeper.start()
    try:
        assert keeper.wait_ready(5)
        assert keeper.current() == (None, {})  # nothing in SQL yet
        n = keeper.syncs
        add_video(db, np.eye(DIM)[:2])
        keeper.request_sync()
        deadline = time.monotonic() + 5
        while keeper.syncs == n:
            assert time.monotonic() < deadline, "request_sync did not wake the keeper"
            time.sleep(0.01)
        version, indexes = keeper.current()
        assert version == MODEL and indexes["segment"].ntotal == 2
    finally:
        keeper.stop()
    assert any((tmp_path / "index").glob("*.manifest.json"))  # snapshots written at stop


def test_the_first_ready_video_is_searchable_before_the_keepers_next_sync(db, tmp_path):
    # The keeper loaded an empty library and its next sync is far off: the first video turns
    # READY in that window. Search by its id answered FAILED_PRECONDITION ("serving model
    # version None", issue #9 defect 10); now the search catches the index up once first.
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL, interval_s=3600)
    keeper.start()
    try:
        assert keeper.wait_ready(10)
        syncs = keeper.syncs
        assert keeper.current() == (None, {})
        v = unit(np.random.default_rng(10).normal(size=(2, DIM)))
        first = add_video(db, v)
        svc = SearchService(db, keeper)
        for level in ("video", "segment"):
            r = svc.search_video(first, SearchOptions(level=level, top_k=3))
            assert r.model_version == MODEL and r.hits and r.hits[0].video.id == first
        r = svc.search_vector(v[0], SearchOptions(level="segment", top_k=1))
        assert [h.video.id for h in r.hits] == [first]
        assert keeper.syncs == syncs + 1  # one catch-up, not one per search
    finally:
        keeper.stop(save=False)


def test_a_search_of_a_video_not_ready_yet_does_not_sync(db, tmp_path):
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL, interval_s=3600)
    keeper.sync_once()
    add_video(db, unit(np.random.default_rng(12).normal(size=(1, DIM))))
    keeper.sync_once()
    with db.Session.begin() as s:
        video, _, _ = register_video(s, uri="/late.mp4", content_sha256="e" * 64, size_bytes=1)
        pending = video.id
    syncs = keeper.syncs
    with pytest.raises(ConflictError, match="SUCCEEDED"):
        SearchService(db, keeper).search_video(pending, SearchOptions())
    assert keeper.syncs == syncs  # a PENDING video costs no sync


def test_a_snapshot_folder_of_another_database_is_not_served(db, empty_db_url, tmp_path):
    # Snapshots written over one database, then the folder opened over another one with the
    # same model version and vector count: it is rebuilt, and search by id finds the right
    # video first (issue #9, defect 5).
    rng = np.random.default_rng(5)
    folder = tmp_path / "index"
    for _ in range(3):
        add_video(db, rng.normal(size=(2, DIM)))
    IndexSet(db, MODEL, folder).sync()
    other = open_store(empty_db_url)
    try:
        assert vector_source(other).identity() != vector_source(db).identity()
        assert vector_source(other).identity() == vector_source(other).identity()
        mine = [add_video(other, rng.normal(size=(2, DIM))) for _ in range(3)]
        keeper = IndexKeeper(other, folder, configured_version=MODEL)
        keeper.sync_once()
        _, indexes = keeper.current()
        for index in indexes.values():
            assert "another database" in (index.last_load.rebuilt_reason or "")
        svc = SearchService(other, keeper)
        for vid in mine:
            assert svc.search_video(vid, SearchOptions(top_k=1)).hits[0].video.id == vid
    finally:
        other.dispose()


def test_search_service_without_grpc(db, tmp_path):
    rng = np.random.default_rng(1)
    q = unit(rng.normal(size=DIM))
    a = add_video(db, [q, q], collection="x", tags=["t"])
    b = add_video(db, [q + 0.5 * rng.normal(size=DIM)], collection="y")
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL)
    keeper.sync_once()
    svc = SearchService(db, keeper)
    r = svc.search_vector(q, SearchOptions(top_k=5))
    assert [h.video.id for h in r.hits] == [a, b] and r.model_version == MODEL
    assert r.hits[0].score == pytest.approx(1.0, abs=1e-5)
    r = svc.search_vector(q, SearchOptions(top_k=5, tags=("t",), level="segment"))
    assert [h.video.id for h in r.hits] == [a, a]
    r = svc.search_video(a, SearchOptions(exclude_query_video=True))
    assert [h.video.id for h in r.hits] == [b]
    with pytest.raises(InvalidArgumentError):
        svc.search_vector(q, SearchOptions(top_k=0))
    with pytest.raises(DeadlineExceededError):
        svc.search_vector(q, SearchOptions(), Call(time_remaining=lambda: 0.0))


def test_search_hits_carry_a_copy_verdict_from_the_serving_models_calibration(db, tmp_path):
    from services.search.copy_verdict import CalibrationSource
    from sora_encoder.copy_score import build_calibration

    rng = np.random.default_rng(5)
    # A crowd of look-alike videos (generic footage) and one distinctive original.
    centre = unit(rng.normal(size=DIM))
    crowd = [unit(centre + 0.15 * rng.normal(size=DIM)) for _ in range(6)]
    for v in crowd:
        add_video(db, [v, v])
    original = unit(rng.normal(size=DIM))
    orig_id = add_video(db, [original, original])
    # The background: other look-alikes and random videos, in groups of their own.
    bg = [unit(centre + 0.15 * rng.normal(size=DIM)) for _ in range(20)]
    bg += [unit(rng.normal(size=DIM)) for _ in range(20)]
    bg = np.stack(bg)
    cal = build_calibration(MODEL, bg, [b[None] for b in bg], [f"g{i}" for i in range(40)])
    cal.save(tmp_path)
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL)
    keeper.sync_once()
    svc = SearchService(db, keeper, calibration=CalibrationSource(tmp_path))

    copy = unit(original + 0.05 * rng.normal(size=DIM))
    r = svc.search_vector(copy, SearchOptions(top_k=3))
    assert r.copy_threshold == pytest.approx(cal.threshold)
    assert r.hits[0].video.id == orig_id and r.hits[0].is_copy
    assert r.hits[0].copy_score == pytest.approx(
        r.hits[0].score - cal.reference(copy[None])[0], abs=1e-5
    )
    assert not any(h.is_copy for h in r.hits[1:])
    # A new clip of the same kind of footage: close to the crowd, a copy of none of it.
    lookalike = unit(centre + 0.15 * rng.normal(size=DIM))
    r = svc.search_vector(lookalike, SearchOptions(top_k=3))
    assert r.hits[0].score > 0.8  # a plain cosine would call it a match
    assert not r.hits[0].is_copy and r.hits[0].copy_score < cal.threshold
    r = svc.search_vector(lookalike, SearchOptions(top_k=3, level="segment"))
    assert r.hits and all(h.copy_score is not None for h in r.hits)
    # No calibration for the serving version: no verdicts, not wrong ones.
    plain = SearchService(db, keeper, calibration=CalibrationSource(tmp_path / "none"))
    r = plain.search_vector(copy, SearchOptions(top_k=3))
    assert r.copy_threshold is None and r.hits[0].copy_score is None
