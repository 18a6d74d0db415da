"""Benchmark: the vector index at 10^5 and 10^6 vectors against exact search, in one run.

xb = clustered unit vectors (d=256)  ->  MemoryVectorSource  ->  VectorIndex.load_or_build
xq = new vectors from the same clusters (never stored)
  build_s   load_or_build from the source: choose, sample, train, add, tune nprobe,
            write the snapshot
  load_s    a second VectorIndex loading that snapshot (sha256 check + read)
  single    p50 / p99 latency of one query at a time, k=10, one faiss thread (the
            service answers concurrent requests each on its own thread)
  batch     queries per second for all queries in one call, all threads
  recall    recall@10 against exact search (faiss.knn over xb), ties tolerated
  exact     p50 / p99 of the same single queries on an exact IndexFlatIP: the ratio
            is what the approximate index buys
and an nprobe sweep around the tuned value: which nprobe reaches recall 0.95 and the
5 ms p99 target.

python bench/bench_index.py [--sizes 100000 1000000] [--dim 256] [--json OUT]
"""

# ruff: noqa: E741  (I: faiss's name for the id matrix)
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.memory_vector_source

from services.index import VectorIndex, recall_at_k  # noqa: E402
from tests.memory_vector_source import MemoryVectorSource  # noqa: E402

log = logging.getLogger("bench_index")

K = 10
TARGET_P99_MS = 5.0
TARGET_RECALL = 0.95


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The synthetic data's shape, shared by the benchmarks that use `make_vectors`."""
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--spread", type=float, default=1.5, help="subspace spread / centre")
    parser.add_argument("--intrinsic-dim", type=int, default=32)
    parser.add_argument("--noise", type=float, default=0.3, help="isotropic noise / centre")


def data_options(args: argparse.Namespace) -> dict:
    """`make_vectors` keyword arguments from `add_data_options`' options."""
    return {
        "n_clusters": args.clusters,
        "spread": args.spread,
        "intrinsic_dim": args.intrinsic_dim,
        "noise": args.noise,
    }


def make_vectors(
    n: int,
    dim: int,
    *,
    n_clusters: int,
    spread: float,
    intrinsic_dim: int,
    noise: float,
    seed: int = 0,
    sample_seed: int = 0,
) -> np.ndarray:
    """(n, dim) float32 unit vectors: centre + spread * (z @ B) + noise * eps, normalised.

    Centres and the subspace basis B (intrinsic_dim x dim) come from `seed`; the samples
    from `sample_seed`, so another sample_seed draws queries from the same distribution.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = rng.standard_normal((intrinsic_dim, dim), dtype=np.float32) / np.sqrt(dim)
    rng = np.random.default_rng([seed, sample_seed])
    xb = np.empty((n, dim), np.float32)
    for lo in range(0, n, 65536):
        hi = min(n, lo + 65536)
        z = rng.standard_normal((hi - lo, intrinsic_dim), dtype=np.float32)
        eps = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        xb[lo:hi] = centres[rng.integers(0, n_clusters, hi - lo)]
        xb[lo:hi] += (spread / np.sqrt(intrinsic_dim)) * (z @ basis)  # (m, dim)
        xb[lo:hi] += (noise / np.sqrt(dim)) * eps
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    return xb


def single_query_ms(search, xq: np.ndarray, k: int) -> np.ndarray:
    """Latency of each query searched alone, in ms, after a short warm-up."""
    for i in range(min(20, len(xq))):
        search(xq[i : i + 1], k)
    ms = np.empty(len(xq))
    for i in range(len(xq)):
        t = time.perf_counter()
        search(xq[i : i + 1], k)
        ms[i] = (time.perf_counter() - t) * 1e3
    return ms


def one_thread(fn, *args):
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return fn(*args)
    finally:
        faiss.omp_set_num_threads(threads)


def bench_size(n: int, dim: int, nq: int, n_exact_latency: int, data: dict, folder: Path) -> dict:
    t = time.perf_counter()
    xb = make_vectors(n, dim, **data, sample_seed=0)
    xq = make_vectors(nq, dim, **data, sample_seed=1)
    src = MemoryVectorSource(dim)
    ids = src.add("segment", "bench", xb)
    log.info("n=%d: data in %.1fs", n, time.perf_counter() - t)

    vi = VectorIndex("segment", "bench", dim, folder, src)
    t = time.perf_counter()
    vi.load_or_build()
    build_s = time.perf_counter() - t
    manifest = vi.manifest
    log.info("n=%d: built %s in %.1fs", n, manifest.factory, build_s)

    t = time.perf_counter()
    loaded = VectorIndex("segment", "bench", dim, folder, src)
    report = loaded.load_or_build()
    load_s = time.perf_counter() - t
    assert report.loaded_from_snapshot, report
    del loaded

    t = time.perf_counter()
    D_exact, pos = faiss.knn(xq, xb, 2 * K, metric=faiss.METRIC_INNER_PRODUCT)
    I_exact = ids[pos]
    log.info("n=%d: exact ground truth in %.1fs", n, time.perf_counter() - t)

    def measure() -> dict:
        _, I = vi.search(xq, K)
        ms = one_thread(single_query_ms, vi.search, xq, K)
        t = time.perf_counter()
        vi.search(xq, K)
        batch_s = time.perf_counter() - t
        return {
            "recall_at_10": recall_at_k(I, I_exact, K, D_exact),
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "batch_qps": nq / batch_s,
        }

    result = {
        "n": n,
        "dim": dim,
        "factory": manifest.factory,
        "nprobe": manifest.search_params.get("nprobe", 0),
        "build_s": build_s,
        "load_s": load_s,
        "recall_at_10_build": manifest.recall_at_10,  # measured by the build itself
        **measure(),
    }

    sweep = []
    if manifest.nlist:
        tuned = manifest.search_params["nprobe"]
        for nprobe in sorted({max(1, tuned // 2), tuned, 2 * tuned, 4 * tuned}):
            if nprobe > manifest.nlist:
                continue
            vi.set_nprobe(nprobe)
            sweep.append({"nprobe": nprobe, **measure()})
        vi.set_nprobe(tuned)
    result["sweep"] = sweep

    flat = faiss.IndexFlatIP(dim)
    flat.add(xb)
    exact_ms = one_thread(single_query_ms, flat.search, xq[:n_exact_latency], K)
    result["exact_p50_ms"] = float(np.percentile(exact_ms, 50))
    result["exact_p99_ms"] = float(np.percentile(exact_ms, 99))
    result["speedup_p50_vs_exact"] = result["exact_p50_ms"] / result["p50_ms"]
    result["meets_target"] = bool(
        result["p99_ms"] <= TARGET_P99_MS and result["recall_at_10"] >= TARGET_RECALL
    )
    return result


def print_table(results: list[dict]) -> None:
    head = (
        f"{'n':>9} {'factory':>14} {'nprobe':>6} {'build s':>8} {'load s':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'batch qps':>10} {'recall@10':>9} "
        f"{'exact p50':>9} {'exact p99':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['n']:>9} {r['factory']:>14} {r['nprobe']:>6} {r['build_s']:>8.1f} "
            f"{r['load_s']:>6.1f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} "
            f"{r['batch_qps']:>10.0f} {r['recall_at_10']:>9.4f} "
            f"{r['exact_p50_ms']:>9.2f} {r['exact_p99_ms']:>9.2f}"
        )
    for r in results:
        if r["sweep"]:
            print(f"\nnprobe sweep at n={r['n']} ({r['factory']}):")
            print(f"{'nprobe':>8} {'recall@10':>9} {'p50 ms':>7} {'p99 ms':>7} {'batch qps':>10}")
            for s in r["sweep"]:
                print(
                    f"{s['nprobe']:>8} {s['recall_at_10']:>9.4f} {s['p50_ms']:>7.3f} "
                    f"{s['p99_ms']:>7.3f} {s['batch_qps']:>10.0f}"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries")
    parser.add_argument("--exact-queries", type=int, default=200, help="for exact latency")
    add_data_options(parser)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    data = data_options(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)

    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench_index_") as folder:
            result = bench_size(n, args.dim, args.queries, args.exact_queries, data, Path(folder))
            results.append(result)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        machine = {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "gpus": faiss.get_num_gpus(),
        }
        payload = {"machine": machine, "data": data, "k": K, "results": results}
        args.json.write_text(json.dumps(payload, indent=2))
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
