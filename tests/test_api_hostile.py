"""The API against hostile or broken clients, servers and disks (issue #9): stalled client
streams, a flood of them, a URL server that drips, refused uploads, files a killed server
left behind, a full or read-only disk, control characters in a URL.

Tests wait on progress (files appearing, calls ending), bounded by generous limits; the
limits being tested (idle time, download deadline) are set small so that the tests are
quick.
"""

from __future__ import annotations

import errno
import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.api.call import Call
from services.api.client import search_options
from services.api.errors import status_of
from services.api.gen.sora.v1 import sora_pb2 as pb
from services.api.gen.sora.v1 import sora_pb2_grpc
from services.api.ingest_service import IngestService, NewVideo, receive_file
from services.api.limits import CallLimiter
from services.errors import CallCancelledError, DeadlineExceededError, InvalidArgumentError
from services.settings import Settings
from tests.test_api_harness import *  # noqa: F403 - fixtures
from tests.test_api_harness import DIM, TOKEN, Api, RecordingDispatcher, make_api
from tests.test_api_server import FakeEmbedder

AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _wait_until(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file()) if directory.exists() else []


def _stop(a: Api) -> None:
    a.client.close()
    a.server.stop(0).wait(10)


# ---------------------------------------------------------------------------- 1. threads


def _stalled(channel: grpc.Channel, release: threading.Event, method: str = "UploadVideo"):
    """A client stream that sends its metadata, then nothing until `release` is set."""
    stub = sora_pb2_grpc.SoraIndexStub(channel)
    if method == "UploadVideo":
        first = pb.UploadVideoRequest(metadata=pb.UploadMetadata(filename="stalled.mp4"))
    else:
        first = pb.SearchByClipRequest(metadata=pb.ClipQueryMetadata(options=search_options()))

    def requests():
        yield first
        release.wait()

    return getattr(stub, method).future(requests(), metadata=AUTH, timeout=120)


def _code_of(future) -> grpc.StatusCode:
    exc = future.exception()
    return grpc.StatusCode.OK if exc is None else exc.code()


def test_a_concurrency_cap_above_the_thread_pool_is_refused_at_start(db, tmp_path):
    with pytest.raises(ValueError, match="SORA_MAX_CONCURRENT_RPCS"):
        make_api(db, tmp_path, max_workers=8, max_concurrent_rpcs=16, start=False)
    with pytest.raises(ValueError, match="SORA_API_WORKERS"):
        make_api(db, tmp_path, max_workers=8, max_concurrent_rpcs=8, start=False)


class _Refused(Exception):
    pass


class _Context:
    def abort(self, code, message):
        raise _Refused(code, message)


class _Details:  # grpc.HandlerCallDetails' fields
    method, invocation_metadata = "/sora.v1.SoraIndex/Search", ()


def _limited_call(limiter: CallLimiter, handler, request):
    return limiter.intercept_service(lambda _: handler, _Details()).unary_unary(request, _Context())


def test_the_limiter_runs_the_handler_grpc_gives_for_each_call():
    """The limited wrapper is made once per method, but never outlives its handler: an
    auth refusal's handler (new for each call) in between, then the method's own again."""
    limiter = CallLimiter(2)
    served = grpc.unary_unary_rpc_method_handler(lambda request, context: f"served {request}")
    denied = grpc.unary_unary_rpc_method_handler(lambda request, context: "denied")
    calls = [(served, 1), (served, 2), (denied, 3), (served, 4)]
    answers = [_limited_call(limiter, handler, request) for handler, request in calls]
    assert answers == ["served 1", "served 2", "denied", "served 4"]
    assert limiter.active == 0  # every slot given back
    assert limiter.intercept_service(lambda _: None, _Details()) is None  # unknown method
    # made once: the same handler again gets the same wrapper
    first = limiter.intercept_service(lambda _: served, _Details())
    assert limiter.intercept_service(lambda _: served, _Details()) is first


def test_a_streaming_response_holds_its_slot_until_the_stream_ends():
    limiter = CallLimiter(1)
    handler = grpc.unary_stream_rpc_method_handler(lambda request, context: iter(range(request)))
    stream = limiter.intercept_service(lambda _: handler, _Details()).unary_stream(3, _Context())
    assert limiter.active == 0  # taken when the stream starts, not when it is made
    assert next(stream) == 0 and limiter.active == 1
    with pytest.raises(_Refused):  # the cap is 1: a second call is refused meanwhile
        _limited_call(limiter, grpc.unary_unary_rpc_method_handler(lambda r, c: r), 1)
    assert list(stream) == [1, 2] and limiter.active == 0
    ended_early = limiter.intercept_service(lambda _: handler, _Details()).unary_stream(
        5, _Context()
    )
    next(ended_early)
    ended_early.close()  # a client that goes away mid-stream
    assert limiter.active == 0


def test_the_limiter_refuses_past_its_cap_and_frees_slots_on_errors():
    limiter = CallLimiter(2)
    seen = []

    def nested(depth, context):  # each level holds a slot while it calls the next
        seen.append(limiter.active)
        return depth if depth == 3 else _limited_call(limiter, handler, depth + 1)

    handler = grpc.unary_unary_rpc_method_handler(nested)
    with pytest.raises(_Refused) as refused:
        _limited_call(limiter, handler, 1)
    assert refused.value.args[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "SORA_MAX_CONCURRENT_RPCS" in refused.value.args[1]
    assert seen == [1, 2] and limiter.active == 0  # the third was refused, slots back
    assert _limited_call(limiter, handler, 2) == 3  # two levels fit the cap


def test_health_answers_within_a_second_during_a_flood_of_stalled_uploads(db, tmp_path):
    a = make_api(db, tmp_path)  # the default thread pool and concurrency cap
    incoming = a.settings.uploads_dir / ".incoming"
    release = threading.Event()
    channel = grpc.insecure_channel(a.address)
    n = a.settings.max_concurrent_rpcs + 10  # some must be refused
    flood = []
    try:
        flood = [_stalled(channel, release) for _ in range(n)]

        def settled() -> bool:  # each upload holds a thread (a .part file) or was refused
            held = len(_files(incoming))
            return held + sum(f.done() for f in flood) >= n or held >= a.settings.max_workers

        _wait_until(settled, "the stalled uploads did not reach the server")
        t0 = time.monotonic()
        assert a.client.health(timeout=1.0) == "SERVING"
        assert time.monotonic() - t0 < 1.0
        # Other calls are answered at once: served, or refused as overloaded; never hung.
        try:
            a.client.list_videos(timeout=1.0)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED)
        refused = [f for f in flood if f.done()]
        assert refused and all(_code_of(f) is grpc.StatusCode.RESOURCE_EXHAUSTED for f in refused)
    finally:
        release.set()
        for f in flood:
            f.exception(timeout=30)
        channel.close()
        _stop(a)


def test_a_client_stream_that_sends_nothing_ends_and_frees_its_thread(db, tmp_path):
    a = make_api(
        db,
        tmp_path,
        embedder=FakeEmbedder(np.ones((1, DIM), np.float32)),
        max_workers=4,
        max_concurrent_rpcs=2,
        stream_idle_s=0.5,
    )
    release = threading.Event()
    channel = grpc.insecure_channel(a.address)
    try:
        stalled = [_stalled(channel, release), _stalled(channel, release, "SearchByClip")]
        _wait_until(lambda: all(f.done() for f in stalled), "a stalled stream kept its thread")
        ended = (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert [_code_of(f) in ended for f in stalled] == [True, True]
        assert a.client.list_videos(timeout=5).videos == []  # the threads are free again
        assert _files(a.settings.uploads_dir / ".incoming") == []
        assert _files(a.settings.uploads_dir / ".queries") == []

        def slow_but_steady() -> Iterator[bytes]:  # never idle for long: not cut off
            for n in range(6):
                time.sleep(0.1)
                yield bytes([n]) * 1000

        r = a.client.upload_bytes(slow_but_steady(), filename="steady.mp4", timeout=30)
        assert r.created
    finally:
        release.set()
        channel.close()
        _stop(a)


# ---------------------------------------------------------------------------- 2. URL drip


class _DripHandler(http.server.BaseHTTPRequestHandler):
    """Promises 100 kB, then sends 64 bytes every 0.5 s (for at most 30 s)."""

    stop = threading.Event()
    sent = threading.Semaphore(0)  # released after every drip

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(60):
            try:
                self.wfile.write(b"d" * 64)
                self.wfile.flush()
            except OSError:
                return  # the client went away
            self.sent.release()
            if self.stop.wait(0.5):
                return

    def log_message(self, *args):
        pass


@contextmanager
def _drip_server() -> Iterator[str]:
    _DripHandler.stop = threading.Event()
    _DripHandler.sent = threading.Semaphore(0)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DripHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _DripHandler.stop.set()
        httpd.shutdown()
        httpd.server_close()


def _ingest(db, tmp_path: Path, base: str, **kw) -> IngestService:
    return IngestService(
        db,
        RecordingDispatcher(),
        uploads_dir=tmp_path / "uploads",
        allowed_url_prefixes=(f"{base}/",),
        **kw,
    )


def _no_files_left(tmp_path: Path) -> bool:
    return [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()] == []


def test_a_dripping_url_server_is_cut_off_at_the_deadline(db, tmp_path):
    with _drip_server() as base:
        svc = _ingest(db, tmp_path, base, url_timeout_s=1.5, url_min_rate=0)
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="SORA_URL_TIMEOUT"):
            svc.ingest_uri(NewVideo(f"{base}/drip.mp4"))
        assert time.monotonic() - t0 < 4.0  # 1.5 s, plus one drip interval and slack
    assert _no_files_left(tmp_path) and svc.dispatcher.sent == []


def test_a_url_server_under_the_minimum_rate_is_refused(db, tmp_path):
    with _drip_server() as base:
        svc = _ingest(
            db, tmp_path, base, url_timeout_s=60, url_min_rate=1024, url_rate_window_s=1.0
        )
        t0 = time.monotonic()
        with pytest.raises(Exception) as e:
            svc.ingest_uri(NewVideo(f"{base}/drip.mp4"))
        assert status_of(e.value)[0] is grpc.StatusCode.UNAVAILABLE
        assert "SORA_URL_MIN_RATE" in str(e.value)
        assert time.monotonic() - t0 < 10.0  # not the 60 s deadline, nor the 30 s drip
    assert _no_files_left(tmp_path)


def test_a_download_notices_the_client_going_away(db, tmp_path):
    with _drip_server() as base:
        svc = _ingest(db, tmp_path, base, url_timeout_s=60, url_min_rate=0)
        gone = threading.Event()

        def cancel_after_two_drips() -> None:
            for _ in range(2):
                _DripHandler.sent.acquire(timeout=30)
            gone.set()

        threading.Thread(target=cancel_after_two_drips, daemon=True).start()
        call = Call(is_active=lambda: not gone.is_set())
        with pytest.raises(CallCancelledError):
            svc.ingest_uri(NewVideo(f"{base}/drip.mp4"), call)
        assert gone.is_set()
        noticed = time.monotonic()
        _DripHandler.stop.set()
    assert time.monotonic() - noticed < 5.0
    assert _no_files_left(tmp_path)


# ---------------------------------------------------------------------------- 7. URL chars


@pytest.mark.parametrize("bad", ["\r\nHost: evil", "\n", "\x00", "\x7f", " x", "\t"])
def test_control_characters_in_a_url_are_refused_before_fetching(db, tmp_path, bad):
    fetched = []
    svc = _ingest(db, tmp_path, "http://127.0.0.1:9")
    svc._download = lambda *a: fetched.append(a)  # noqa: SLF001 - must never be reached
    with pytest.raises(InvalidArgumentError, match="control character") as e:
        svc.ingest_uri(NewVideo(f"http://127.0.0.1:9/a{bad}.mp4"))
    assert status_of(e.value)[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert fetched == []


# ---------------------------------------------------------------------------- 6. disks


@pytest.mark.parametrize(
    "err, code, needle",
    [
        (errno.ENOSPC, grpc.StatusCode.RESOURCE_EXHAUSTED, "out of disk space"),
        (errno.EDQUOT, grpc.StatusCode.RESOURCE_EXHAUSTED, "out of disk space"),
        (errno.EROFS, grpc.StatusCode.UNAVAILABLE, "read-only"),
    ],
)
def test_a_full_or_read_only_disk_says_so(tmp_path, monkeypatch, err, code, needle):
    import services.api.ingest_service as ingest_module

    real_open = open

    class Failing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(err, os.strerror(err), "/secret/path/x.part")

    def failing_open(path, mode="r", *a, **kw):
        return Failing(real_open(path, mode, *a, **kw))

    monkeypatch.setattr(ingest_module, "open", failing_open, raising=False)
    with pytest.raises(OSError) as e:
        receive_file(iter([b"abc"]), tmp_path, cap=100, call=Call())
    assert list(tmp_path.iterdir()) == []  # the partial file is removed
    got, message = status_of(e.value)
    assert got is code and needle in message
    assert "/secret/path" not in message  # the server's paths are not shown
    other = OSError(errno.EIO, "I/O error")  # anything else stays INTERNAL
    assert status_of(other)[0] is grpc.StatusCode.INTERNAL


# ---------------------------------------------------------------------------- 3, 4. files


def test_a_refused_upload_leaves_no_file(api: Api):
    data = b"refused bytes" * 100
    for kw in ({"collection": "c" * 1000}, {"tags": [""]}, {"tags": ["t" * 1000]}):
        with pytest.raises(grpc.RpcError) as e:
            api.client.upload_bytes(data, filename="x.mp4", **kw)
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT, kw
        assert (
            _files(api.settings.uploads_dir) == []
            and _files(api.settings.uploads_dir / ".incoming") == []
        )
    # The same bytes, once accepted, then refused with bad metadata: the accepted video's
    # file stays.
    r = api.client.upload_bytes(data, filename="x.mp4")
    kept = _files(api.settings.uploads_dir)
    assert len(kept) == 1
    with pytest.raises(grpc.RpcError):
        api.client.upload_bytes(data, filename="x.mp4", collection="c" * 1000)
    assert _files(api.settings.uploads_dir) == kept and kept[0].read_bytes() == data
    assert api.client.get_video(r.video_id).uri == str(kept[0])


def test_start_up_sweeps_partial_files_a_killed_server_left(db, tmp_path, caplog):
    home = tmp_path / "home"
    old = time.time() - 7200
    stale, fresh = [], []
    for sub in (".incoming", ".queries"):
        d = home / "uploads" / sub
        d.mkdir(parents=True)
        s = d / "dead.part"
        s.write_bytes(b"x")
        os.utime(s, (old, old))
        f = d / "live.part"  # another replica may be writing it
        f.write_bytes(b"y")
        stale.append(s)
        fresh.append(f)
    kept = home / "uploads" / "video.mp4"
    kept.write_bytes(b"z")
    os.utime(kept, (old, old))
    caplog.set_level("INFO")
    a = make_api(db, tmp_path, upload_time_limit_s=3600)
    try:
        assert [p.exists() for p in stale] == [False, False]
        assert [p.exists() for p in fresh] == [True, True] and kept.exists()
        assert all(str(p) in caplog.text for p in stale)
    finally:
        _stop(a)


def test_settings_read_the_new_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("SORA_STREAM_IDLE_TIMEOUT", "7")
    monkeypatch.setenv("SORA_UPLOAD_TIME_LIMIT", "90")
    monkeypatch.setenv("SORA_URL_MIN_RATE", "2048")
    s = Settings.from_env()
    assert (s.stream_idle_s, s.upload_time_limit_s, s.url_min_rate) == (7.0, 90.0, 2048)
    assert s.max_concurrent_rpcs <= s.max_workers - 1


def test_an_upload_longer_than_the_upload_time_limit_is_ended(db, tmp_path):
    a = make_api(db, tmp_path, stream_idle_s=5, upload_time_limit_s=0.5)
    try:

        def trickle() -> Iterator[bytes]:  # never idle, but endless
            for n in range(100):
                time.sleep(0.05)
                yield bytes([n % 256]) * 100

        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            a.client.upload_bytes(trickle(), filename="t.mp4", timeout=30)
        assert e.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "SORA_UPLOAD_TIME_LIMIT" in e.value.details()
        assert time.monotonic() - t0 < 4.0
        assert _files(a.settings.uploads_dir / ".incoming") == []
    finally:
        _stop(a)


def test_refusals_do_not_list_the_allowed_roots_or_url_prefixes(db, tmp_path):
    root = tmp_path / "private-root"
    root.mkdir()
    prefix = "https://internal.example.com/private-videos/"
    svc = IngestService(
        db,
        RecordingDispatcher(),
        uploads_dir=tmp_path / "uploads",
        allowed_roots=(root,),
        allowed_url_prefixes=(prefix,),
    )
    for uri in ("/etc/passwd", "https://elsewhere.example.com/a.mp4"):
        with pytest.raises(Exception) as e:
            svc.ingest_uri(NewVideo(uri))
        code, message = status_of(e.value)
        assert code is grpc.StatusCode.PERMISSION_DENIED and "ask the operator" in message
        assert "private" not in message
