"""Milvus Lite, the embedded vector database a Python user installs first, as a competitor
in bench_search.py: the same vectors, the same held-out queries and filter, recall@10 and
QPS at the same client counts, run interleaved with the project and the echo floor.

It runs in its own venv (the project does not depend on pymilvus), as a helper process
that bench_search.py drives over stdin/stdout, one JSON line a command:

    python3 -m venv runs/milvus-venv && runs/milvus-venv/bin/pip install \\
        "milvus-lite==2.5.1" "pymilvus==2.5.18" "setuptools<81" numpy
    python bench/bench_search.py ... --milvus-python runs/milvus-venv/bin/python

    {"cmd": "load", "level": L, "vectors": "x.npy", "per_video": 10}  rows 1..n, video
        v's rows in collection c{v % 4} (as bench_search's SQL) -> insert_s, build_s
    {"cmd": "search", "level": L, "queries": "q.npy", "collection": "c0" | null}  -> ids
    {"cmd": "measure", "level": L, "queries": "q.npy", "clients": 8, "duration_s": 10,
        "collection": ...}  -> qps, p50_ms, p99_ms, calls, errors
    {"cmd": "stop"}

What Milvus Lite really does (measured with 2.4.10, 2.4.11, 2.4.12, 2.5.0 and 2.5.1, and
read in milvus-lite's source), which its figures must be read against:

* 2.4.10 and older refuse IVF_FLAT ("local mode only support FLAT HNSW AUTOINDEX") and
  search brute force (milvus-lite issue #220). 3.x is a pure-Python rewrite (1-2 QPS).
* 2.4.11 .. 2.5.1 accept IVF_FLAT, but what is built is segcore's interim index of the
  growing segment (IVF_FLAT_CC) with nlist=100 and nprobe=4 compiled in (SegcoreConfig
  defaults): the nlist given to create_index and the nprobe given to search are echoed by
  describe_index and ignored, so its recall cannot be tuned to ours. The interim index is
  built once a collection holds >= 100,000 rows; below that every search is brute force.
* The server takes one mutex per Search: searches run one at a time, so more clients add
  queueing. Threads sharing one MilvusClient are the cheapest way to drive it.
* Insert cost grows faster than the batch (10,000 rows a call: ~180 rows/s; 1,000: ~15,000
  rows/s), hence INSERT_BATCH.
* Run as a script, this file's name hides the milvus_lite package; _unshadow() fixes it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PINNED = "milvus-lite==2.5.1 pymilvus==2.5.18 setuptools<81"
INSERT_BATCH = 1000  # rows a call: larger batches are superlinearly slower (see above)
SEARCH_BATCH = 1000  # queries a call when collecting results for recall
NLIST = 1024  # asked for; milvus-lite 2.5.1 builds nlist=100 whatever is asked
COLLECTIONS = 4  # as bench_search.COLLECTIONS


def _filter(collection: str | None) -> str:
    return f'collection == "{collection}"' if collection else ""


class MilvusLite:
    """One Milvus Lite server (its own process, started by milvus_lite) over one database
    file, a collection per level: id (INT64, = SQL id), collection (VARCHAR), vec."""

    def __init__(self, path: str) -> None:
        from milvus_lite.server import Server
        from pymilvus import MilvusClient

        # the db file name must match [A-Za-z0-9.-_]{1,36}
        self._server = Server(str(Path(path).absolute()), None)
        if not (self._server.init() and self._server.start()):
            raise RuntimeError(f"milvus-lite did not start for {path}")
        self.client = MilvusClient(uri=self._server.uds_path)

    def load(self, level: str, vectors: np.ndarray, per_video: int) -> dict[str, float]:
        from pymilvus import DataType, MilvusClient

        c = self.client
        if c.has_collection(level):
            c.drop_collection(level)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("collection", DataType.VARCHAR, max_length=16)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
        c.create_collection(level, schema=schema)
        t = time.perf_counter()
        for lo in range(0, len(vectors), INSERT_BATCH):
            block = np.ascontiguousarray(vectors[lo : lo + INSERT_BATCH], dtype=np.float32)
            rows = [
                {"id": lo + j + 1, "collection": f"c{((lo + j) // per_video) % COLLECTIONS}",
                 "vec": v}
                for j, v in enumerate(block)
            ]  # fmt: skip
            c.insert(level, rows)
        c.flush(level)
        insert_s = time.perf_counter() - t
        t = time.perf_counter()
        params = c.prepare_index_params()
        params.add_index(field_name="vec", index_type="IVF_FLAT", metric_type="IP",
                         params={"nlist": NLIST})  # fmt: skip
        c.create_index(level, params)
        c.load_collection(level)  # re-reads every row: build_s includes the reload
        return {"rows": len(vectors), "insert_s": insert_s, "build_s": time.perf_counter() - t}

    def _search(self, level: str, queries: list[list[float]], k: int, collection: str | None):
        return self.client.search(level, data=queries, limit=k, anns_field="vec",
                                  search_params={"metric_type": "IP"},
                                  filter=_filter(collection))  # fmt: skip

    def search(self, level: str, queries: np.ndarray, k: int, collection: str | None):
        """Top-k ids per query, -1 padded (lists, for JSON)."""
        out = []
        for lo in range(0, len(queries), SEARCH_BATCH):
            block = [q.tolist() for q in queries[lo : lo + SEARCH_BATCH]]
            for hits in self._search(level, block, k, collection):
                ids = [int(h["id"]) for h in hits][:k]
                out.append(ids + [-1] * (k - len(ids)))
        return out

    def measure(self, level: str, queries: np.ndarray, clients: int, duration_s: float,
                k: int, collection: str | None) -> dict[str, Any]:  # fmt: skip
        """`clients` threads calling search with one query each, back to back."""
        qs = [q.tolist() for q in queries]
        latencies: list[float] = []
        errors: dict[str, int] = {}
        lock = threading.Lock()
        issued = 0
        stop_at = time.perf_counter() + duration_s

        def client() -> None:
            nonlocal issued
            while time.perf_counter() < stop_at:
                with lock:
                    q = qs[issued % len(qs)]
                    issued += 1
                t = time.perf_counter()
                try:
                    self._search(level, [q], k, collection)
                except Exception as exc:  # noqa: BLE001 - counted; the run goes on
                    with lock:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        ms = np.asarray(latencies) * 1e3
        return {
            "calls": len(ms), "errors": errors, "seconds": wall, "qps": len(ms) / wall,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        }  # fmt: skip

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self._server.stop()


def serve(db: str) -> None:
    """Commands on stdin, one JSON line each; one JSON line answered for each on stdout
    ({"error": ...} when a command failed; the helper goes on)."""
    import milvus_lite
    import pymilvus

    milvus = MilvusLite(db)
    out = sys.stdout
    print(json.dumps({"milvus_lite": getattr(milvus_lite, "__version__", "?"),
                      "pymilvus": pymilvus.__version__}), file=out, flush=True)  # fmt: skip
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            try:
                if cmd["cmd"] == "stop":
                    print(json.dumps({"stopped": True}), file=out, flush=True)
                    break
                if cmd["cmd"] == "load":
                    vectors = np.load(cmd["vectors"], mmap_mode="r")
                    answer: Any = milvus.load(cmd["level"], vectors, cmd["per_video"])
                elif cmd["cmd"] == "search":
                    answer = {
                        "ids": milvus.search(
                            cmd["level"],
                            np.load(cmd["queries"]),
                            cmd.get("k", 10),
                            cmd.get("collection"),
                        )
                    }
                elif cmd["cmd"] == "measure":
                    answer = milvus.measure(cmd["level"], np.load(cmd["queries"]),
                                            cmd["clients"], cmd["duration_s"], cmd.get("k", 10),
                                            cmd.get("collection"))  # fmt: skip
                else:
                    answer = {"error": f"unknown command {cmd['cmd']!r}"}
            except Exception as exc:  # noqa: BLE001 - reported to the driver
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), file=out, flush=True)
    finally:
        milvus.close()


def _unshadow() -> None:
    """Run as a script, sys.path[0] is bench/, where this file hides the milvus_lite
    package: drop that entry before milvus_lite is imported."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]


if __name__ == "__main__":
    _unshadow()
    serve(sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "milvus.db"))
