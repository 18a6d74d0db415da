"""SoraClient as tools use it, against a real server (create_server on port 0, SQLite, a
worker's ingest job run by the real worker code in a thread of the test): the example
script docs/examples/tool_client.py end to end, `sora export` read back with pyarrow and
numpy, and retries of UNAVAILABLE while a server comes up."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest

from services.api.client import NO_RETRIES, RetryPolicy, SoraClient
from services.api.server import create_server
from services.settings import Settings
from services.store import open_store
from tests.media_factory import make_video
from tests.workers_harness import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tool-token"
pytestmark = pytest.mark.slow


class ThreadWorker:
    """Runs each sent ingest job with the worker's own code (workers.ingest_job), one at a
    time, in a thread: the embedded service's worker, without a broker."""

    def __init__(self, store, embedder) -> None:
        self.store, self.embedder = store, embedder
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def send(self, job_ids):
        from workers.ingest_job import run_ingest_job

        ids = [int(j) for j in job_ids]

        def run() -> None:
            for job_id in ids:
                with self.lock:
                    run_ingest_job(self.store, self.embedder, job_id, owner="t", lease_s=600)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)
        return ids


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from sora_encoder import load_embedder

    home = tmp_path_factory.mktemp("home")
    store = open_store(f"sqlite:///{home / 'sora.db'}")
    embedder = load_embedder(variant="sora-t", precision="fp32")
    settings = Settings(home=home, database_url="unused://", broker_url="unused://",
                        api_token=TOKEN, index_sync_interval_s=0.2)  # fmt: skip
    server, port = create_server(
        "127.0.0.1:0", settings=settings, store=store, dispatcher=ThreadWorker(store, embedder),
        embedder=embedder, model_version=embedder.model_version,
    )  # fmt: skip
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait(10)
        store.dispose()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("library")
    (d / "day1").mkdir()
    make_video(d / "day1" / "a.mp4", duration_s=6, source="testsrc2")
    make_video(d / "day1" / "b.mp4", duration_s=5, source="mandelbrot")
    make_video(d / "c.mp4", duration_s=9, source="smptebars")
    return d


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_the_example_tool_ingests_waits_searches_and_exports(service, folder, tmp_path):
    out = tmp_path / "dailies.parquet"
    args = ["docs/examples/tool_client.py", str(folder), "--collection", "dailies",
            "--out", str(out), "--address", service, "--token", TOKEN]  # fmt: skip
    res = run(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert (report["queued"], report["refused"], report["failed"]) == (3, {}, {})
    assert report["query"] == "c.mp4"
    assert {h["external_id"] for h in report["similar"]} == {"day1/a.mp4", "day1/b.mp4"}

    table = pq.read_table(out).to_pylist()
    assert report["exported_rows"] == len(table) and report["exported_videos"] == 3
    with SoraClient(service, token=TOKEN) as client:
        by_id = {}
        for row in table:
            by_id.setdefault(row["external_id"], []).append(row)
        assert set(by_id) == {"day1/a.mp4", "day1/b.mp4", "c.mp4"}
        for external_id, rows in by_id.items():
            video = client.get_video_by_external_id(external_id, collection="dailies")
            emb = client.get_embeddings(video.id)
            assert [r["segment_id"] for r in rows] == [s.segment_id for s in emb.segments]
            xb = np.array([r["vector"] for r in rows], dtype=np.float32)  # (n, d)
            assert np.array_equal(xb, np.array([list(s.vector) for s in emb.segments],
                                               dtype=np.float32))  # fmt: skip
            assert [(r["start_s"], r["end_s"]) for r in rows] == [
                (s.start_s, s.end_s) for s in emb.segments
            ]
            assert rows[0]["user_metadata"] == [("ingested_by", "tool_client")]
            assert rows[0]["original_path"] == str(folder / external_id)
            assert rows[0]["model_version"] == emb.model_version

    # again: the same files under the same ids are the same videos, nothing queued
    again = json.loads(run(*args).stdout)
    assert (again["queued"], again["known"], again["refused"]) == (0, 3, {})


def test_sora_export_npy_rows_match_get_embeddings(service, folder, tmp_path):
    with SoraClient(service, token=TOKEN) as client:
        if not list(client.iter_videos(collection="dailies")):
            r = [client.upload(p, collection="dailies", external_id=p.name)
                 for p in sorted(folder.rglob("*.mp4"))]  # fmt: skip
            client.wait_for_jobs([x.job_id for x in r if x.job_id], timeout=300)
        out = tmp_path / "emb.npy"
        res = run("-m", "sora_cli.main", "export", "--collection", "dailies", "--format", "npy",
                  "--out", str(out), "--address", service, "--token", TOKEN)  # fmt: skip
        assert res.returncode == 0, res.stderr
        xb = np.load(out)
        rows = [json.loads(line) for line in (tmp_path / "emb.rows.jsonl").read_text().splitlines()]
        assert xb.dtype == np.float32 and xb.shape[0] == len(rows) > 0
        for i, row in enumerate(rows):
            emb = client.get_embeddings(row["video_id"])
            seg = next(s for s in emb.segments if s.segment_id == row["segment_id"])
            assert np.array_equal(xb[i], np.asarray(seg.vector, dtype=np.float32))
            assert row["collection"] == "dailies" and row["external_id"]

        vid_out = tmp_path / "videos.parquet"
        res = run("-m", "sora_cli.main", "export", "--collection", "dailies", "--level", "video",
                  "--out", str(vid_out), "--address", service, "--token", TOKEN)  # fmt: skip
        assert res.returncode == 0, res.stderr
        table = pq.read_table(vid_out).to_pylist()
        assert len(table) == len(list(client.iter_videos(collection="dailies")))
        for row in table:
            emb = client.get_embeddings(row["video_id"])
            assert np.array_equal(np.float32(row["vector"]), np.float32(emb.video_vector))
        res = run("-m", "sora_cli.main", "export", "--collection", "nothing-here",
                  "--out", str(tmp_path / "none.parquet"), "--address", service,
                  "--token", TOKEN)  # fmt: skip
        assert res.returncode == 1 and "nothing to export" in res.stderr
        assert not (tmp_path / "none.parquet").exists()


def test_unavailable_is_retried_with_back_off_until_the_server_is_up(tmp_path):
    """Nothing listens on the port at first; the back-off hook starts the server during
    the second wait, and a later attempt succeeds."""
    port = free_port()
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    settings = Settings(home=tmp_path / "home", database_url="unused://",
                        broker_url="unused://", api_token=TOKEN)  # fmt: skip
    waits: list[float] = []
    servers = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            server, _ = create_server(f"127.0.0.1:{port}", settings=settings, store=store,
                                      dispatcher=ThreadWorker(store, None),
                                      model_version="m")  # fmt: skip
            server.start()
            assert server.keeper.wait_ready(10)
            servers.append(server)

    def sleep_and_start(seconds: float) -> None:
        sleep(seconds)
        time.sleep(seconds)

    policy = RetryPolicy(max_attempts=8, initial_backoff_s=0.1, jitter=0.0, sleep=sleep_and_start)
    try:
        with SoraClient(f"127.0.0.1:{port}", token=TOKEN, timeout=5, retry=policy) as c:
            assert list(c.list_videos().videos) == []
        assert (
            waits[:2] == [0.1, 0.2]
            and all(  # exponential
                b == 2 * a for a, b in zip(waits, waits[1:], strict=False)
            )
        )
        with SoraClient(
            f"127.0.0.1:{free_port()}",
            token=TOKEN,
            timeout=5,
            retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01),
        ) as c:
            with pytest.raises(grpc.RpcError) as e:  # bounded: the last error is raised
                c.get_video(1)
            assert e.value.code() is grpc.StatusCode.UNAVAILABLE
        # a call that is not safe to repeat is not retried
        calls: list[float] = []
        no_retry = RetryPolicy(max_attempts=5, sleep=calls.append)
        with SoraClient(f"127.0.0.1:{free_port()}", token=TOKEN, timeout=5, retry=no_retry) as c:
            with pytest.raises(grpc.RpcError):
                c.train_classifier("x", {1: "a", 2: "b"})
        assert calls == []
        assert NO_RETRIES.max_attempts == 1
    finally:
        for s in servers:
            s.stop(0).wait(10)
        store.dispose()
