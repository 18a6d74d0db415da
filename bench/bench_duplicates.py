"""Benchmark: FindDuplicates over a synthetic library through the real gRPC server, at a
few sizes, to say what the whole-library pass costs and how it grows.

    library   n videos of PER_VIDEO segments (bench_search.make_library: clustered 256-d
              unit vectors), 1 in COPY_EVERY a noisy copy of the video before it (each
              segment + N(0, COPY_NOISE) noise): the pairs to find
              --bulk INSERT--> SQLite (temp)
    server    create_server in this process; the index keeper loads the index from SQL
    call      client.find_duplicates(min_score=MIN_SCORE, refine=False): every video a
              video-id query, batches of 256 (one FAISS search each), alignment re-ranks
              max(2 top_k, 20) candidates per query

  wall        the call's seconds, and per video
  batch_load  the same with the candidates' segment vectors read per query (as before
              the batch read): what reading them once per batch saves
  found       planted pairs found (recall) and other pairs reported

    python bench/bench_duplicates.py [--sizes 1000,4000] [--json OUT]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import machine_info, print_table, write_json  # noqa: E402
from bench.bench_index import add_data_options, data_options  # noqa: E402
from bench.bench_search import load_sql, make_library  # noqa: E402

PER_VIDEO = 10  # bench_search's synthetic videos: 10 segments of 4 s
COPY_EVERY = 20  # 5 % of the library are copies
COPY_NOISE = 0.02
MIN_SCORE = 0.9
MODEL_VERSION = "bench-search-v1"  # load_sql writes this version
COLUMNS = (
    ("videos", "videos", "{:d}"),
    ("segments", "segments", "{:d}"),
    ("batch_load_s", "wall s", "{:.1f}"),
    ("batch_load_ms_per_video", "ms/video", "{:.2f}"),
    ("per_query_s", "wall s (per-query reads)", "{:.1f}"),
    ("per_query_ms_per_video", "ms/video", "{:.2f}"),
    ("recall", "planted found", "{:.3f}"),
    ("other_pairs", "other pairs", "{:d}"),
)


def make_copies(xb: np.ndarray) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    """Every COPY_EVERY-th video replaced by a noisy copy of the one before it ->
    (xb, xv, the planted pairs as (video id, video id), ids 1-based as load_sql writes)."""
    rng = np.random.default_rng(5)
    n_videos = len(xb) // PER_VIDEO
    xb = xb.reshape(n_videos, PER_VIDEO, -1).copy()  # (videos, segments, d)
    planted = set()
    for v in range(1, n_videos, COPY_EVERY):
        y = xb[v - 1] + COPY_NOISE * rng.normal(size=xb[v - 1].shape)
        xb[v] = y / np.linalg.norm(y, axis=1, keepdims=True)
        planted.add((v, v + 1))  # ids of videos v - 1 and v
    xv = xb.mean(axis=1)
    xv /= np.linalg.norm(xv, axis=1, keepdims=True)
    return xb.reshape(-1, xb.shape[-1]).astype(np.float32), xv.astype(np.float32), planted


def bench_size(n_videos: int, dim: int, data: dict, home: Path) -> dict:
    from services.api.client import SoraClient
    from services.api.server import create_server
    from services.search import pipeline
    from services.settings import Settings
    from services.store import open_store

    xb, _ = make_library(n_videos * PER_VIDEO, dim, data)
    xb, xv, planted = make_copies(xb)
    url = f"sqlite:///{home / f'dup-{n_videos}.db'}"
    t = time.perf_counter()
    load_sql(url, xb, xv)
    load_s = time.perf_counter() - t
    store = open_store(url)
    settings = Settings(home=home / f"home-{n_videos}", database_url=url, broker_url="memory://",
                        index_sync_interval_s=3600.0)  # fmt: skip

    class _NoDispatch:
        def send(self, job_ids):
            return list(job_ids)

    server, port = create_server("127.0.0.1:0", settings=settings, store=store,
                                 dispatcher=_NoDispatch(), model_version=MODEL_VERSION)  # fmt: skip
    server.start()
    row: dict = {"videos": n_videos, "segments": len(xb), "load_sql_s": round(load_s, 1)}
    try:
        assert server.keeper.wait_ready(600), "the index did not load"
        with SoraClient(f"127.0.0.1:{port}", timeout=None) as client:
            for mode, cap in (("batch_load", pipeline.BATCH_LOAD_MAX_VIDEOS), ("per_query", 0)):
                pipeline.BATCH_LOAD_MAX_VIDEOS = cap
                try:
                    t = time.perf_counter()
                    found = client.find_duplicates(min_score=MIN_SCORE, refine=False)
                    wall = time.perf_counter() - t
                finally:
                    pipeline.BATCH_LOAD_MAX_VIDEOS = 8192
                pairs = {tuple(sorted((p.query.video.id, p.target.video.id)))
                         for g in found.groups for p in g.pairs}  # fmt: skip
                row[f"{mode}_s"] = round(wall, 2)
                row[f"{mode}_ms_per_video"] = round(1000 * wall / n_videos, 2)
                row["recall"] = round(len(pairs & planted) / len(planted), 3)
                row["other_pairs"] = len(pairs - planted)
    finally:
        server.stop(0).wait(10)
        store.dispose()
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1000,4000", help="library sizes in videos")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--json", metavar="OUT")
    add_data_options(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = data_options(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dup-") as tmp:
        for n in [int(x) for x in args.sizes.split(",")]:
            rows.append(bench_size(n, args.dim, data, Path(tmp)))
            print_table(rows, COLUMNS)
    if args.json:
        write_json(args.json, {"machine": machine_info(), "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
