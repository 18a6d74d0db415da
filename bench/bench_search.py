"""Benchmark: vector search through the real gRPC server at 10^5 and 10^6 segment vectors,
idle and while an ingest writes new videos, in one run.

    xb  clustered unit vectors (bench_index.make_vectors), 10 segments per video; a video's
        vector is the normalised mean of its segments
        --bulk INSERT--> SQLite (temp)   ids 1..n, model_version fixed, videos READY
                         or PostgreSQL (--database postgresql: loaded once into a cache
                         database, cloned per run by CREATE DATABASE ... TEMPLATE)
    server process   create_server(127.0.0.1:0): the index keeper builds the FAISS index
                     from SQL; health SERVING when loaded; it syncs with SQL every second
    this process     grpc.aio, N concurrent tasks on one channel, Search(vector, top_k=10)
                     with held-out queries, pre-serialised, for a fixed time per setting
    ingest process   (phase "ingest") register_video + complete_ingest at --ingest-rate
                     videos/s of 10 segments, as the API and a worker would
    echo process     the floor of the RPC stack: the same method and messages, a fixed
                     answer (one the project gave), no search; sync and/or aio server
    Milvus Lite      (--milvus-python) the competitor, bench/milvus_lite.py in its own venv:
                     the same vectors and queries, IVF_FLAT asked, idle settings only
    interleaving     per setting, the project and each echo back to back, --rounds times
                     (A B A B), so a busy host moves both; ratios use the medians
    filter           "collection": videos are in c0..c3, queries ask for c0 (a quarter)
    cache            the library (SQL and index snapshots) is built once per size under
                     --cache (runs/bench_search) and copied for each run

  latency   p50 / p99 of each call as the client sees it, QPS over the setting's wall time,
            with 1, 8 and 64 concurrent clients, per level (SEGMENT, VIDEO)
  cpu       server and client CPU seconds per call (2 cores: the sum bounds the QPS)
  recall    recall@10 of the served hits against exact search over the same vectors
            (faiss.knn, ids = SQL ids), ties tolerated (services.index.recall_at_k)
  stages    where one call's time goes in the server (one client): FAISS, the SQL
            look-ups, the rest of the search, proto building, and gRPC + transport
            (client latency minus the handler); the keeper's share of a second
  ingest    refused calls (RESOURCE_EXHAUSTED: past the server's max_concurrent_rpcs) apart
            from other errors; full index rebuilds begun during a setting; vectors in SQL
            not yet in the served index at its end; after the ingest stops, how long until
            its last video is found by search and every index holds what SQL holds

Targets (issue 12) at 10^6 segment vectors, as ratios to the floor of the same run: 64
clients >= 0.5 of its QPS (0.4 filtered) with nothing refused below the cap; one client
p50 <= 2x and p99 <= 4x its latency; recall@10 >= 0.95; under ingest >= 0.8 of idle.

    python bench/bench_search.py [--sizes 100000,1000000] [--quick] [--duration 10]
        [--rounds 2] [--echo sync,aio] [--filters none,collection] [--phases idle,ingest]
        [--database sqlite|postgresql] [--milvus-python PY] [--json OUT]
"""

# ruff: noqa: E741  (I: faiss's name for the id matrix)
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import pg_scratch  # noqa: E402
from bench._common import machine_info, print_table, write_json  # noqa: E402
from bench.bench_index import add_data_options, data_options, make_vectors  # noqa: E402
from services.api.client import SoraClient  # noqa: E402
from services.api.gen.sora.v1 import sora_pb2 as pb  # noqa: E402
from services.index import recall_at_k  # noqa: E402

log = logging.getLogger("bench_search")

K = 10
PER_VIDEO = 10  # segments per synthetic video
SEGMENT_S = 4.0
MODEL_VERSION = "bench-search-v1"
SEARCH_METHOD = "/sora.v1.SoraIndex/Search"
BATCH_METHOD = "/sora.v1.SoraIndex/SearchBatch"
MILVUS = "milvus-lite"  # the competitor's name in the runs
LEAN = "lean"  # the lean reference's: the echo floor plus the search (_lean_search)
ONE_PROCESS = "-1p"  # an echo server's name suffix: one process (beside --api-processes N)
BATCH = 256  # queries per SearchBatch call (the RPC's maximum)
LEVELS = {"segment": pb.SEARCH_LEVEL_SEGMENT, "video": pb.SEARCH_LEVEL_VIDEO}
TARGET_RECALL = 0.95
CALL_TIMEOUT_S = 10.0
COLLECTIONS = 4  # videos are spread over collections c0..c3; the filter asks for c0
FILTERS = {"none": None, "collection": "c0"}
WARMUP_CALLS = 20  # per setting, before the clock starts


# ---------------------------------------------------------------------------- data


def make_library(n: int, dim: int, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(xb (n, d) segment vectors, xv (n / PER_VIDEO, d) video vectors), unit float32."""
    assert n % PER_VIDEO == 0, f"n={n} must be a multiple of {PER_VIDEO}"
    xb = make_vectors(n, dim, **data, sample_seed=0)
    xv = xb.reshape(n // PER_VIDEO, PER_VIDEO, dim).mean(axis=1)  # (videos, d)
    xv /= np.linalg.norm(xv, axis=1, keepdims=True)
    return xb, xv.astype(np.float32)


def make_queries(nq: int, dim: int, data: dict) -> dict[str, np.ndarray]:
    """Held-out queries from the data's distribution, per level (never stored)."""
    xq_video = make_vectors(nq * PER_VIDEO, dim, **data, sample_seed=3)
    xq_video = xq_video.reshape(nq, PER_VIDEO, dim).mean(axis=1)  # (nq, d)
    xq_video /= np.linalg.norm(xq_video, axis=1, keepdims=True)
    return {
        "segment": make_vectors(nq, dim, **data, sample_seed=1),
        "video": xq_video.astype(np.float32),
    }


def load_sql(url: str, xb: np.ndarray, xv: np.ndarray, *, batch_videos: int = 10_000) -> None:
    """Videos (READY), their segments and video vectors straight into SQL, ids 1..n, in
    bulk INSERTs through the ORM tables (what a worker's complete_ingest writes, minus
    the jobs), one transaction per batch."""
    from services.store import Segment, Video, VideoEmbedding, VideoStatus, open_store
    from services.store.models import utcnow

    store = open_store(url)
    now = utcnow()
    n_videos = len(xv)
    try:
        for lo in range(0, n_videos, batch_videos):
            hi = min(n_videos, lo + batch_videos)
            videos = [
                {
                    "id": v + 1,
                    "uri": f"synthetic://bench/{v + 1}",
                    "content_sha256": f"{v + 1:064x}",
                    "size_bytes": 1 << 20,
                    "status": VideoStatus.READY,
                    "duration_s": PER_VIDEO * SEGMENT_S,
                    "collection": f"c{v % COLLECTIONS}",
                    "created_at": now,
                    "updated_at": now,
                }
                for v in range(lo, hi)
            ]
            blob = np.ascontiguousarray(xb[lo * PER_VIDEO : hi * PER_VIDEO], dtype="<f4")
            step = blob.shape[1] * 4
            raw = blob.tobytes()
            segments = [
                {
                    "id": i + 1,
                    "video_id": i // PER_VIDEO + 1,
                    "segment_index": i % PER_VIDEO,
                    "start_s": (i % PER_VIDEO) * SEGMENT_S,
                    "end_s": (i % PER_VIDEO + 1) * SEGMENT_S,
                    "vector": raw[(i - lo * PER_VIDEO) * step : (i - lo * PER_VIDEO + 1) * step],
                    "model_version": MODEL_VERSION,
                }
                for i in range(lo * PER_VIDEO, hi * PER_VIDEO)
            ]
            embeddings = [
                {
                    "id": v + 1,
                    "video_id": v + 1,
                    "model_version": MODEL_VERSION,
                    "vector": np.ascontiguousarray(xv[v], dtype="<f4").tobytes(),
                }
                for v in range(lo, hi)
            ]
            with store.engine.begin() as conn:
                conn.execute(Video.__table__.insert(), videos)
                conn.execute(Segment.__table__.insert(), segments)
                conn.execute(VideoEmbedding.__table__.insert(), embeddings)
    finally:
        store.dispose()


def exact_truth(
    xq: np.ndarray, xb: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(D, I) of exact inner-product search, 2k columns (ties), I as SQL ids (row + 1);
    `rows`: search only these rows of xb (a filter)."""
    if rows is None:
        D, pos = faiss.knn(xq, xb, 2 * K, metric=faiss.METRIC_INNER_PRODUCT)
        return D, pos + 1
    D, pos = faiss.knn(xq, np.ascontiguousarray(xb[rows]), 2 * K, metric=faiss.METRIC_INNER_PRODUCT)
    return D, np.where(pos >= 0, rows[np.maximum(pos, 0)] + 1, -1)


def filtered_rows(n_rows: int, per_video: int) -> np.ndarray:
    """Rows whose video is in collection c0 (load_sql: video v in c{v % COLLECTIONS})."""
    rows = np.arange(n_rows)
    return rows[(rows // per_video) % COLLECTIONS == 0]


# ---------------------------------------------------------------------------- server process


class _RecordingDispatcher:
    """Stands in for Celery: the bench never ingests through the API."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, job_ids: Any) -> list[int]:
        ids = list(job_ids)
        self.sent.extend(ids)
        return ids


class _StageTimes:
    """Wall time and calls per wrapped function, summed over threads (server side)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                with self._lock:
                    c = self.totals[name]
                    c[0] += 1
                    c[1] += dt

        setattr(owner, attr, timed)

    def take(self) -> dict[str, list[float]]:
        with self._lock:
            out = {k: list(v) for k, v in self.totals.items()}
            self.totals.clear()
        return out


# Thread kinds a server's CPU is split into: by Python thread name, else the OS's
THREAD_KINDS = ("rpc pool", "grpc poller", "grpc engine", "keeper", "other")


def _thread_kind(name: str) -> str:
    if "(_serve)" in name:  # grpc's sync server: the thread that polls its completion queue
        return "grpc poller"
    if name.startswith(("sora-rpc", "ThreadPoolExecutor")):  # the handlers' pool
        return "rpc pool"
    if name.startswith("event_engine"):  # gRPC's C core (no Python)
        return "grpc engine"
    if name.startswith("sora-index-keeper"):
        return "keeper"
    return "other"  # the main thread, OpenMP's, the aio event loop


def thread_cpu_s() -> dict[str, float]:
    """This process's CPU seconds so far by kind of thread (THREAD_KINDS), from
    /proc/self/task (Linux; {} elsewhere). A thread that ended takes its seconds along."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return {}
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out = dict.fromkeys(THREAD_KINDS, 0.0)
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)"
            name = names.get(tid)
            if name is None:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    name = f.read().strip()
        except OSError:
            continue  # ended meanwhile
        out[_thread_kind(name)] += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def server_settings(url: str, home: str | Path) -> Any:
    """The API server's Settings over the library at `url` (snapshots under `home`)."""
    from services.settings import Settings

    return Settings(home=Path(home), database_url=url, broker_url="memory://")


def _server_main(
    url: str, home: str, conn: Any, max_workers: int | None, max_concurrent_rpcs: int | None,
    address: str = "127.0.0.1:0", processes: int = 1, index: int = 0,
) -> None:  # fmt: skip
    """The API server in its own process; answers "stats", "info" and "stop" on `conn`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s server %(name)s %(message)s")
    from services.api import converters
    from services.api.index_keeper import IndexKeeper
    from services.api.search_service import SearchService
    from services.api.server import create_server, freeze_after_load
    from services.api.servicer import SoraIndexServicer
    from services.index import VectorIndex
    from services.search import packed, pipeline
    from services.store import open_store, vector_source

    stages = _StageTimes()
    # Before create_server: gRPC binds the servicer's methods when it is registered.
    stages.wrap(SoraIndexServicer, "Search", "handler")
    # Search by vector is coalesced (services/api/coalesce.py): with one client a batch of
    # one, so per batch is per call; the batch's run, hits and placing
    stages.wrap(SearchService, "_segment_batch", "search")
    stages.wrap(VectorIndex, "search", "faiss")
    stages.wrap(pipeline, "admit", "filter")  # the in-memory catalogue (a redone query)
    stages.wrap(packed, "admit_videos", "filter")  # ... for the batch
    stages.wrap(SearchService, "_segments", "sql_segments")  # segment rows: memory, else SQL
    stages.wrap(converters, "search_to_pb", "proto")
    stages.wrap(IndexKeeper, "sync_once", "keeper_sync")
    stages.wrap(VectorIndex, "_log_rebuild", "rebuild")  # a full rebuild from SQL begins

    store = open_store(url)
    settings = server_settings(url, home)
    if max_workers:
        settings = dataclasses.replace(settings, max_workers=max_workers)
    if max_concurrent_rpcs:
        settings = dataclasses.replace(settings, max_concurrent_rpcs=max_concurrent_rpcs)
    settings = dataclasses.replace(settings, api_processes=processes, api_process_index=index)
    server, port = create_server(
        address,
        settings=settings,
        store=store,
        dispatcher=_RecordingDispatcher(),
        model_version=MODEL_VERSION,
    )
    t0 = time.perf_counter()
    server.start()
    freeze_after_load(server)  # as the API process's main() does
    conn.send({"port": port, "pid": os.getpid()})
    while True:
        cmd = conn.recv()
        if cmd == "stats":
            conn.send({"stages": stages.take(), "cpu_s": time.process_time(),
                       "threads": thread_cpu_s()})  # fmt: skip
        elif cmd == "info":
            server.keeper.wait_ready(None)
            source = vector_source(store)
            _, indexes = server.keeper.current()
            conn.send(
                {
                    "ready_s": time.perf_counter() - t0,
                    "indexes": {
                        level: {
                            "ntotal": index.ntotal,
                            "sql_count": source.count(level, MODEL_VERSION),
                            "factory": index.manifest.factory,
                            "nprobe": index.manifest.search_params.get("nprobe", 0),
                            "recall_at_10_build": index.manifest.recall_at_10,
                        }
                        for level, index in indexes.items()
                    },
                }
            )
        elif cmd == "stop":
            break
    server.stop(grace=2).wait(15)  # a rebuild under way is not waited for
    store.dispose()
    conn.send("stopped")


class ServerProcess:
    processes = 1  # see ProcessGroup

    def __init__(
        self, url: str, home: Path, max_workers: int | None = None, cap: int | None = None,
        address: str = "127.0.0.1:0", processes: int = 1, index: int = 0,
    ) -> None:  # fmt: skip
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        args = (url, str(home), child, max_workers, cap, address, processes, index)
        self.proc = ctx.Process(target=_server_main, args=args, daemon=True)
        self.proc.start()
        child.close()  # the child's end is the child's: recv() fails if it dies before hello
        hello = self._conn.recv()
        self.port, self.pid = hello["port"], hello["pid"]
        self.address = f"127.0.0.1:{self.port}"

    def ask(self, cmd: str) -> Any:
        self._conn.send(cmd)
        return self._conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            try:
                self.ask("stop")
            except (EOFError, OSError):
                pass
            self.proc.join(60)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


# ---------------------------------------------------------------------------- Milvus Lite


class MilvusProcess:
    """bench/milvus_lite.py run by another venv's python (--milvus-python), driven by one
    JSON line a command (see that file): the competitor, on the same vectors."""

    def __init__(self, python: str, home: Path) -> None:
        import subprocess

        self.home = home
        self.proc = subprocess.Popen(
            [python, str(ROOT / "bench" / "milvus_lite.py"), str(home / "milvus.db")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.versions = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Milvus Lite helper ended (exit {self.proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"Milvus Lite: {answer['error']}")
        return answer

    def ask(self, **cmd: Any) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def array(self, name: str, x: np.ndarray) -> str:
        """x saved where the helper reads it -> its path."""
        path = self.home / f"milvus-{name}.npy"
        np.save(path, np.ascontiguousarray(x, dtype=np.float32))
        return str(path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(cmd="stop")
            except (OSError, RuntimeError, ValueError):
                pass
            try:
                self.proc.wait(60)
            except Exception:  # noqa: BLE001 - kill below
                self.proc.kill()


def milvus_recall(milvus: MilvusProcess, queries: str, level: str, truth: tuple,
                  collection: str | None) -> dict:  # fmt: skip
    ids = np.asarray(
        milvus.ask(cmd="search", level=level, queries=queries, k=K, collection=collection)["ids"]
    )
    D_exact, I_exact = truth
    return {"level": level, "filter": "collection" if collection else "none",
            "queries": len(ids), "recall_at_10": recall_at_k(ids, I_exact, K, D_exact)}  # fmt: skip


# ---------------------------------------------------------------------------- echo process


def _lean_search(
    replies: dict[int, pb.SearchResponse], index_dir: str, dim: int
) -> Callable[[bytes, Any], pb.SearchResponse]:
    """The lean reference's handler: the echo's, plus the search itself. The query vector
    made unit, searched in the project's served snapshot of its level (the project's own
    index code, faiss_index.search, with the manifest's nprobe), calls that arrive during
    a search coalesced into one batch (the project's Coalescer), and the fixed reply's
    hits given the results' ids and scores. No options, catalogue, filter, re-check or
    proto building: what any Python server answering from this index pays at least."""
    from services.api.coalesce import Coalescer
    from services.index import faiss_index as fi
    from services.index import snapshot

    indexes = {}
    for name, level in LEVELS.items():
        if level in replies:
            index, manifest = snapshot.load(index_dir, name, MODEL_VERSION, dim)
            fi.set_nprobe(index, int(manifest.search_params.get("nprobe", 0)))
            indexes[level] = index

    def compute(level: int, vectors: list[np.ndarray]) -> list[tuple[list, list]]:
        D, I = fi.search(indexes[level], np.stack(vectors), K)
        return list(zip(D.tolist(), I.tolist(), strict=True))

    coalescer = Coalescer(compute)

    def search(request: bytes, context: Any) -> pb.SearchResponse:
        query = pb.SearchRequest.FromString(request)
        level = query.options.level
        x = np.asarray(query.vector.values, dtype=np.float32)
        x /= np.sqrt(x @ x)
        scores, ids = coalescer.submit(level, x)
        reply = pb.SearchResponse()
        reply.CopyFrom(replies[level])
        for hit, score, id_ in zip(reply.hits, scores, ids, strict=False):
            hit.score = score
            if level == LEVELS["segment"]:
                hit.segment_id = id_
            else:
                hit.video.id = id_
        return reply

    return search


def _echo_main(
    conn: Any, model: str, max_workers: int, responses: dict[int, bytes],
    address: str = "127.0.0.1:0", lean: tuple[str, int] | None = None,
) -> None:  # fmt: skip
    """The floor of the RPC stack: a server of the same method and message shapes that
    parses each SearchRequest and answers, per level, a fixed SearchResponse (one the
    project served), with no search behind it. `model`: "sync" (grpc.server over a thread
    pool of `max_workers`, as create_server) or "aio" (grpc.aio, on the event loop).
    `lean` (index folder, dim): the lean reference instead, on the sync server: the
    floor plus the search (_lean_search)."""
    logging.basicConfig(level=logging.WARNING)
    if lean is not None and model != "sync":
        raise ValueError(f"the lean reference runs on the sync server, not {model!r}")
    replies = {lv: pb.SearchResponse.FromString(r) for lv, r in responses.items()}

    def echo(request: bytes, context: Any) -> pb.SearchResponse:
        return replies[pb.SearchRequest.FromString(request).options.level]

    search = echo if lean is None else _lean_search(replies, *lean)

    async def search_aio(request: bytes, context: Any) -> pb.SearchResponse:
        return replies[pb.SearchRequest.FromString(request).options.level]

    def handlers(fn: Any) -> Any:
        method = grpc.unary_unary_rpc_method_handler(
            fn, response_serializer=pb.SearchResponse.SerializeToString
        )
        return grpc.method_handlers_generic_handler("sora.v1.SoraIndex", {"Search": method})

    if model == "aio":

        async def serve() -> None:
            server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
            server.add_generic_rpc_handlers((handlers(search_aio),))
            port = server.add_insecure_port(address)
            await server.start()
            conn.send({"port": port, "pid": os.getpid()})
            loop = asyncio.get_running_loop()
            while True:
                cmd = await loop.run_in_executor(None, conn.recv)
                if cmd == "stats":
                    conn.send({"stages": {}, "cpu_s": time.process_time(),
                               "threads": thread_cpu_s()})  # fmt: skip
                elif cmd == "stop":
                    break
            await server.stop(0)

        asyncio.run(serve())
    else:
        from concurrent import futures

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                             options=[("grpc.so_reuseport", 1)])  # fmt: skip
        server.add_generic_rpc_handlers((handlers(search),))
        port = server.add_insecure_port(address)
        server.start()
        conn.send({"port": port, "pid": os.getpid()})
        while True:
            cmd = conn.recv()
            if cmd == "stats":
                conn.send({"stages": {}, "cpu_s": time.process_time(),
                           "threads": thread_cpu_s()})  # fmt: skip
            elif cmd == "stop":
                break
        server.stop(0).wait()
    conn.send("stopped")


class EchoProcess(ServerProcess):
    def __init__(
        self, model: str, max_workers: int, responses: dict[int, bytes],
        address: str = "127.0.0.1:0", lean: tuple[str, int] | None = None,
    ) -> None:  # fmt: skip
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        args = (child, model, max_workers, responses, address, lean)
        self.proc = ctx.Process(target=_echo_main, args=args, daemon=True)
        self.proc.start()
        child.close()  # the child's end is the child's: recv() fails if it dies before hello
        hello = self._conn.recv()
        self.port, self.pid = hello["port"], hello["pid"]
        self.address = f"127.0.0.1:{self.port}"


class ProcessGroup:
    """Several server processes on one port (SO_REUSEPORT; `--api-processes`), asked and
    stopped as one: "stats" sums CPU and stage times, "info" is the first one's. Each
    client then gets its own connection, for the kernel to spread over the processes."""

    def __init__(self, start: Callable[[str, int], ServerProcess], processes: int) -> None:
        """start(address, index) starts member `index` on `address`."""
        self.members = [start("127.0.0.1:0", 0)]
        try:
            for i in range(1, processes):
                self.members.append(start(self.members[0].address, i))
        except BaseException:  # a member failed to start: stop those that did
            self.stop()
            raise
        first = self.members[0]
        self.address, self.port, self.pid = first.address, first.port, first.pid
        self.processes = processes

    def ask(self, cmd: str) -> Any:
        answers = [m.ask(cmd) for m in self.members]
        if cmd != "stats":
            return answers[0]
        stages: dict[str, list[float]] = {}
        for a in answers:
            for name, (count, secs) in a["stages"].items():
                total = stages.setdefault(name, [0, 0.0])
                total[0], total[1] = total[0] + count, total[1] + secs
        threads = {kind: sum(a.get("threads", {}).get(kind, 0.0) for a in answers)
                   for kind in THREAD_KINDS}  # fmt: skip
        return {"stages": stages, "cpu_s": sum(a["cpu_s"] for a in answers), "threads": threads}

    def stop(self) -> None:
        for m in self.members:
            m.stop()


# ---------------------------------------------------------------------------- ingest process


def _ingest_main(url: str, dim: int, data: dict, rate: float, pool: int, stop: Any, out: Any):
    """Register and complete one video of PER_VIDEO segments every 1/rate s until `stop`;
    out[0] videos, out[1] vectors, out[2] failed writes, out[3] the last video id."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s ingest %(name)s %(message)s")
    from services.store import complete_ingest, open_store, register_video

    store = open_store(url)
    xs = make_vectors(pool * PER_VIDEO, dim, **data, sample_seed=2)  # (pool * 10, d)
    period, next_t, i = 1.0 / rate, time.monotonic(), 0
    while not stop.is_set():
        rows = xs[(i % pool) * PER_VIDEO : (i % pool + 1) * PER_VIDEO]  # (10, d)
        vv = rows.mean(axis=0)
        vv = (vv / np.linalg.norm(vv)).astype(np.float32)
        sha = hashlib.sha256(f"bench-search-ingest-{i}".encode()).hexdigest()
        try:
            with store.Session.begin() as s:  # the API's registration
                video, job, _ = register_video(
                    s, uri=f"synthetic://ingest/{i}", content_sha256=sha, size_bytes=1 << 20
                )
                video_id, job_id = video.id, job.id
            with store.Session.begin() as s:  # the worker's one write
                segments = [
                    (j, j * SEGMENT_S, (j + 1) * SEGMENT_S, rows[j]) for j in range(PER_VIDEO)
                ]
                complete_ingest(
                    s, job_id, video_id, model_version=MODEL_VERSION, segments=segments,
                    video_vector=vv,
                )  # fmt: skip
            out[0] += 1
            out[1] += PER_VIDEO + 1
            out[3] = video_id
        except Exception:  # noqa: BLE001 - counted and reported, the load goes on
            logging.getLogger("bench_search.ingest").exception("write failed")
            out[2] += 1
        i += 1
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    store.dispose()


class IngestProcess:
    def __init__(self, url: str, dim: int, data: dict, rate: float, max_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.out = ctx.Array("q", 4)
        pool = int(rate * max_s) + 1
        args = (url, dim, data, rate, pool, self.stop_event, self.out)
        self.proc = ctx.Process(target=_ingest_main, args=args, daemon=True)
        self.t0 = time.perf_counter()
        self.proc.start()

    def wait_started(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.out[0] == 0 and self.out[2] == 0:
            if time.monotonic() > deadline or not self.proc.is_alive():
                raise RuntimeError("the ingest process wrote nothing")
            time.sleep(0.05)
        self.t0 = time.perf_counter()
        self.start_counts = list(self.out)

    def stop(self) -> dict:
        self.stop_event.set()
        self.proc.join(60)
        seconds = time.perf_counter() - self.t0
        videos = self.out[0] - self.start_counts[0]
        return {
            "seconds": seconds,
            "videos": int(self.out[0]),
            "vectors": int(self.out[1]),
            "failed_writes": int(self.out[2]),
            "videos_per_s": videos / seconds if seconds else 0.0,
            "last_video_id": int(self.out[3]),
        }


# ---------------------------------------------------------------------------- load generator


def search_payloads(xq: np.ndarray, level: str, collection: str | None = None) -> list[bytes]:
    opts = pb.SearchOptions(level=LEVELS[level], top_k=K, collection=collection or "")
    return [
        pb.SearchRequest(vector=pb.VectorQuery(values=q.tolist()), options=opts).SerializeToString()
        for q in xq
    ]


async def _drive(
    address: str,
    payloads: list[bytes],
    clients: int,
    duration_s: float,
    max_calls: int,
    method: str = SEARCH_METHOD,
    connections: int = 1,
) -> dict:
    """`clients` tasks calling `method` back to back for `duration_s` (or `max_calls`),
    over `connections` channels of their own (client i on channel i % connections)."""
    own = [("grpc.use_local_subchannel_pool", 1)]  # else channels to one target share one
    channels = [grpc.aio.insecure_channel(address, options=own) for _ in range(connections)]
    try:
        return await _drive_on(channels, payloads, clients, duration_s, max_calls, method)
    finally:
        for channel in channels:
            await channel.close()


async def _drive_on(
    channels: list, payloads: list[bytes], clients: int, duration_s: float, max_calls: int,
    method: str,
) -> dict:  # fmt: skip
    calls = [channel.unary_unary(method) for channel in channels]  # bytes in, bytes out
    warmup = payloads[: min(WARMUP_CALLS, len(payloads))]
    for call in calls:  # warm every channel
        for p in warmup:
            await call(p, timeout=CALL_TIMEOUT_S)
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    issued = 0
    stop_at = time.perf_counter() + duration_s

    async def client(i: int) -> None:
        nonlocal issued
        call = calls[i % len(calls)]
        while issued < max_calls and time.perf_counter() < stop_at:
            payload = payloads[issued % len(payloads)]
            issued += 1
            t = time.perf_counter()
            try:
                await call(payload, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - t)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ms = np.asarray(latencies) * 1e3
    return {
        "calls": len(ms),
        "warmup_calls": len(warmup) * len(calls),
        "errors": dict(errors),
        "seconds": wall,
        "qps": len(ms) / wall,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "mean_ms": float(ms.mean()) if len(ms) else None,
        "client_cpu_ms_per_call": 1e3 * cpu / max(1, len(ms)),
    }


async def _collect(
    address: str, payloads: list[bytes], clients: int = 8
) -> list[pb.SearchResponse]:
    """Every payload once, `clients` at a time -> the parsed responses, in order."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            SEARCH_METHOD, response_deserializer=pb.SearchResponse.FromString
        )
        sem = asyncio.Semaphore(clients)

        async def one(p: bytes) -> pb.SearchResponse:
            async with sem:
                return await call(p, timeout=CALL_TIMEOUT_S)

        return list(await asyncio.gather(*(one(p) for p in payloads)))


def served_recall(
    address: str, xq: np.ndarray, level: str, truth: tuple, collection: str | None = None
) -> dict:
    responses = asyncio.run(_collect(address, search_payloads(xq, level, collection)))
    I = np.full((len(xq), K), -1, np.int64)
    for r, resp in enumerate(responses):
        got = [h.segment_id if level == "segment" else h.video.id for h in resp.hits[:K]]
        I[r, : len(got)] = got
    D_exact, I_exact = truth
    return {
        "level": level,
        "filter": "collection" if collection else "none",
        "queries": len(xq),
        "recall_at_10": recall_at_k(I, I_exact, K, D_exact),
        "short_answers": int(sum(len(r.hits) < K for r in responses)),
    }


def batch_payloads(xq: np.ndarray, level: str, packed: bool = False) -> list[bytes]:
    """SearchBatch requests of BATCH query vectors each, top_k=K, no filter; `packed`:
    answered as columns (PackedHits) rather than a SearchResponse per query."""
    opts = pb.SearchOptions(level=LEVELS[level], top_k=K)
    return [
        pb.SearchBatchRequest(
            vectors=[pb.VectorQuery(values=q.tolist()) for q in xq[lo : lo + BATCH]],
            options=opts,
            packed=packed,
        ).SerializeToString()
        for lo in range(0, len(xq) - BATCH + 1, BATCH)
    ]


def measure_batch(server: ServerProcess, payloads: list[bytes], clients: int, args: Any) -> dict:
    """SearchBatch back to back: queries/s = batches/s x BATCH."""
    before = server.ask("stats")
    run = asyncio.run(
        _drive(
            server.address,
            payloads,
            clients,
            args.duration,
            args.max_calls,
            BATCH_METHOD,
            connections=clients if server.processes > 1 else 1,
        )
    )
    after = server.ask("stats")
    served = max(1, run["calls"] + run["warmup_calls"])
    return {
        "clients": clients,
        "batch": BATCH,
        "queries_per_s": run["qps"] * BATCH,
        "p50_ms_per_batch": run["p50_ms"],
        "errors": run["errors"],
        "server_cpu_ms_per_query": 1e3 * (after["cpu_s"] - before["cpu_s"]) / served / BATCH,
    }


def measure(server: ServerProcess, payloads: list[bytes], clients: int, args: Any) -> dict:
    before = server.ask("stats")
    run = asyncio.run(_drive(server.address, payloads, clients, args.duration, args.max_calls,
                             connections=clients if server.processes > 1 else 1))  # fmt: skip
    after = server.ask("stats")
    served = max(1, run["calls"] + run["warmup_calls"])
    run["server_cpu_ms_per_call"] = 1e3 * (after["cpu_s"] - before["cpu_s"]) / served
    t0, t1 = before.get("threads", {}), after.get("threads", {})
    run["thread_cpu_ms_per_call"] = {  # by kind of thread: handlers, gRPC's, the keeper
        kind: 1e3 * (t1.get(kind, 0.0) - t0.get(kind, 0.0)) / served for kind in THREAD_KINDS
    }
    stages = after["stages"]
    keeper, rebuilds = stages.pop("keeper_sync", [0, 0.0]), stages.pop("rebuild", [0, 0.0])
    handler = stages.get("handler", [0, 0.0])
    run["stages_ms"] = {k: 1e3 * v[1] / max(1, handler[0]) for k, v in stages.items()}
    run["keeper_s_per_s"] = keeper[1] / run["seconds"]  # the index keeper's syncs
    run["index_rebuilds"] = int(rebuilds[0])  # full rebuilds from SQL begun
    return run


def freshness(address: str, video_id: int, timeout: float) -> float | None:
    """Seconds until a search by the video's first segment vector finds that video."""
    t0 = time.perf_counter()
    with SoraClient(address, timeout=CALL_TIMEOUT_S) as client:
        vector = None
        while time.perf_counter() - t0 < timeout:
            if vector is None:
                emb = client.get_embeddings(video_id)
                vector = np.asarray(emb.segments[0].vector, np.float32) if emb.segments else None
            if vector is not None:
                hits = client.search(vector=vector, level="segment", top_k=1).hits
                if hits and hits[0].video.id == video_id:
                    return time.perf_counter() - t0
            time.sleep(0.05)
    return None


def caught_up(server: ServerProcess, timeout: float, t0: float) -> tuple[float | None, dict]:
    """(seconds since t0 until every index holds what SQL holds, or None; the last info)."""
    while True:
        info = server.ask("info")["indexes"]
        if all(ix["ntotal"] == ix["sql_count"] for ix in info.values()):
            return time.perf_counter() - t0, info
        if time.perf_counter() - t0 > timeout:
            return None, info
        time.sleep(0.2)


def stage_breakdown(run: dict) -> dict:
    """One call's time split, ms (from a one-client run: wall time is CPU time)."""
    s = run["stages_ms"]
    sql = s.get("sql_segments", 0.0)  # filters and hit metadata are in memory
    search = s.get("search", 0.0)
    handler = s.get("handler", 0.0)
    return {
        "client_p50_ms": run["p50_ms"],
        "client_mean_ms": run["mean_ms"],
        "faiss_ms": s.get("faiss", 0.0),
        "sql_ms": sql,
        "filter_ms": s.get("filter", 0.0),
        "sql_segments_ms": s.get("sql_segments", 0.0),
        "search_rest_ms": search - s.get("faiss", 0.0) - s.get("filter", 0.0) - sql,
        "proto_ms": s.get("proto", 0.0),
        "handler_rest_ms": handler - search - s.get("proto", 0.0),
        "grpc_transport_ms": run["mean_ms"] - handler,
        "server_cpu_ms_per_call": run["server_cpu_ms_per_call"],
        "client_cpu_ms_per_call": run["client_cpu_ms_per_call"],
    }


# ---------------------------------------------------------------------------- one size


def cached_library(n: int, args: Any, data: dict) -> Path:
    """A folder holding the library in SQL (sora.db, or the name of a PostgreSQL cache
    database in `database`) and index/ (its snapshots), built once per (n, dim, data,
    backend) under --cache and copied for each run (a run's ingest adds rows)."""
    key = hashlib.sha256(repr((n, args.dim, sorted(data.items()), COLLECTIONS)).encode())
    suffix = "" if args.database == "sqlite" else "-pg"  # SQLite keeps its older folders
    folder = Path(args.cache) / f"n{n}-d{args.dim}-{key.hexdigest()[:8]}{suffix}"
    if (folder / "ready").exists():
        if args.database == "sqlite" or pg_scratch.exists(
            args.postgres_url, (folder / "database").read_text().strip()
        ):
            return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    xb, xv = make_library(n, args.dim, data)
    t = time.perf_counter()
    if args.database == "sqlite":
        url = f"sqlite:///{folder / 'sora.db'}"
        load_sql(url, xb, xv)
    else:
        name = f"sora_bench_{n}_{key.hexdigest()[:8]}"
        url = pg_scratch.create(args.postgres_url, name)
        load_sql(url, xb, xv)
        pg_scratch.advance_sequences(url, ("videos", "segments", "video_embeddings"))
        (folder / "database").write_text(name + "\n")
    log.info(
        "n=%d: %d videos, %d segments into SQL in %.1fs", n, len(xv), n, time.perf_counter() - t
    )
    t = time.perf_counter()
    server = ServerProcess(url, folder)  # builds the snapshots
    try:
        SoraClient(server.address).wait_until_serving(timeout=args.ready_timeout)
    finally:
        server.stop()
    log.info("n=%d: indexes built and saved in %.1fs", n, time.perf_counter() - t)
    (folder / "ready").write_text("ok\n")
    return folder


@contextlib.contextmanager
def run_library(n: int, args: Any, data: dict, home: Path) -> Iterator[tuple[str, float]]:
    """The cached library copied for one run -> (its database URL, seconds to copy): a
    copy of sora.db, or a PostgreSQL clone of the cache database (dropped afterwards);
    the index snapshots copied into `home`."""
    cache = cached_library(n, args, data)
    t = time.perf_counter()
    shutil.copytree(cache / "index", home / "index")
    if args.database == "sqlite":
        shutil.copy(cache / "sora.db", home / "sora.db")
        yield f"sqlite:///{home / 'sora.db'}", time.perf_counter() - t
        return
    name = f"sora_bench_run_{os.getpid()}"
    url = pg_scratch.create(
        args.postgres_url, name, template=(cache / "database").read_text().strip()
    )
    try:
        yield url, time.perf_counter() - t
    finally:
        pg_scratch.drop(args.postgres_url, name)


def bench_size(n: int, args: Any, data: dict, home: Path, url: str, load_s: float) -> dict:
    """Every setting at n vectors against the library at `url` (snapshots under `home`)."""
    dim = args.dim
    xb, xv = make_library(n, dim, data)
    queries = make_queries(args.queries, dim, data)

    t = time.perf_counter()
    truth = {
        ("segment", "none"): exact_truth(queries["segment"], xb),
        ("video", "none"): exact_truth(queries["video"], xv),
        ("segment", "collection"): exact_truth(
            queries["segment"], xb, filtered_rows(len(xb), PER_VIDEO)
        ),
        ("video", "collection"): exact_truth(queries["video"], xv, filtered_rows(len(xv), 1)),
    }
    log.info("n=%d: exact ground truth in %.1fs", n, time.perf_counter() - t)
    milvus, milvus_info, milvus_queries = None, {}, {}
    if args.milvus_python:  # the competitor: loaded before the project's server starts
        milvus = MilvusProcess(args.milvus_python, home)
        milvus_info = {"versions": milvus.versions, "load": {}}
        for lv in args.levels:
            rows = milvus.array(lv, xb if lv == "segment" else xv)
            milvus_info["load"][lv] = milvus.ask(
                cmd="load", level=lv, vectors=rows, per_video=PER_VIDEO if lv == "segment" else 1
            )
            Path(rows).unlink()
            milvus_queries[lv] = milvus.array(f"queries-{lv}", queries[lv])
            log.info("n=%d: Milvus Lite %s loaded: %s", n, lv, milvus_info["load"][lv])
    del xb, xv

    t = time.perf_counter()
    server = ProcessGroup(
        lambda address, i: ServerProcess(
            url, home, args.api_workers, args.api_cap, address, args.api_processes, i
        ),
        args.api_processes,
    )
    result: dict[str, Any] = {"n": n, "videos": n // PER_VIDEO, "dim": dim,
                              "database": args.database, "sql_load_s": load_s}  # fmt: skip
    result["loadavg_1m_at_start"] = round(os.getloadavg()[0], 2)
    echoes: dict[str, ServerProcess] = {}
    lean: ProcessGroup | None = None
    try:
        SoraClient(server.address).wait_until_serving(timeout=args.ready_timeout)
        result["server_ready_s"] = time.perf_counter() - t
        info = server.ask("info")
        result["indexes"] = info["indexes"]
        log.info("n=%d: serving after %.1fs: %s", n, result["server_ready_s"], info["indexes"])

        payloads = {
            (lv, f): search_payloads(queries[lv], lv, FILTERS[f])
            for lv in args.levels
            for f in args.filters
        }
        result["recall"] = [
            served_recall(server.address, queries[lv], lv, truth[lv, f], FILTERS[f])
            for lv in args.levels
            for f in args.filters
        ]
        for r in result["recall"]:
            log.info("n=%d: recall@10 %s %s = %.4f", n, r["level"], r["filter"], r["recall_at_10"])
        if milvus is not None:
            result["milvus"] = milvus_info
            result["milvus"]["recall"] = [
                milvus_recall(milvus, milvus_queries[lv], lv, truth[lv, f], FILTERS[f])
                for lv in args.levels
                for f in args.filters
            ]
        result["batch"] = []
        if args.batch:  # SearchBatch, idle: an absolute target (10,000 queries/s at 10^6)
            for level in args.levels:
                for clients in (1, 2):
                    for rnd in range(args.rounds):
                        for packed in (False, True):  # interleaved: hits, columns, ...
                            b = measure_batch(
                                server, batch_payloads(queries[level], level, packed), clients, args
                            )
                            b.update(level=level, round=rnd, packed=packed)
                            result["batch"].append(b)
                            log.info("n=%d SearchBatch %s%s x%d r%d: %.0f queries/s, p50 "
                                     "%.1f ms a batch, errors %s", n, level,
                                     " packed" if packed else "", clients, rnd,
                                     b["queries_per_s"], b["p50_ms_per_batch"] or -1,
                                     b["errors"] or 0)  # fmt: skip
        # the echo answers what the project answered, per level
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary(SEARCH_METHOD)
            responses = {LEVELS[lv]: call(payloads[lv, "none"][0]) for lv in args.levels}
        workers = args.api_workers or Settings_default("max_workers")
        echoes = {  # as many echo processes as the project has: the same floor per process
            f"echo-{m}": ProcessGroup(lambda address, _, m=m: EchoProcess(m, workers, responses,
                                                                        address),
                                      args.api_processes)
            for m in args.echo
        }  # fmt: skip
        if args.api_processes > 1:  # and the floor of one process, as the issue states it
            echoes.update({f"echo-{m}{ONE_PROCESS}": EchoProcess(m, workers, responses)
                           for m in args.echo})  # fmt: skip
        servers = {"sora": server, **echoes}
        if args.lean:  # the floor plus the search, over the snapshots the project serves
            snapshots = str(server_settings(url, home).snapshot_dir), dim
            lean = ProcessGroup(
                lambda address, _: EchoProcess("sync", workers, responses, address, snapshots),
                args.api_processes,
            )
            servers[LEAN] = lean
            # the same search as the project's: the same recall (a check of the reference)
            result["lean_recall"] = [
                served_recall(lean.address, queries[lv], lv, truth[lv, "none"])
                for lv in args.levels
            ]
            for r in result["lean_recall"]:
                log.info("n=%d: lean reference recall@10 %s = %.4f", n, r["level"],
                         r["recall_at_10"])  # fmt: skip

        runs = []
        for phase in args.phases:
            ingest = None
            if phase == "ingest":
                before = server.ask("info")["indexes"]
                settings_n = len(args.levels) * len(args.filters) * len(args.clients)
                budget = settings_n * args.rounds * len(servers) * (args.duration + 5) + 60
                ingest = IngestProcess(url, dim, data, args.ingest_rate, budget)
                ingest.wait_started()
                time.sleep(2.0)  # a sync or two under way
            for level in args.levels:
                for filt in args.filters:
                    for clients in args.clients:
                        for rnd in range(args.rounds):  # interleaved: A, B, A, B
                            for name, srv in servers.items():
                                if name != "sora" and filt != "none":
                                    continue  # echo and lean do no filtering: one floor
                                run = measure(srv, payloads[level, filt], clients, args)
                                run.update(n=n, phase=phase, level=level, filter=filt,
                                           clients=clients, server=name, round=rnd)  # fmt: skip
                                if name == "sora":
                                    ix = server.ask("info")["indexes"].get(level, {})
                                    run["index_behind"] = ix.get("sql_count", 0) - ix.get(
                                        "ntotal", 0
                                    )
                                runs.append(run)
                                log.info(
                                    "n=%d %s %s %s x%d %s r%d: %.0f qps, p50 %.2f ms, "
                                    "p99 %.2f ms, errors %s", n, phase, level, filt, clients,
                                    name, rnd, run["qps"], run["p50_ms"] or -1,
                                    run["p99_ms"] or -1, run["errors"] or 0,
                                )  # fmt: skip
                            if milvus is not None and phase == "idle":  # the competitor
                                run = milvus.ask(cmd="measure", level=level,
                                                 queries=milvus_queries[level], clients=clients,
                                                 duration_s=args.duration, k=K,
                                                 collection=FILTERS[filt])  # fmt: skip
                                run.update(n=n, phase=phase, level=level, filter=filt,
                                           clients=clients, server=MILVUS, round=rnd)  # fmt: skip
                                runs.append(run)
                                log.info("n=%d %s %s %s x%d %s r%d: %.0f qps, p50 %.2f ms",
                                         n, phase, level, filt, clients, MILVUS, rnd,
                                         run["qps"], run["p50_ms"] or -1)  # fmt: skip
            if ingest is not None:
                summary = ingest.stop()
                t = time.perf_counter()
                summary["fresh_s"] = freshness(
                    server.address, summary["last_video_id"], args.catchup_timeout
                )
                summary["caught_up_s"], after = caught_up(server, args.catchup_timeout, t)
                summary["index_added"] = {
                    lv: after[lv]["ntotal"] - before[lv]["ntotal"] for lv in after if lv in before
                }
                result["ingest"] = summary
                log.info("n=%d: ingest %s", n, summary)
        result["runs"] = runs
        one = [
            r for r in runs
            if (r["phase"], r["clients"], r["server"], r["filter"]) == ("idle", 1, "sora", "none")
        ]  # fmt: skip
        result["stages"] = {r["level"]: stage_breakdown(r) for r in one}
        result["ratios"] = floor_ratios(runs)
    finally:
        for e in echoes.values():
            e.stop()
        if lean is not None:
            lean.stop()
        server.stop()
        if milvus is not None:
            milvus.stop()
    return result


def Settings_default(name: str) -> Any:  # noqa: N802 - reads like the dataclass it is
    from services.settings import Settings

    return Settings.__dataclass_fields__[name].default


def _median(runs: list[dict], key: tuple, server: str, what: str) -> float | None:
    """Median of `what` over the runs of `server` at key = (phase, level, filter, clients)."""
    vals = [
        r[what]
        for r in runs
        if (r["phase"], r["level"], r["filter"], r["clients"]) == key
        and r["server"] == server
        and r[what] is not None
    ]
    return float(np.median(vals)) if vals else None


def floor_ratios(runs: list[dict]) -> list[dict]:
    """Per (phase, level, filter, clients): the project's median QPS, p50 and p99 over its
    rounds, and each as a ratio to the echo floor of the same phase, level and clients."""
    out = []
    servers = {r["server"] for r in runs if r["server"].startswith("echo")}
    echoes = sorted(e for e in servers if not e.endswith(ONE_PROCESS))  # as many as sora's
    singles = sorted(e for e in servers if e.endswith(ONE_PROCESS))  # one process
    keys = sorted(
        {(r["phase"], r["level"], r["filter"], r["clients"]) for r in runs if r["server"] == "sora"}
    )
    for key in keys:
        phase, level, filt, clients = key
        row: dict[str, Any] = {"phase": phase, "level": level, "filter": filt, "clients": clients}
        for what in ("qps", "p50_ms", "p99_ms"):
            row[what] = _median(runs, key, "sora", what)
            unfiltered = (phase, level, "none", clients)  # the echo does not filter
            floors = [f for e in echoes if (f := _median(runs, unfiltered, e, what)) is not None]
            if not floors or row[what] is None:
                continue
            floor = max(floors) if what == "qps" else min(floors)  # the best echo
            row[f"floor_{what}"] = floor
            row[f"{what}_vs_floor"] = row[what] / floor
            one = [f for e in singles if (f := _median(runs, unfiltered, e, what)) is not None]
            if what == "qps" and one:  # several sora processes against one echo process
                row["floor_qps_1p"] = max(one)
                row["qps_vs_1p_floor"] = row[what] / max(one)
        reference = _median(runs, (phase, level, "none", clients), LEAN, "qps")
        if reference and row["qps"] is not None:  # the lean reference (unfiltered)
            row["lean_qps"] = reference
            row["qps_vs_lean"] = row["qps"] / reference
            if row.get("floor_qps"):
                row["lean_vs_floor"] = reference / row["floor_qps"]
        competitor = _median(runs, key, MILVUS, "qps")
        if competitor and row["qps"] is not None:  # Milvus Lite, same setting and filter
            row["milvus_qps"] = competitor
            row["qps_vs_milvus"] = row["qps"] / competitor
        row["refused"] = sum(
            r["errors"].get("RESOURCE_EXHAUSTED", 0)
            for r in runs
            if r["server"] == "sora" and (r["phase"], r["level"], r["filter"], r["clients"]) == key
        )
        out.append(row)
    return out


def recall_vs_milvus(result: dict) -> float | None:
    """The project's filtered segment-level recall@10 over Milvus Lite's (None: no Milvus)."""
    mine = [r["recall_at_10"] for r in result["recall"]
            if (r["level"], r["filter"]) == ("segment", "collection")]  # fmt: skip
    theirs = [r["recall_at_10"] for r in result.get("milvus", {}).get("recall", [])
              if (r["level"], r["filter"]) == ("segment", "collection")]  # fmt: skip
    return mine[0] / theirs[0] if mine and theirs and theirs[0] > 0 else None


def targets(result: dict) -> dict:
    """The issue's targets (stated for 10^6 vectors), from the ratios to the echo floor
    measured in the same run; None where the run did not measure it."""

    def ratio(phase: str, level: str, filt: str, clients: int) -> dict:
        for r in result["ratios"]:
            if (r["phase"], r["level"], r["filter"], r["clients"]) == (phase, level, filt, clients):
                return r
        return {}

    def check(value: float | None, ok: Any) -> dict:
        return {"value": value, "ok": None if value is None else bool(ok(value))}

    many, one = ratio("idle", "segment", "none", 64), ratio("idle", "segment", "none", 1)
    many_f = ratio("idle", "segment", "collection", 64)
    busy = ratio("ingest", "segment", "none", 64)
    recalls = [r["recall_at_10"] for r in result["recall"] if r["filter"] == "none"]
    return {
        "qps_64_vs_floor>=0.5": check(many.get("qps_vs_floor"), lambda v: v >= 0.5),
        "search_batch_queries_per_s>=10000": check(
            max(
                (b["queries_per_s"] for b in result.get("batch", []) if b["level"] == "segment"),
                default=None,
            ),
            lambda v: v >= 10_000,
        ),  # fmt: skip
        "refused_64_below_cap==0": check(many.get("refused"), lambda v: v == 0),
        "qps_64_filtered_vs_floor>=0.4": check(many_f.get("qps_vs_floor"), lambda v: v >= 0.4),
        "qps_64_filtered_vs_milvus>=2": check(many_f.get("qps_vs_milvus"), lambda v: v >= 2.0),
        "recall_filtered_vs_milvus>=1": check(recall_vs_milvus(result), lambda v: v >= 1.0),
        "p50_1_vs_floor<=2": check(one.get("p50_ms_vs_floor"), lambda v: v <= 2.0),
        "p99_1_vs_floor<=4": check(one.get("p99_ms_vs_floor"), lambda v: v <= 4.0),
        "recall_at_10>=0.95": check(
            min(recalls) if recalls else None, lambda v: v >= TARGET_RECALL
        ),
        "qps_64_ingest_vs_idle>=0.8": check(
            busy["qps"] / many["qps"] if busy.get("qps") and many.get("qps") else None,
            lambda v: v >= 0.8,
        ),
    }


def ingest_kept(result: dict) -> dict:
    """Under ingest, 64 clients, segment level, no filter: the share of its idle QPS that
    the project kept, and that the echo floor kept ({} when not measured). The ingest
    target compares the project with itself; the floor says how much of the drop is the
    ingest process's CPU, which no server design gets back on a shared machine."""
    rows = {r["phase"]: r for r in result["ratios"]
            if (r["level"], r["filter"], r["clients"]) == ("segment", "none", 64)}  # fmt: skip
    idle, busy = rows.get("idle", {}), rows.get("ingest", {})
    needed = (idle.get("qps"), busy.get("qps"), idle.get("floor_qps"), busy.get("floor_qps"))
    if not all(needed):
        return {}
    return {"project": busy["qps"] / idle["qps"], "floor": busy["floor_qps"] / idle["floor_qps"]}


# ---------------------------------------------------------------------------- output


def report(results: list[dict]) -> None:
    for r in results:
        print(f"\nn={r['n']}: SQL store {r['database']}, copied for the run in "
              f"{r['sql_load_s']:.1f}s")  # fmt: skip
    print("\nevery measurement, in the order run (servers interleaved within a setting):")
    print_table(
        [r for res in results for r in res["runs"]],
        [
            ("n", "vectors", "{}"),
            ("phase", "phase", "{}"),
            ("level", "level", "{}"),
            ("filter", "filter", "{}"),
            ("clients", "clients", "{}"),
            ("server", "server", "{}"),
            ("round", "round", "{}"),
            ("qps", "QPS", "{:.0f}"),
            ("p50_ms", "p50 ms", "{:.2f}"),
            ("p99_ms", "p99 ms", "{:.2f}"),
            ("server_cpu_ms_per_call", "srv cpu ms/call", "{:.2f}"),
            ("client_cpu_ms_per_call", "cli cpu ms/call", "{:.2f}"),
            ("refused", "refused", "{}"),
            ("n_errors", "errors", "{}"),
            ("index_behind", "behind SQL", "{}"),
        ],
    )
    print("\nthe project against the echo floor (medians over rounds; floor = best echo):")
    print_table(
        [{"n": res["n"], **r} for res in results for r in res["ratios"]],
        [
            ("n", "vectors", "{}"),
            ("phase", "phase", "{}"),
            ("level", "level", "{}"),
            ("filter", "filter", "{}"),
            ("clients", "clients", "{}"),
            ("qps", "QPS", "{:.0f}"),
            ("floor_qps", "floor QPS", "{:.0f}"),
            ("qps_vs_floor", "QPS/floor", "{:.2f}"),
            *(
                [
                    ("floor_qps_1p", "1-proc floor", "{:.0f}"),
                    ("qps_vs_1p_floor", "QPS/1-proc", "{:.2f}"),
                ]
                if any("floor_qps_1p" in r for res in results for r in res["ratios"])
                else []
            ),
            *(
                [
                    ("lean_qps", "lean QPS", "{:.0f}"),
                    ("lean_vs_floor", "lean/floor", "{:.2f}"),
                    ("qps_vs_lean", "QPS/lean", "{:.2f}"),
                ]
                if any("lean_qps" in r for res in results for r in res["ratios"])
                else []
            ),
            ("p50_ms", "p50 ms", "{:.2f}"),
            ("p50_ms_vs_floor", "p50/floor", "{:.1f}"),
            ("p99_ms", "p99 ms", "{:.2f}"),
            ("p99_ms_vs_floor", "p99/floor", "{:.1f}"),
            ("refused", "refused", "{}"),
            *(
                [("milvus_qps", "Milvus QPS", "{:.0f}"), ("qps_vs_milvus", "QPS/Milvus", "{:.2f}")]
                if any("milvus_qps" in r for res in results for r in res["ratios"])
                else []
            ),
        ],
    )
    print()
    rows = []
    for res in results:
        theirs = {(m["level"], m["filter"]): m["recall_at_10"]
                  for m in res.get("milvus", {}).get("recall", [])}  # fmt: skip
        for r in res["recall"]:
            ix = res["indexes"].get(r["level"], {})
            milvus = theirs.get((r["level"], r["filter"]))
            rows.append({"n": res["n"], **r, **ix, "milvus_recall": milvus})
    print_table(
        rows,
        [
            ("n", "vectors", "{}"),
            ("level", "level", "{}"),
            ("filter", "filter", "{}"),
            ("ntotal", "indexed", "{}"),
            ("factory", "index", "{}"),
            ("nprobe", "nprobe", "{}"),
            ("recall_at_10_build", "recall@10 (build)", "{:.4f}"),
            ("recall_at_10", "recall@10 (served)", "{:.4f}"),
            ("milvus_recall", "Milvus Lite recall@10", "{:.4f}"),
        ],
    )
    for res in results:
        if "milvus" in res:
            print(f"n={res['n']}: Milvus Lite {res['milvus']['versions']}, IVF_FLAT asked "
                  "(nlist and nprobe fixed by milvus-lite: see bench/milvus_lite.py); "
                  f"load {res['milvus']['load']}")  # fmt: skip
    batches = [{"n": res["n"], **b} for res in results for b in res.get("batch", [])]
    if batches:
        print(f"\nSearchBatch, {BATCH} query vectors a call, idle, no filter:")
        print_table(
            batches,
            [
                ("n", "vectors", "{}"),
                ("level", "level", "{}"),
                ("packed", "packed", "{}"),
                ("clients", "clients", "{}"),
                ("round", "round", "{}"),
                ("queries_per_s", "queries/s", "{:.0f}"),
                ("p50_ms_per_batch", "p50 ms/batch", "{:.1f}"),
                ("server_cpu_ms_per_query", "srv cpu ms/query", "{:.3f}"),
            ],
        )
    print("\nwhere one call's time goes (one client, idle, no filter; ms per call):")
    rows = [{"n": res["n"], "level": lv, **s} for res in results for lv, s in res["stages"].items()]
    print_table(
        rows,
        [
            ("n", "vectors", "{}"),
            ("level", "level", "{}"),
            ("client_mean_ms", "client mean", "{:.3f}"),
            ("faiss_ms", "faiss", "{:.3f}"),
            ("filter_ms", "filter", "{:.3f}"),
            ("sql_segments_ms", "seg rows", "{:.3f}"),
            ("search_rest_ms", "search other", "{:.3f}"),
            ("proto_ms", "proto", "{:.3f}"),
            ("handler_rest_ms", "handler other", "{:.3f}"),
            ("grpc_transport_ms", "grpc+client", "{:.3f}"),
            ("server_cpu_ms_per_call", "srv cpu", "{:.3f}"),
        ],
    )
    print("\nserver CPU per call by thread (one client, idle, segment level, no filter; ms,"
          " medians over rounds; clock ticks of 10 ms):")  # fmt: skip
    rows = []
    for res in results:
        one = collections.defaultdict(list)
        for r in res["runs"]:
            setting = (r["phase"], r["clients"], r["level"], r["filter"])
            if setting == ("idle", 1, "segment", "none") and any(
                r.get("thread_cpu_ms_per_call", {}).values()
            ):
                one[r["server"]].append(r)
        for server, runs in one.items():
            row = {"n": res["n"], "server": server}
            for kind in THREAD_KINDS:
                row[kind] = float(np.median([r["thread_cpu_ms_per_call"][kind] for r in runs]))
            row["total"] = float(np.median([r["server_cpu_ms_per_call"] for r in runs]))
            rows.append(row)
    print_table(rows, [("n", "vectors", "{}"), ("server", "server", "{}"),
                       *((kind, kind, "{:.3f}") for kind in THREAD_KINDS),
                       ("total", "total", "{:.3f}")])  # fmt: skip
    print()
    verdict = {True: "ok", False: "MISSED", None: "not measured"}
    for res in results:
        ing = res.get("ingest") or {}
        if ing:
            print(
                f"n={res['n']}: ingest {ing.get('videos', 0)} videos "
                f"({ing.get('videos_per_s', 0):.1f} videos/s, {ing.get('failed_writes', 0)} "
                f"failed); after it stopped: its last video found by search after "
                f"{_fmt(ing.get('fresh_s'), '.2f')} s, every index equal to SQL after "
                f"{_fmt(ing.get('caught_up_s'), '.2f')} s"
            )
        print(f"n={res['n']}: targets: " + ", ".join(
            f"{k} {_fmt(v['value'], '.2f')} [{verdict[v['ok']]}]" for k, v in res["targets"].items()
        ))  # fmt: skip
        kept = ingest_kept(res)
        if kept:
            print(f"n={res['n']}: under ingest, 64 clients, each kept of its idle QPS: the project "
                  f"{_fmt(kept['project'], '.2f')}, the echo floor {_fmt(kept['floor'], '.2f')} "
                  "(the ingest process takes CPU from both: the floor's drop is what the "
                  "machine lost, the project's beyond it what search lost)")  # fmt: skip


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.replace(",", " ").split()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_int_list, default=None, help="e.g. 100000,1000000")
    ap.add_argument("--quick", action="store_true", help="10^4 and 10^5, 3 s per setting")
    ap.add_argument("--clients", type=_int_list, default=[1, 8, 64])
    ap.add_argument("--levels", default="segment,video", help="segment,video")
    ap.add_argument("--duration", type=float, default=None, help="seconds per setting (10)")
    ap.add_argument("--max-calls", type=int, default=200_000, help="per setting")
    ap.add_argument("--queries", type=int, default=1000, help="held-out queries (recall)")
    ap.add_argument("--ingest-rate", type=float, default=20.0, help="videos/s during ingest")
    ap.add_argument("--ready-timeout", type=float, default=900.0, help="index build, s")
    ap.add_argument(
        "--catchup-timeout", type=float, default=120.0, help="after the ingest stops, s"
    )
    ap.add_argument(
        "--api-workers", type=int, default=None, help="server threads (default: settings')"
    )
    ap.add_argument("--api-cap", type=int, default=None, help="max_concurrent_rpcs (settings')")
    ap.add_argument("--api-processes", type=int, default=1,
                    help="server processes on one port (sora serve --api-processes), and as "
                    "many echo processes; clients then get a connection each")  # fmt: skip
    ap.add_argument("--no-batch", dest="batch", action="store_false",
                    help="skip the SearchBatch runs")  # fmt: skip
    ap.add_argument("--echo", default="sync", help="echo floors to run: sync,aio (or none)")
    ap.add_argument(
        "--lean", action=argparse.BooleanOptionalAction, default=True,
        help="the lean reference: the echo floor plus the search itself, over the project's "
        "snapshots (what any Python server of this index pays at least)",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per setting")
    ap.add_argument("--filters", default="none,collection", help="none,collection")
    ap.add_argument("--phases", default="idle,ingest", help="idle,ingest")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "bench_search"),
                    help="where the synthetic libraries and their indexes are kept")  # fmt: skip
    ap.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the library's SQL store (PostgreSQL: a scratch database per run)",
    )
    ap.add_argument(
        "--postgres-url",
        default=pg_scratch.DEFAULT_URL,
        help="any database of the PostgreSQL server (--database postgresql)",
    )
    ap.add_argument("--milvus-python", default=None,
                    help="a python with milvus-lite (bench/milvus_lite.py's pins): Milvus Lite "
                    "measured on the same vectors, idle, in the same rounds")  # fmt: skip
    ap.add_argument("--dim", type=int, default=256)
    add_data_options(ap)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    args.sizes = args.sizes or ([10_000, 100_000] if args.quick else [100_000, 1_000_000])
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.levels = [lv for lv in args.levels.replace(",", " ").split()]
    args.filters = [f for f in args.filters.replace(",", " ").split()]
    args.phases = [p for p in args.phases.replace(",", " ").split()]
    args.echo = [m for m in args.echo.replace(",", " ").split() if m != "none"]
    for lv in args.levels:
        if lv not in LEVELS:
            ap.error(f"--levels: {lv!r} is not one of {sorted(LEVELS)}")
    data = data_options(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)

    results = []
    for n in args.sizes:
        with (
            tempfile.TemporaryDirectory(prefix="bench_search_") as home,
            run_library(n, args, data, Path(home)) as (url, load_s),
        ):
            res = bench_size(n, args, data, Path(home), url, load_s)
        for r in res["runs"]:
            r["refused"] = r["errors"].get("RESOURCE_EXHAUSTED", 0)
            r["n_errors"] = sum(r["errors"].values()) - r["refused"]
        res["targets"] = targets(res)
        res["ingest_kept"] = ingest_kept(res)
        results.append(res)
    report(results)
    if args.json:
        write_json(args.json, {
            "machine": {**machine_info(), "faiss": faiss.__version__, "grpc": grpc.__version__},
            "data": data, "k": K, "segments_per_video": PER_VIDEO,
            "duration_s": args.duration, "clients": args.clients, "levels": args.levels,
            "ingest_rate": args.ingest_rate,
            "rounds": args.rounds, "filters": args.filters, "echo": args.echo, "lean": args.lean,
            "api_processes": args.api_processes, "database": args.database,
            "results": results,
        })  # fmt: skip
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
