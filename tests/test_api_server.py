"""The API through a real server on 127.0.0.1:0 and real stubs: auth on every method, health,
status codes with their messages, uploads, path checks, paging, delete, search, jobs."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.api.client import NO_RETRIES, SoraClient
from services.api.gen.sora.v1 import sora_pb2 as pb
from services.api.server import create_server, freeze_after_load, is_loopback
from services.settings import Settings
from services.store import (
    Video,
    claim_job,
    complete_ingest,
    open_store,
    register_video,
    renew_lease,
)
from sora_encoder.copy_score import CopyCalibration
from tests.test_api_harness import *  # noqa: F403 - fixtures
from tests.test_api_harness import DIM, TOKEN, Api, add_video, make_api, unit

SERVICE = pb.DESCRIPTOR.services_by_name["SoraIndex"]


def _code(excinfo) -> grpc.StatusCode:
    return excinfo.value.code()


def _details(excinfo) -> str:
    return excinfo.value.details()


def _call(channel: grpc.Channel, method, metadata, timeout: float = 5.0):
    """Call any SoraIndex method with an empty request of its type; return the status code
    (OK when it succeeded)."""
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    path = f"/{SERVICE.full_name}/{method.name}"
    kw = {
        "request_serializer": request_cls.SerializeToString,
        "response_deserializer": response_cls.FromString,
    }
    request = request_cls()
    try:
        if method.client_streaming and method.server_streaming:
            stub = channel.stream_stream(path, **kw)
            list(stub(iter([request]), metadata=metadata, timeout=timeout))
        elif method.client_streaming:
            channel.stream_unary(path, **kw)(iter([request]), metadata=metadata, timeout=timeout)
        elif method.server_streaming:
            list(channel.unary_stream(path, **kw)(request, metadata=metadata, timeout=timeout))
        else:
            channel.unary_unary(path, **kw)(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


# ---------------------------------------------------------------------------- auth, health


def test_every_method_requires_the_bearer_token(api: Api):
    methods = list(SERVICE.methods)
    assert len(methods) >= 14  # the contract as written; new methods are covered too
    with grpc.insecure_channel(api.address) as channel:
        for method in methods:
            for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
                code, details = _call(channel, method, metadata)
                assert code is grpc.StatusCode.UNAUTHENTICATED, (method.name, metadata, code)
                assert "SORA_API_TOKEN" in details
            code, _ = _call(channel, method, (("authorization", f"Bearer {TOKEN}"),))
            assert code is not grpc.StatusCode.UNAUTHENTICATED, method.name
    # Nothing the refused calls carried was acted on.
    assert api.dispatcher.sent == []


def test_health_needs_no_token_and_reflection_does(api: Api):
    with grpc.insecure_channel(api.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "sora.v1.SoraIndex"):
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as e:
            list(refl.ServerReflectionInfo(iter([request]), timeout=5))
        assert _code(e) is grpc.StatusCode.UNAUTHENTICATED
        auth = (("authorization", f"Bearer {TOKEN}"),)
        answers = list(refl.ServerReflectionInfo(iter([request]), metadata=auth, timeout=5))
        names = {s.name for s in answers[0].list_services_response.service}
        assert {"sora.v1.SoraIndex", "grpc.health.v1.Health"} <= names


def test_health_is_not_serving_until_the_index_is_loaded(db, tmp_path):
    a = make_api(db, tmp_path, start=False)
    a.server.grpc_server.start()  # gRPC up, the index keeper not yet
    try:
        assert a.client.health() == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as e:
            a.client.search(vector=np.ones(DIM))
        assert _code(e) is grpc.StatusCode.UNAVAILABLE
        assert "still loading" in _details(e)
        a.server.keeper.sync_once()
        assert a.client.health() == "SERVING"
        assert a.client.search(vector=np.ones(DIM)).hits == []
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_the_loaded_index_is_frozen_out_of_the_cyclic_gc_once_loaded(db, tmp_path, monkeypatch):
    import gc

    calls: list[str] = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    a = make_api(db, tmp_path, start=False)
    try:
        thread = freeze_after_load(a.server)
        thread.join(0.2)
        assert thread.is_alive() and calls == []  # waits for the index, however long
        a.server.keeper.sync_once()  # loaded
        thread.join(30)
        assert not thread.is_alive() and calls == ["collect", "freeze"]  # garbage out first
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_without_a_token_only_loopback_is_served(db, tmp_path, caplog):
    settings = Settings(home=tmp_path, database_url="", broker_url="")
    for address in ("0.0.0.0:0", "[::]:0", "192.168.1.10:0", "example.com:0"):
        with pytest.raises(ValueError, match="SORA_API_TOKEN"):
            create_server(address, settings=settings, store=db, dispatcher=object())
    with caplog.at_level(logging.WARNING, logger="services.api.server"):
        server, port = create_server(
            "127.0.0.1:0", settings=settings, store=db, dispatcher=object(), model_version="m"
        )
    assert port > 0
    assert "UNAUTHENTICATED on loopback only" in caplog.text
    server.start()
    try:
        with SoraClient(f"127.0.0.1:{port}", timeout=5) as c:  # no token needed
            c.wait_until_serving(10)
            assert c.list_videos().videos == []
    finally:
        server.stop(0).wait(10)
    assert is_loopback("[::1]:50051") and is_loopback("localhost:1")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(not any(
    os.access(os.path.join(p, "openssl"), os.X_OK) for p in os.environ["PATH"].split(os.pathsep)
), reason="needs the openssl command")  # fmt: skip
def test_tls_when_certificate_and_key_are_configured(db, tmp_path):
    cert, key = _self_signed(tmp_path)
    a = make_api(db, tmp_path, tls_cert=cert, tls_key=key)
    try:
        with SoraClient(a.address, token=TOKEN, tls_ca=cert, timeout=5) as c:
            assert c.health() == "SERVING"
            assert c.list_videos().videos == []
        with SoraClient(a.address, token=TOKEN, timeout=2, retry=NO_RETRIES) as plain:
            with pytest.raises(grpc.RpcError) as e:
                plain.list_videos()
            assert _code(e) is grpc.StatusCode.UNAVAILABLE
    finally:
        a.client.close()
        a.server.stop(0).wait(10)
    with pytest.raises(ValueError, match="both"):
        make_api(db, tmp_path, tls_cert=cert)


# ---------------------------------------------------------------------------- status codes


def test_not_found_invalid_argument_and_failed_precondition(api: Api):
    c = api.client
    for call, needle in (
        (lambda: c.get_video(999), "video 999 not found"),
        (lambda: c.get_job(999), "job 999 not found"),
        (lambda: c.delete_video(999), "video 999 not found"),
        (lambda: c.get_embeddings(999), "video 999 not found"),
        (lambda: c.search(video_id=999), "video 999 not found"),
        (lambda: c.classify("nope", vector=np.ones(DIM)), "classifier 'nope' not found"),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert _code(e) is grpc.StatusCode.NOT_FOUND and needle in _details(e)

    add_video(api.store, np.eye(DIM)[:2])
    api.sync()
    for call, needle in (
        (lambda: c.list_videos(page_size=5000), "page_size 5000"),
        (lambda: c.list_videos(page_token="garbage!"), "invalid page token"),
        (lambda: c.search(vector=np.ones(DIM), top_k=5000), "top_k 5000"),
        (lambda: c.search(vector=np.ones(DIM + 1)), f"makes {DIM}-d vectors"),
        (lambda: c.search(vector=np.zeros(DIM)), "all zeros"),
        (lambda: c.search(vector=np.ones(DIM), min_score=2.0), "min_score"),
        (lambda: c.stub.Search(pb.SearchRequest(), metadata=c._auth), "query is missing"),
        (lambda: c.upload_bytes(b""), "carried no bytes"),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert _code(e) is grpc.StatusCode.INVALID_ARGUMENT, needle
        assert needle in _details(e)

    # An upload whose first message is a chunk, not the metadata.
    chunks = iter([pb.UploadVideoRequest(chunk=b"abc")])
    with pytest.raises(grpc.RpcError) as e:
        c.stub.UploadVideo(chunks, metadata=c._auth, timeout=5)
    assert _code(e) is grpc.StatusCode.INVALID_ARGUMENT and "metadata" in _details(e)

    with api.store.Session.begin() as s:
        pending, _, _ = register_video(s, uri="/p.mp4", content_sha256="e" * 64, size_bytes=1)
        pending_id = pending.id
    for call in (lambda: c.search(video_id=pending_id), lambda: c.get_embeddings(pending_id)):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert _code(e) is grpc.StatusCode.FAILED_PRECONDITION
        assert f"video {pending_id} has no vectors" in _details(e)
        assert "PENDING" in _details(e)


def test_database_down_is_unavailable(tmp_path):
    dead = open_store(
        "postgresql+psycopg2://postgres@127.0.0.1:1/none",
        run_migrations=False,
        connect_args={"connect_timeout": 1},
    )
    a = make_api(dead, tmp_path, start=False)
    a.server.start()
    try:
        time.sleep(0.3)
        assert a.client.health() == "NOT_SERVING"  # the index cannot load either
        with pytest.raises(grpc.RpcError) as e:
            a.client.get_video(1)
        assert _code(e) is grpc.StatusCode.UNAVAILABLE
        assert "database is unavailable" in _details(e) and "retry" in _details(e)
        with pytest.raises(grpc.RpcError) as e:
            a.client.search(vector=np.ones(DIM))
        assert _code(e) is grpc.StatusCode.UNAVAILABLE
    finally:
        a.client.close()
        a.server.stop(0).wait(10)
        dead.dispose()


def test_calls_beyond_the_concurrency_cap_are_resource_exhausted(db, tmp_path):
    a = make_api(db, tmp_path, max_concurrent_rpcs=1)
    try:
        with a.store.Session.begin() as s:
            _, job, _ = register_video(s, uri="/q.mp4", content_sha256="f" * 64, size_bytes=1)
            job_id = job.id
        stream = a.client.watch_job(job_id, timeout=10)  # holds the one slot
        assert next(stream).status == pb.JOB_STATUS_QUEUED
        with pytest.raises(grpc.RpcError) as e:
            a.client.get_video(1)
        assert _code(e) is grpc.StatusCode.RESOURCE_EXHAUSTED
        stream.close()  # cancels the stream: the slot frees
        deadline = time.monotonic() + 5
        while True:
            try:
                a.client.list_videos()
                break
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the cancelled stream kept its slot"
                time.sleep(0.05)
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_as_many_clients_as_the_cap_are_never_refused(db, tmp_path):
    """`max_concurrent_rpcs` clients calling back to back: every call is answered. gRPC
    counts a call as open until its completion is processed, a moment after the handler
    (and the limiter's slot) let go, so its own cap must sit above ours with room."""
    cap = 8
    a = make_api(db, tmp_path, max_workers=cap + 2, max_concurrent_rpcs=cap)
    rng = np.random.default_rng(31)
    for _ in range(20):
        add_video(a.store, rng.normal(size=(2, DIM)))
    a.sync()
    refused: list[str] = []
    answered = [0] * cap
    start = threading.Barrier(cap)

    def client(n: int) -> None:
        with SoraClient(a.address, token=TOKEN, timeout=10) as c:
            start.wait()
            for x in unit(rng.normal(size=(150, DIM))):
                try:
                    c.search(vector=x, level="segment", top_k=5)
                    answered[n] += 1
                except grpc.RpcError as exc:
                    refused.append(f"{exc.code().name}: {exc.details()}")

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(cap)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not refused, f"{len(refused)} calls refused below the cap: {set(refused)}"
        assert answered == [150] * cap
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_messages_over_the_size_limit_are_refused(db, tmp_path):
    a = make_api(db, tmp_path, max_message_bytes=64 * 1024)
    try:
        with pytest.raises(grpc.RpcError) as e:
            a.client.search(vector=np.ones(100_000))  # 400 kB in one message
        assert _code(e) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert a.client.search(vector=np.ones(DIM)).hits == []  # small ones pass
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


# ---------------------------------------------------------------------------- ingest


def _ffmpeg_watch(monkeypatch) -> list:
    """Record every subprocess the server starts (the API must never run ffmpeg)."""
    spawned: list = []
    real = subprocess.Popen.__init__

    def spy(self, args, *a, **kw):
        spawned.append(args)
        real(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", spy)
    return spawned


def test_paths_outside_the_roots_are_refused_before_anything_runs(api: Api, tmp_path, monkeypatch):
    root = api.roots[0]
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"not for you")
    (root / "sub").mkdir()
    (root / "link.mp4").symlink_to(outside)
    (root / "sub" / "dirlink").symlink_to(tmp_path)
    hashed: list = []
    import services.api.ingest_service as ingest_module

    real_sha = ingest_module.hashlib.sha256
    monkeypatch.setattr(ingest_module.hashlib, "sha256", lambda *a: hashed.append(a) or real_sha())
    spawned = _ffmpeg_watch(monkeypatch)

    for uri in (
        str(outside),
        f"{root}/../secret.mp4",
        f"{root}/sub/../../secret.mp4",
        f"file://{root}/../secret.mp4",
        str(root / "link.mp4"),
        str(root / "sub" / "dirlink" / "secret.mp4"),
        "/etc/passwd",
    ):
        with pytest.raises(grpc.RpcError) as e:
            api.client.ingest_uri(uri)
        assert _code(e) is grpc.StatusCode.PERMISSION_DENIED, uri
        assert "outside the allowed roots" in _details(e) and "ask the operator" in _details(e)
        # The server's folders are not shown to clients (but for the path the client sent).
        assert str(root) not in _details(e).replace(uri, "")
        if "link" in uri:  # where a link points is not revealed
            assert str(outside) not in _details(e)
    assert hashed == [] and spawned == []
    assert api.client.list_videos(status="PENDING").videos == []
    assert api.dispatcher.sent == []

    with pytest.raises(grpc.RpcError) as e:
        api.client.ingest_uri("relative/clip.mp4")
    assert _code(e) is grpc.StatusCode.INVALID_ARGUMENT and "absolute" in _details(e)
    with pytest.raises(grpc.RpcError) as e:
        api.client.ingest_uri(str(root / "missing.mp4"))
    assert _code(e) is grpc.StatusCode.NOT_FOUND

    inside = root / "sub" / "ok.mp4"
    inside.write_bytes(b"fine bytes")
    r = api.client.ingest_uri(str(root / "sub" / ".." / "sub" / "ok.mp4"), collection="c")
    assert r.created and r.job_id > 0 and r.status == pb.VIDEO_STATUS_PENDING
    assert api.dispatcher.sent == [r.job_id]
    video = api.client.get_video(r.video_id)
    assert video.uri == str(inside) and video.title == "ok" and video.collection == "c"
    again = api.client.ingest_uri(str(inside))
    assert (again.video_id, again.job_id, again.created) == (r.video_id, 0, False)
    assert spawned == []  # registering runs no ffmpeg: the workers decode


def test_path_ingest_without_roots_says_how_to_allow(db, tmp_path):
    a = make_api(db, tmp_path, allowed_roots=())
    try:
        f = tmp_path / "x.mp4"
        f.write_bytes(b"x")
        with pytest.raises(grpc.RpcError) as e:
            a.client.ingest_uri(str(f))
        assert _code(e) is grpc.StatusCode.PERMISSION_DENIED
        assert "SORA_ALLOWED_ROOTS" in _details(e)
        with pytest.raises(grpc.RpcError) as e:
            a.client.ingest_uri("https://example.com/v.mp4")
        assert _code(e) is grpc.StatusCode.PERMISSION_DENIED
        assert "SORA_ALLOWED_URL_PREFIXES" in _details(e)
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def _incoming(settings: Settings) -> list[Path]:
    d = settings.uploads_dir / ".incoming"
    return list(d.iterdir()) if d.exists() else []


def test_upload_streams_to_its_sha256_name_and_registers_once(api: Api, tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks
    f = tmp_path / "holiday.MP4"
    f.write_bytes(data)
    r = api.client.upload(f, collection="trips", tags=["2026", "sea"])
    assert r.created and r.job_id > 0
    video = api.client.get_video(r.video_id)
    sha = hashlib.sha256(data).hexdigest()
    assert video.content_sha256 == sha and video.size_bytes == len(data)
    assert video.uri == str(api.settings.uploads_dir / f"{sha}.mp4")
    assert Path(video.uri).read_bytes() == data
    assert (video.title, video.collection) == ("holiday", "trips")
    assert list(video.tags) == ["2026", "sea"]
    assert api.dispatcher.sent == [r.job_id]
    again = api.client.upload(f)
    assert (again.video_id, again.job_id, again.created) == (r.video_id, 0, False)
    assert api.dispatcher.sent == [r.job_id]
    assert _incoming(api.settings) == []


def test_upload_over_the_cap_is_refused_and_leaves_no_file(db, tmp_path):
    a = make_api(db, tmp_path, max_upload_bytes=1 << 20)
    try:
        f = tmp_path / "big.mp4"
        f.write_bytes(os.urandom((1 << 20) + 1))
        # Declared size over the cap: refused before any byte is stored.
        with pytest.raises(grpc.RpcError) as e:
            a.client.upload(f)
        assert _code(e) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"cap of {1 << 20} bytes" in _details(e) and "SORA_MAX_UPLOAD_BYTES" in _details(e)
        # No size declared: aborted when the bytes pass the cap.
        blocks = [os.urandom(300_000) for _ in range(5)]
        with pytest.raises(grpc.RpcError) as e:
            a.client.upload_bytes(iter(blocks), filename="big.mp4")
        assert _code(e) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "so far" in _details(e)
        assert _incoming(a.settings) == []
        assert not any(p.is_file() for p in a.settings.uploads_dir.glob("*"))
        assert a.client.list_videos().videos == [] and a.dispatcher.sent == []
        # A short stream that promised more is refused too (a cut-off upload).
        with pytest.raises(grpc.RpcError) as e:
            a.client.upload_bytes(iter([b"abc"]), filename="x.mp4", size_bytes=10)
        assert _code(e) is grpc.StatusCode.INVALID_ARGUMENT and "declared 10" in _details(e)
        assert _incoming(a.settings) == []
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_bulk_ingest_reports_each_item(api: Api, tmp_path):
    root = api.roots[0]
    paths = []
    for n in range(3):
        p = root / f"v{n}.mkv"
        p.write_bytes(f"video {n}".encode())
        paths.append(str(p))
    (tmp_path / "out.mp4").write_bytes(b"out")
    uris = [paths[0], str(tmp_path / "out.mp4"), paths[1], str(root / "gone.mp4"), paths[2]]
    uris.append(paths[0])  # the same bytes twice: one video, one job
    items = api.client.bulk_ingest(uris, collection="bulk", tags=["t"])
    assert [i.uri for i in items] == uris
    codes = [i.error_code for i in items]
    assert codes == ["", "PERMISSION_DENIED", "", "NOT_FOUND", "", ""]
    assert "outside the allowed roots" in items[1].error
    ok = [i.result for i in items if i.HasField("result")]
    assert [r.created for r in ok] == [True, True, True, False]
    assert ok[3].video_id == ok[0].video_id and ok[3].job_id == 0
    assert sorted(api.dispatcher.sent) == sorted(r.job_id for r in ok[:3])
    listed = api.client.list_videos(collection="bulk", tag="t").videos
    assert len(listed) == 3


# ---------------------------------------------------------------------------- videos, jobs


def test_list_videos_pages_and_filters(api: Api):
    rng = np.random.default_rng(0)
    ids = [
        add_video(api.store, rng.normal(size=(2, DIM)), collection="a" if n % 2 else "b",
                  tags=["x"] if n < 3 else [])
        for n in range(7)
    ]  # fmt: skip
    seen, token, pages = [], "", 0
    while True:
        page = api.client.list_videos(page_size=3, page_token=token)
        seen += [v.id for v in page.videos]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids and pages == 3
    assert [v.id for v in api.client.iter_videos(page_size=2)] == ids
    assert [v.id for v in api.client.iter_videos(collection="a")] == ids[1::2]
    assert [v.id for v in api.client.iter_videos(tag="x")] == ids[:3]
    assert [v.id for v in api.client.iter_videos(status="READY", tag="x", collection="b")] == [
        ids[0],
        ids[2],
    ]
    api.client.delete_video(ids[0])
    assert ids[0] not in [v.id for v in api.client.iter_videos()]
    assert [v.id for v in api.client.iter_videos(status="DELETED")] == [ids[0]]


def test_get_embeddings_returns_the_stored_vectors(api: Api):
    xb = unit(np.random.default_rng(1).normal(size=(3, DIM)))
    vid = add_video(api.store, xb)
    api.sync()
    e = api.client.get_embeddings(vid)
    assert e.video_id == vid and e.model_version == "test-v1"
    np.testing.assert_allclose(np.array([s.vector for s in e.segments]), xb, atol=1e-6)
    np.testing.assert_allclose(e.video_vector, unit(xb.mean(axis=0)), atol=1e-6)
    assert [(s.index, s.start_s, s.end_s) for s in e.segments] == [
        (0, 0.0, 4.0),
        (1, 4.0, 8.0),
        (2, 8.0, 12.0),
    ]
    with pytest.raises(grpc.RpcError) as e:
        api.client.get_embeddings(vid, model_version="other")
    assert _code(e) is grpc.StatusCode.FAILED_PRECONDITION


def test_watch_job_streams_each_change_until_done(api: Api):
    with api.store.Session.begin() as s:
        video, job, _ = register_video(s, uri="/w.mp4", content_sha256="a" * 64, size_bytes=1)
        video_id, job_id = video.id, job.id
    got: list[pb.Job] = []
    watcher = threading.Thread(target=lambda: got.extend(api.client.watch_job(job_id, timeout=20)))
    watcher.start()

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 5
        while len(got) < n:
            assert time.monotonic() < deadline, f"saw {len(got)} updates, waited for {n}"
            time.sleep(0.02)

    wait_for(1)
    with api.store.Session.begin() as s:
        claim_job(s, job_id, "w1", 60)
    wait_for(2)
    with api.store.Session.begin() as s:
        renew_lease(s, job_id, "w1", 60, done=1, total=2)
    wait_for(3)
    with api.store.Session.begin() as s:
        complete_ingest(
            s, job_id, video_id, model_version="test-v1",
            segments=[(0, 0.0, 4.0, unit(np.ones(DIM))), (1, 4.0, 8.0, unit(np.ones(DIM)))],
            video_vector=unit(np.ones(DIM)),
        )  # fmt: skip
    watcher.join(10)
    assert not watcher.is_alive(), "the stream did not end at SUCCEEDED"
    assert [j.status for j in got] == [
        pb.JOB_STATUS_QUEUED,
        pb.JOB_STATUS_RUNNING,
        pb.JOB_STATUS_RUNNING,
        pb.JOB_STATUS_SUCCEEDED,
    ]
    assert [(j.segments_done, j.segments_total) for j in got] == [(0, 0), (0, 0), (1, 2), (2, 2)]
    assert got[-1].finished_at.endswith("Z")


def test_watch_job_ends_at_the_deadline(api: Api):
    with api.store.Session.begin() as s:
        _, job, _ = register_video(s, uri="/d.mp4", content_sha256="b" * 64, size_bytes=1)
        job_id = job.id
    # The job never changes: the watch sends it once, then waits until the deadline ends
    # the call. The deadline leaves a loaded machine seconds to deliver the first update
    # (0.6 s did not); no upper bound on the time, which gRPC's own deadline enforces.
    deadline_s = 3.0
    t0 = time.monotonic()
    got = []
    with pytest.raises(grpc.RpcError) as e:
        for j in api.client.watch_job(job_id, timeout=deadline_s):
            got.append(j)
    assert _code(e) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert [j.id for j in got] == [job_id]  # sent once: no change, no repeat
    assert time.monotonic() - t0 >= deadline_s - 0.1  # it ran to the deadline, not less


# ---------------------------------------------------------------------------- search


def test_search_by_vector_with_filters_and_levels(api: Api):
    q = unit(np.eye(DIM)[0] + 0.05)
    rng = np.random.default_rng(2)
    near = add_video(api.store, [q + 0.1 * rng.normal(size=DIM) for _ in range(3)],
                     collection="c1", tags=["red", "big"], title="near")  # fmt: skip
    mid = add_video(api.store, [q + 0.6 * rng.normal(size=DIM) for _ in range(2)],
                    collection="c2", tags=["red"])  # fmt: skip
    far = add_video(api.store, rng.normal(size=(2, DIM)), collection="c2")
    api.sync()

    r = api.client.search(vector=q, top_k=3)
    assert r.model_version == "test-v1" and r.candidates == 3
    assert [h.video.id for h in r.hits][:2] == [near, mid]
    assert all(a.score >= b.score for a, b in zip(r.hits, r.hits[1:], strict=False))
    top = r.hits[0]
    assert top.video.title == "near" and top.video.collection == "c1"
    assert list(top.video.tags) == ["big", "red"]
    assert top.segment_id > 0 and top.target.end_s - top.target.start_s == 4.0
    assert not top.aligned

    assert [h.video.id for h in api.client.search(vector=q, collection="c2").hits][0] == mid
    assert [h.video.id for h in api.client.search(vector=q, tags=["red", "big"]).hits] == [near]
    assert {h.video.id for h in api.client.search(vector=q, tags=["red"]).hits} == {near, mid}
    high = api.client.search(vector=q, min_score=float(r.hits[1].score) + 1e-4).hits
    assert [h.video.id for h in high] == [near]

    seg = api.client.search(vector=q, level="segment", top_k=4)
    assert len(seg.hits) == 4 and seg.hits[0].video.id == near
    assert {h.segment_id for h in seg.hits} and len({h.segment_id for h in seg.hits}) == 4
    for h in seg.hits:
        assert h.target.end_s == h.target.start_s + 4.0
    assert far not in [h.video.id for h in api.client.search(vector=q, top_k=2).hits]


def test_filters_find_what_decoys_hide_in_the_index_or_past_the_first_round(api: Api):
    """40 decoys closer to the query than the one video wanted. A collection filter is
    tested by the index as it scans: the decoys never come back (one candidate). An
    asset-id filter is tested afterwards: the first FAISS round (4 x top_k, at least 16)
    misses the video, the next finds it."""
    rng = np.random.default_rng(3)
    q = unit(rng.normal(size=DIM))
    for _ in range(40):
        add_video(api.store, [q + 0.05 * rng.normal(size=DIM)], collection="decoys")
    wanted = add_video(api.store, [q + 0.8 * rng.normal(size=DIM)], collection="rare",
                       external_id="RARE-1")  # fmt: skip
    api.sync()
    for level in ("segment", "video"):
        r = api.client.search(vector=q, top_k=1, collection="rare", level=level)
        assert [h.video.id for h in r.hits] == [wanted] and r.candidates == 1
        r = api.client.search(vector=q, top_k=1, external_ids=["RARE-1"], level=level)
        assert [h.video.id for h in r.hits] == [wanted] and r.candidates > 16


def test_delete_removes_a_video_from_search_at_once(api: Api):
    rng = np.random.default_rng(4)
    q = unit(rng.normal(size=DIM))
    first = add_video(api.store, [q, q])
    second = add_video(api.store, [q + 0.3 * rng.normal(size=DIM)])
    api.sync()
    seg_before = api.server.keeper.current()[1]["segment"].ntotal
    for level in ("video", "segment"):
        assert api.client.search(vector=q, level=level).hits[0].video.id == first
    deleted = api.client.delete_video(first)
    assert deleted.status == pb.VIDEO_STATUS_DELETED
    # No sync in between: the very next searches no longer see it.
    for level in ("video", "segment"):
        hits = api.client.search(vector=q, level=level, top_k=10).hits
        assert first not in {h.video.id for h in hits} and hits[0].video.id == second
    with pytest.raises(grpc.RpcError) as e:
        api.client.get_video(first)
    assert _code(e) is grpc.StatusCode.NOT_FOUND
    api.sync()
    assert api.server.keeper.current()[1]["segment"].ntotal == seg_before - 2


def _clip_and_host(rng, noise: float = 0.02):
    """A 3-segment query and a 7-segment video that contains it at segments 3..5."""
    Q = unit(rng.normal(size=(3, DIM)))
    host = unit(rng.normal(size=(7, DIM)))
    host[3:6] = unit(Q + noise * rng.normal(size=Q.shape))
    return Q, host


def test_search_by_video_id_aligns_the_matching_moment(api: Api):
    rng = np.random.default_rng(5)
    Q, host = _clip_and_host(rng)
    query_id = add_video(api.store, Q)
    host_id = add_video(api.store, host, title="host")
    others = [add_video(api.store, rng.normal(size=(4, DIM))) for _ in range(5)]
    api.sync()

    r = api.client.search(video_id=query_id, top_k=3, exclude_query_video=True)
    assert query_id not in [h.video.id for h in r.hits]
    top = r.hits[0]
    assert top.video.id == host_id and top.aligned
    assert (top.target.start_s, top.target.end_s) == (12.0, 24.0)
    assert (top.query.start_s, top.query.end_s) == (0.0, 12.0)
    assert top.alignment_score > 0.95
    assert all(h.video.id in others for h in r.hits[1:])
    assert all(h.alignment_score < top.alignment_score for h in r.hits[1:])

    plain = api.client.search(video_id=query_id, top_k=3, alignment=False)
    assert plain.hits[0].video.id == query_id and not plain.hits[0].aligned

    seg = api.client.search(video_id=query_id, level="segment", top_k=3, exclude_query_video=True)
    assert [h.video.id for h in seg.hits] == [host_id] * 3
    assert sorted(h.target.start_s for h in seg.hits) == [12.0, 16.0, 20.0]
    for h in seg.hits:
        assert h.aligned and h.query.start_s == h.target.start_s - 12.0


class FakeEmbedder:
    """Stands in for the encoder: returns fixed segment vectors for any clip."""

    def __init__(self, segments: np.ndarray, model_version: str = "test-v1") -> None:
        self.segments = segments
        self.model_version = model_version
        self.paths: list[Path] = []

    def embed(self, path, *, on_batch=None):
        from types import SimpleNamespace

        self.paths.append(Path(path))
        assert Path(path).read_bytes() == b"clip bytes" * 1000
        if on_batch is not None:
            on_batch(len(self.segments), len(self.segments))
        segs = [
            SimpleNamespace(index=i, start_s=2.0 * i, end_s=2.0 * i + 2, vector=v)
            for i, v in enumerate(self.segments)
        ]
        return SimpleNamespace(
            vector=unit(self.segments.mean(axis=0)), segments=segs,
            model_version=self.model_version,
        )  # fmt: skip


def test_search_by_clip_embeds_the_upload_and_searches(db, tmp_path):
    rng = np.random.default_rng(6)
    Q, host = _clip_and_host(rng)
    fake = FakeEmbedder(Q)
    a = make_api(db, tmp_path, embedder=fake)
    try:
        host_id = add_video(db, host)
        for _ in range(4):
            add_video(db, rng.normal(size=(3, DIM)))
        a.sync()
        clip = tmp_path / "query.mp4"
        clip.write_bytes(b"clip bytes" * 1000)
        r = a.client.search_by_clip(clip, top_k=2)
        top = r.hits[0]
        assert top.video.id == host_id and top.aligned
        assert (top.query.start_s, top.query.end_s) == (0.0, 6.0)  # the clip's own windows
        assert (top.target.start_s, top.target.end_s) == (12.0, 24.0)
        assert fake.paths and not fake.paths[0].exists()  # the clip is not kept

        fake.model_version = "another-model"
        with pytest.raises(grpc.RpcError) as e:
            a.client.search_by_clip(clip)
        assert _code(e) is grpc.StatusCode.FAILED_PRECONDITION
        assert "reindex" in _details(e)
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


class RegionsFakeEmbedder(FakeEmbedder):
    """Whole picture = `segments`; regions: the same clip but one region shows `inset`."""

    def __init__(self, segments: np.ndarray, inset: np.ndarray) -> None:
        super().__init__(segments)
        self.inset = inset
        self.region_calls = 0

    def embed_regions(self, path, *, whole=True, on_batch=None):
        self.region_calls += 1
        picture = [self.embed(path, on_batch=on_batch)] if whole else []
        others = [FakeEmbedder(self.segments).embed(path) for _ in range(4)]
        inset = FakeEmbedder(self.inset).embed(path)
        return [*picture, *others[:2], inset, *others[2:]]


def test_search_by_clip_with_regions_finds_a_video_shown_inside_the_query(db, tmp_path):
    rng = np.random.default_rng(8)
    Q = unit(rng.normal(size=(3, DIM)))  # the query's whole picture
    inset_video = unit(rng.normal(size=(3, DIM)))  # a library video shown as an inset
    fake = RegionsFakeEmbedder(Q, inset_video)
    a = make_api(db, tmp_path, embedder=fake)
    try:
        inset_id = add_video(db, inset_video)
        for _ in range(5):
            add_video(db, rng.normal(size=(3, DIM)))
        a.sync()
        clip = tmp_path / "query.mp4"
        clip.write_bytes(b"clip bytes" * 1000)
        plain = a.client.search_by_clip(clip, top_k=3)  # auto, but no calibration: never
        assert fake.region_calls == 0 and not plain.regions_searched
        assert plain.hits[0].video.id != inset_id or plain.hits[0].score < 0.5
        found = a.client.search_by_clip(clip, top_k=3, regions="always")
        assert fake.region_calls == 1 and found.regions_searched
        assert found.hits[0].video.id == inset_id and found.hits[0].score > 0.99
        ids = [h.video.id for h in found.hits]
        assert len(ids) == len(set(ids))  # one hit per video across the variants
        seg = a.client.search_by_clip(clip, top_k=3, regions="always", level="segment")
        assert seg.hits[0].video.id == inset_id
        seg_ids = [h.segment_id for h in seg.hits]
        assert len(seg_ids) == len(set(seg_ids))
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def _calibrated_checkpoint(folder: Path, rng, threshold: float = 0.3) -> Path:
    """A checkpoint folder holding only a copy calibration of FakeEmbedder's model."""
    folder.mkdir()
    bg = unit(rng.normal(size=(50, DIM)))
    CopyCalibration("test-v1", {"video": bg, "segment": bg}, k=5, threshold=threshold).save(folder)
    return folder


def test_auto_regions_search_them_only_when_the_whole_picture_found_no_copy(db, tmp_path):
    rng = np.random.default_rng(9)
    Q = unit(rng.normal(size=(3, DIM)))
    inset_video = unit(rng.normal(size=(3, DIM)))
    ckpt = _calibrated_checkpoint(tmp_path / "ckpt", rng)
    fake = RegionsFakeEmbedder(Q, inset_video)
    a = make_api(db, tmp_path, embedder=fake, checkpoint=ckpt)
    try:
        inset_id = add_video(db, inset_video)
        for _ in range(5):
            add_video(db, rng.normal(size=(3, DIM)))
        a.sync()
        clip = tmp_path / "query.mp4"
        clip.write_bytes(b"clip bytes" * 1000)
        # The whole picture is in no library video: its top hit is no copy, so "auto"
        # searches the regions, and the inset's video comes first as a copy.
        r = a.client.search_by_clip(clip, top_k=3)
        assert r.HasField("copy_threshold") and r.regions_searched and fake.region_calls == 1
        assert r.hits[0].video.id == inset_id and r.hits[0].is_copy
        never = a.client.search_by_clip(clip, top_k=3, regions="never")
        assert fake.region_calls == 1 and not never.regions_searched
        assert not any(h.is_copy for h in never.hits)
        # the client's old boolean flag: True is ALWAYS, an explicit False NEVER
        assert not a.client.search_by_clip(clip, top_k=3, regions=False).regions_searched
        assert a.client.search_by_clip(clip, top_k=3, regions=True).regions_searched
        assert fake.region_calls == 2
        with pytest.raises(ValueError, match="regions must be one of"):
            a.client.search_by_clip(clip, regions="sometimes")
        # A plain copy (the whole picture is a library video) is confirmed by the first
        # search: no region is embedded.
        whole_id = add_video(db, Q)
        a.sync()
        copy = a.client.search_by_clip(clip, top_k=3)
        assert copy.hits[0].video.id == whole_id and copy.hits[0].is_copy
        assert not copy.regions_searched and fake.region_calls == 2
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_search_in_a_one_video_library_by_its_id_and_by_a_clip_of_it(db, tmp_path):
    # One single-segment video: the only background for the adaptive alignment threshold is
    # the video itself (cosine 1), which made the threshold 1.0 and the search INTERNAL
    # (issue #9, defect 11). Now it aligns with itself at every level.
    v = unit(np.random.default_rng(11).normal(size=(1, DIM)))
    a = make_api(db, tmp_path, embedder=FakeEmbedder(v))
    try:
        only = add_video(db, v)
        a.sync()
        clip = tmp_path / "query.mp4"
        clip.write_bytes(b"clip bytes" * 1000)
        for level in ("video", "segment"):
            by_id = a.client.search(video_id=only, level=level, top_k=3)
            by_clip = a.client.search_by_clip(clip, level=level, top_k=3)
            for r in (by_id, by_clip):
                assert [h.video.id for h in r.hits] == [only], level
                assert r.hits[0].aligned and r.hits[0].score == pytest.approx(1.0, abs=1e-3)
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def _worker_writes(store, embedder, path: Path, n: int) -> int:
    """What an ingest worker does for one file, without Celery."""
    emb = embedder.embed(path)
    with store.Session.begin() as s:
        video, job, _ = register_video(
            s, uri=str(path), content_sha256=f"{n:064x}", size_bytes=path.stat().st_size
        )
        complete_ingest(
            s, job.id, video.id, model_version=emb.model_version,
            segments=[(g.index, g.start_s, g.end_s, g.vector) for g in emb.segments],
            video_vector=emb.vector,
        )  # fmt: skip
        return video.id


def test_search_by_clip_with_the_real_encoder(db, tmp_path):
    """The encoder is loaded lazily from a factory, and its model version is the one the
    index serves (no model_version given to create_server)."""
    from sora_encoder import load_embedder
    from tests.media_factory import make_video

    loads = []

    def factory():
        loads.append(1)
        return load_embedder(variant="sora-t", precision="fp32")

    a = make_api(db, tmp_path, embedder=factory, model_version=None)
    try:
        embedder = a.server.services.search.encoder.get()  # shared with the index keeper
        clip = make_video(tmp_path / "clip.mp4", duration_s=8.5, size=(96, 72), fps=10)
        other = make_video(
            tmp_path / "other.mp4", duration_s=6, size=(96, 72), fps=10, source="mandelbrot"
        )
        clip_id = _worker_writes(db, embedder, clip, 1)
        _worker_writes(db, embedder, other, 2)
        a.sync()
        assert a.server.keeper.model_version == embedder.model_version
        r = a.client.search_by_clip(clip, top_k=2)
        assert r.model_version == embedder.model_version
        top = r.hits[0]
        assert top.video.id == clip_id and top.score == pytest.approx(1.0, abs=1e-3)
        assert top.aligned and (top.query.start_s, top.query.end_s) == (0.0, 8.5)
        assert (top.target.start_s, top.target.end_s) == (0.0, 8.5)
        seg = a.client.search_by_clip(clip, level="segment", top_k=3)
        assert {h.video.id for h in seg.hits} == {clip_id}
        assert loads == [1]  # loaded once
        with pytest.raises(grpc.RpcError) as e:  # a "clip" that is no video
            a.client.stub.SearchByClip(
                iter([pb.SearchByClipRequest(metadata=pb.ClipQueryMetadata(filename="x.mp4")),
                      pb.SearchByClipRequest(chunk=b"not a video at all")]),
                metadata=a.client._auth, timeout=10,
            )  # fmt: skip
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "cannot be used" in e.value.details()
        assert list((a.settings.uploads_dir / ".queries").iterdir()) == []
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_search_with_nothing_indexed_is_empty(api: Api):
    r = api.client.search(vector=np.ones(DIM), top_k=5)
    assert list(r.hits) == [] and r.candidates == 0


def test_search_video_ids_are_sql_rows(api: Api):
    """Hit videos carry the SQL metadata (a spot check against the store)."""
    vid = add_video(api.store, np.eye(DIM)[:1], collection="k")
    api.sync()
    hit = api.client.search(vector=np.eye(DIM)[0]).hits[0]
    with api.store.ReadSession.begin() as s:
        row = s.get(Video, vid)
        assert (hit.video.id, hit.video.content_sha256, hit.video.uri) == (
            row.id,
            row.content_sha256,
            row.uri,
        )
