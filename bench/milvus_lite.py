"""Baseline: Milvus Lite (embedded Milvus) on the same synthetic data as bench_index.py.

Why this file exists: to compare our vector index with an off-the-shelf embedded vector
database on one machine, with the same data, the same recall@10 and the same 1 / 8 / 64
concurrent-client QPS. It is self-contained (numpy + pymilvus, both imported lazily) and runs
from its own venv, because the project does not depend on pymilvus:

    python3 -m venv /tmp/mlvenv && /tmp/mlvenv/bin/pip install "milvus-lite==2.5.1" \
        "pymilvus==2.5.18" "setuptools<81" numpy
    /tmp/mlvenv/bin/python bench/milvus_lite.py --n 100000 --dim 256 --clients 1,8,64 \
        --duration 5 --json out.json

What Milvus Lite really does (measured with 2.4.11, 2.4.12, 2.5.1; read in milvus-lite's
source), which the numbers must be read against:

* 2.4.10 and older refuse IVF_FLAT ("local mode only support FLAT HNSW AUTOINDEX") and search
  brute force. 3.x is a pure-Python rewrite (1-2 QPS here) and is not used.
* 2.4.11 .. 2.5.1 accept IVF_FLAT, but the index that is built is segcore's *interim* index
  of the one growing segment (IVF_FLAT_CC), with nlist=100 and nprobe=4 compiled in
  (SegcoreConfig defaults). The nlist given to create_index and the nprobe given to search
  are stored and echoed by describe_index but ignored. The interim index is only built once
  the collection holds >= 100,000 rows (build ratio 0.1 x max index rows 1e6); below that
  every search is exact brute force.
* create_index and load_collection re-read every row from the SQLite file and rebuild the
  segment, so build() time includes a full reload.
* The server takes one mutex per Search: searches are serialised, so more clients mostly
  add queueing. One MilvusClient shared by threads is the cheapest way to drive it; separate
  processes connecting to the server's unix socket also work but cost more on few cores.
* Insert cost grows faster than linearly with the batch size (10,000 rows per call: ~180
  rows/s; 500-1,000 rows per call: ~15,000-20,000 rows/s), hence INSERT_BATCH.
* Optional and clearly non-stock: interim_nlist / interim_nprobe run a private copy of the
  server binary with those two compiled-in defaults patched (8 bytes each in .data, found
  with nm/readelf). That makes the IVF parameters real, but per server process, not per
  query; results so obtained are "patched Milvus Lite", not Milvus Lite.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PINNED = "milvus-lite==2.5.1 pymilvus==2.5.18 setuptools<81"
COLLECTION = "bench"
INSERT_BATCH = 1000  # larger batches are superlinearly slower in milvus-lite 2.4/2.5
SEARCH_BATCH = 1000
STOCK_INTERIM_NLIST = 100  # segcore defaults compiled into milvus-lite 2.4.11 .. 2.5.1
STOCK_INTERIM_NPROBE = 4
INTERIM_MIN_ROWS = 100_000  # below this milvus-lite searches brute force


def _search_params(nprobe: int) -> dict[str, Any]:
    return {"metric_type": "IP", "params": {"nprobe": int(nprobe)}}


def _filter(collection: str | None) -> str:
    return f'collection == "{collection}"' if collection is not None else ""


def patched_bin_dir(nlist: int, nprobe: int, cache: Path | None = None) -> Path:
    """Copy milvus-lite's lib/ and patch SegcoreConfig::nlist_ / nprobe_ in the copy.

    Returns the folder to put in BIN_PATH (milvus_lite.server.Server reads it).
    """
    import milvus_lite

    src = Path(milvus_lite.__file__).parent / "lib"
    version = getattr(milvus_lite, "__version__", "x")
    cache = cache or Path(tempfile.gettempdir()) / "milvus_lite_patched"
    dest = cache / f"{version}-nlist{nlist}-nprobe{nprobe}"
    if (dest / "milvus").exists():
        return dest
    tmp = Path(tempfile.mkdtemp(dir=cache.parent if cache.exists() else None))
    shutil.copytree(src, tmp / "lib")
    binary = tmp / "lib" / "milvus"
    addrs: dict[str, int] = {}
    nm = subprocess.run(["nm", "-C", str(binary)], capture_output=True, text=True, check=True)
    for line in nm.stdout.splitlines():
        for name in ("nlist_", "nprobe_"):
            if line.endswith(f"milvus::segcore::SegcoreConfig::{name}"):
                addrs[name] = int(line.split()[0], 16)
    if set(addrs) != {"nlist_", "nprobe_"}:
        raise RuntimeError(f"SegcoreConfig symbols not found in {binary}")
    sections = subprocess.run(
        ["readelf", "-SW", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    data = None
    for line in sections.splitlines():
        parts = line.replace("[ ", "[").split()
        if len(parts) > 6 and parts[0].startswith("[") and parts[1] == ".data":
            data = (int(parts[3], 16), int(parts[4], 16), int(parts[5], 16))
    if data is None:
        raise RuntimeError("no .data section")
    vaddr, offset, size = data
    with open(binary, "r+b") as f:
        for name, value in (("nlist_", nlist), ("nprobe_", nprobe)):
            if not vaddr <= addrs[name] < vaddr + size:
                raise RuntimeError(f"{name} is not in .data")
            f.seek(offset + addrs[name] - vaddr)
            old = struct.unpack("<q", f.read(8))[0]
            if old not in (STOCK_INTERIM_NLIST, STOCK_INTERIM_NPROBE):
                raise RuntimeError(f"unexpected stock value {name}={old}")
            f.seek(offset + addrs[name] - vaddr)
            f.write(struct.pack("<q", value))
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp / "lib"), str(dest))
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


class MilvusLiteIndex:
    """One Milvus Lite database file with one collection: id, collection (VARCHAR), vec."""

    def __init__(
        self,
        path: str,
        dim: int,
        interim_nlist: int | None = None,
        interim_nprobe: int | None = None,
    ) -> None:
        from milvus_lite.server import Server
        from pymilvus import MilvusClient

        self.dim = dim
        self.path = str(Path(path).absolute())
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.patched = interim_nlist is not None or interim_nprobe is not None
        if self.patched:
            bin_dir = patched_bin_dir(
                interim_nlist or STOCK_INTERIM_NLIST, interim_nprobe or STOCK_INTERIM_NPROBE
            )
            os.environ["BIN_PATH"] = str(bin_dir)
        # Started explicitly (not via MilvusClient("x.db")) so that other processes can
        # connect to self.uri; the db file name must match [A-Za-z0-9.-_]{1,36}.
        self._server = Server(self.path, None)
        if not (self._server.init() and self._server.start()):
            raise RuntimeError(f"milvus-lite server did not start for {self.path}")
        self.uri: str = self._server.uds_path
        self.client = MilvusClient(uri=self.uri)

    def load(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        collections: list[str] | np.ndarray,
    ) -> float:
        """(Re)create the collection and insert all rows; returns seconds."""
        from pymilvus import DataType, MilvusClient

        c = self.client
        if c.has_collection(COLLECTION):
            c.drop_collection(COLLECTION)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("collection", DataType.VARCHAR, max_length=64)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=self.dim)
        c.create_collection(COLLECTION, schema=schema)
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        t0 = time.perf_counter()
        for s in range(0, len(ids), INSERT_BATCH):
            e = min(len(ids), s + INSERT_BATCH)
            rows = [
                {"id": int(ids[i]), "collection": str(collections[i]), "vec": vecs[i]}
                for i in range(s, e)
            ]
            c.insert(COLLECTION, rows)
        c.flush(COLLECTION)
        return time.perf_counter() - t0

    def build(self, nlist: int) -> float:
        """Create the IVF_FLAT (IP) index and load; returns seconds (includes the reload)."""
        c = self.client
        t0 = time.perf_counter()
        params = c.prepare_index_params()
        params.add_index(
            field_name="vec", index_type="IVF_FLAT", metric_type="IP", params={"nlist": nlist}
        )
        c.create_index(COLLECTION, params)
        c.load_collection(COLLECTION)
        return time.perf_counter() - t0

    def describe(self) -> dict[str, Any]:
        """describe_index of the vector field plus row count (what the server claims)."""
        c = self.client
        out: dict[str, Any] = {"row_count": c.get_collection_stats(COLLECTION)["row_count"]}
        for name in c.list_indexes(COLLECTION):
            out[name] = c.describe_index(COLLECTION, name)
        return out

    def search(
        self, queries: np.ndarray, k: int, nprobe: int, collection: str | None = None
    ) -> np.ndarray:
        """Top-k ids per query (int64, -1 padded). Stock milvus-lite ignores nprobe."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        out = np.full((len(q), k), -1, dtype=np.int64)
        for s in range(0, len(q), SEARCH_BATCH):
            res = self.client.search(
                COLLECTION,
                data=[v.tolist() for v in q[s : s + SEARCH_BATCH]],
                limit=k,
                anns_field="vec",
                search_params=_search_params(nprobe),
                filter=_filter(collection),
            )
            for j, hits in enumerate(res):
                got = [int(h["id"]) for h in hits][:k]
                out[s + j, : len(got)] = got
        return out

    def close(self) -> None:
        """Close the client and stop the server process (releases the file lock)."""
        try:
            self.client.close()
        finally:
            self._server.stop()


def _client_loop(
    client: Any,
    queries: list[list[float]],
    k: int,
    nprobe: int,
    collection: str | None,
    start_at: float,
    duration_s: float,
    offset: int,
) -> tuple[list[float], int]:
    lat: list[float] = []
    errors = 0
    i = offset
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration_s
    params = _search_params(nprobe)
    flt = _filter(collection)
    while time.time() < end:
        q = queries[i % len(queries)]
        i += 1
        t = time.perf_counter()
        try:
            client.search(
                COLLECTION, data=[q], limit=k, anns_field="vec", search_params=params, filter=flt
            )
            lat.append(time.perf_counter() - t)
        except Exception:  # noqa: BLE001 - counted, the run goes on
            errors += 1
    return lat, errors


def _process_client(
    uri: str,
    queries: list[list[float]],
    k: int,
    nprobe: int,
    collection: str | None,
    duration_s: float,
    offset: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    ready.put(1)
    go.wait()
    results.put(
        _client_loop(client, queries, k, nprobe, collection, time.time(), duration_s, offset)
    )
    client.close()


def measure_qps(
    index: MilvusLiteIndex,
    queries: np.ndarray,
    clients: int,
    duration_s: float,
    k: int = 10,
    nprobe: int = 16,
    collection: str | None = None,
    mode: str = "threads",
) -> dict[str, float]:
    """Closed-loop QPS with `clients` callers, one query per call, for duration_s.

    mode "threads": threads sharing index.client (cheapest; the server serialises searches
    anyway). mode "processes": one process and one MilvusClient each on the server socket.
    """
    qs = [q.tolist() for q in np.asarray(queries, dtype=np.float32)]
    stride = max(1, len(qs) // clients)
    results: list[tuple[list[float], int]] = []
    if mode == "threads":
        start_at = time.time() + 0.2
        lock = threading.Lock()

        def run(offset: int) -> None:
            r = _client_loop(index.client, qs, k, nprobe, collection, start_at, duration_s, offset)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=run, args=(c * stride,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif mode == "processes":
        ctx = mp.get_context("spawn")
        ready, res_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(
                target=_process_client,
                args=(
                    index.uri,
                    qs,
                    k,
                    nprobe,
                    collection,
                    duration_s,
                    c * stride,
                    ready,
                    go,
                    res_q,
                ),
            )
            for c in range(clients)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get()
        go.set()
        results = [res_q.get() for _ in procs]
        for p in procs:
            p.join()
    else:
        raise ValueError(f"mode {mode!r}")
    lat = np.concatenate([np.asarray(r[0]) for r in results]) if results else np.zeros(0)
    errors = sum(r[1] for r in results)
    ok = len(lat) > 0
    return {
        "qps": len(lat) / duration_s,
        "p50_ms": float(np.percentile(lat, 50) * 1e3) if ok else float("nan"),
        "p99_ms": float(np.percentile(lat, 99) * 1e3) if ok else float("nan"),
        "calls": int(len(lat)),
        "errors": int(errors),
    }


def synthetic(
    n: int, dim: int, nq: int, seed: int = 0, centres: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered unit vectors (gaussian centres + noise of norm ~0.5) and queries near them.

    Returns (xb, labels (video id = row // 10), xq).
    """
    rng = np.random.default_rng(seed)
    cent = rng.standard_normal((centres, dim), dtype=np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    xb = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        e = min(n, s + step)
        lab = rng.integers(0, centres, e - s)
        x = cent[lab] + 0.5 / np.sqrt(dim) * rng.standard_normal((e - s, dim), np.float32)
        xb[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    qi = rng.integers(0, n, nq)
    xq = xb[qi] + 0.25 / np.sqrt(dim) * rng.standard_normal((nq, dim), np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    return xb, np.arange(n, dtype=np.int64) // 10, xq.astype(np.float32)


def exact_topk(
    xb: np.ndarray, xq: np.ndarray, k: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Exact inner-product top-k row indices (numpy, blocked over xb)."""
    best_s = np.full((len(xq), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(xq), k), -1, dtype=np.int64)
    for s in range(0, len(xb), 100_000):
        sc = xq @ xb[s : s + 100_000].T
        if mask is not None:
            sc[:, ~mask[s : s + 100_000]] = -np.inf
        idx = np.arange(s, s + sc.shape[1], dtype=np.int64)
        cat_s = np.concatenate([best_s, sc], axis=1)
        cat_i = np.concatenate([best_i, np.broadcast_to(idx, sc.shape)], axis=1)
        top = np.argpartition(-cat_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cat_s, top, 1)
        best_i = np.take_along_axis(cat_i, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ truth| / k over queries."""
    k = truth.shape[1]
    return float(
        np.mean(
            [len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]
        )
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: synthetic data -> insert -> IVF_FLAT -> recall per nprobe -> QPS per clients."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--nq", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nlist", type=int, default=0, help="default 1024 (<=2e5 rows) else 4096")
    ap.add_argument("--nprobes", default="1,8,32,128")
    ap.add_argument("--qps-nprobe", type=int, default=16)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--mode", choices=["threads", "processes"], default="threads")
    ap.add_argument("--interim-nlist", type=int, default=None, help="patched binary (non-stock)")
    ap.add_argument("--interim-nprobe", type=int, default=None, help="patched binary (non-stock)")
    ap.add_argument("--db", default="", help="db file (default: a temporary folder)")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    nlist = a.nlist or (1024 if a.n <= 200_000 else 4096)

    import milvus_lite
    import pymilvus

    tmp = None
    if not a.db:
        tmp = tempfile.mkdtemp(prefix="milvus_lite_bench_")
        a.db = os.path.join(tmp, "bench.db")
    xb, video, xq = synthetic(a.n, a.dim, a.nq)
    colls = np.array([f"c{v % 4}" for v in video])
    truth = exact_topk(xb, xq, a.k)
    truth_f = exact_topk(xb, xq, a.k, mask=colls == "c0")

    out: dict[str, Any] = {
        "milvus_lite": getattr(milvus_lite, "__version__", "?"),
        "pymilvus": pymilvus.__version__,
        "n": a.n,
        "dim": a.dim,
        "nlist": nlist,
        "k": a.k,
        "mode": a.mode,
        "interim_nlist": a.interim_nlist or STOCK_INTERIM_NLIST,
        "interim_nprobe": a.interim_nprobe or STOCK_INTERIM_NPROBE,
        "patched_binary": a.interim_nlist is not None or a.interim_nprobe is not None,
    }
    idx = MilvusLiteIndex(a.db, a.dim, a.interim_nlist, a.interim_nprobe)
    try:
        load_s = idx.load(np.arange(a.n, dtype=np.int64), xb, colls)
        out["insert_s"], out["insert_rows_per_s"] = load_s, a.n / load_s
        print(f"insert {a.n} rows: {load_s:.1f}s ({a.n / load_s:,.0f} rows/s)", flush=True)
        out["build_s"] = idx.build(nlist)
        out["describe"] = idx.describe()
        print(
            f"build (IVF_FLAT nlist={nlist} requested; interim nlist="
            f"{out['interim_nlist']} used): {out['build_s']:.1f}s",
            flush=True,
        )
        if a.n < INTERIM_MIN_ROWS:
            print(f"note: n < {INTERIM_MIN_ROWS}: milvus-lite searches brute force", flush=True)
        out["recall"] = []
        print(f"\n{'nprobe':>6} {'filter':>6} {'recall@10':>9} {'batch_qps':>9}")
        for nprobe in [int(x) for x in a.nprobes.split(",")]:
            for coll, gt in ((None, truth), ("c0", truth_f)):
                t0 = time.perf_counter()
                found = idx.search(xq, a.k, nprobe, coll)
                dt = time.perf_counter() - t0
                r = recall_at_k(found, gt)
                out["recall"].append(
                    {"nprobe": nprobe, "filter": coll, "recall": r, "batch_qps": a.nq / dt}
                )
                print(f"{nprobe:>6} {coll or '-':>6} {r:>9.3f} {a.nq / dt:>9.0f}", flush=True)
        out["qps"] = []
        print(
            f"\n{'clients':>7} {'filter':>6} {'qps':>8} {'p50_ms':>8} {'p99_ms':>8} "
            f"{'calls':>7} {'errors':>6}   ({a.mode}, nprobe={a.qps_nprobe})"
        )
        for clients in [int(x) for x in a.clients.split(",")]:
            for coll in (None, "c0"):
                m = measure_qps(idx, xq, clients, a.duration, a.k, a.qps_nprobe, coll, a.mode)
                out["qps"].append({"clients": clients, "filter": coll, **m})
                print(
                    f"{clients:>7} {coll or '-':>6} {m['qps']:>8.1f} {m['p50_ms']:>8.2f} "
                    f"{m['p99_ms']:>8.2f} {m['calls']:>7} {m['errors']:>6}",
                    flush=True,
                )
    finally:
        idx.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


def _unshadow() -> None:
    """Run as a script, this file's folder is sys.path[0] and its name hides the package."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != here]
    mod = sys.modules.get("milvus_lite")
    if (
        mod is not None
        and Path(getattr(mod, "__file__", "") or "").resolve() == Path(__file__).resolve()
    ):
        del sys.modules["milvus_lite"]


if __name__ == "__main__":
    _unshadow()
    sys.exit(main())
