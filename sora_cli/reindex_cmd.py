"""`sora reindex`: re-embed the library with the configured checkpoint, in the background.
Searches keep serving the old vectors until the new set covers every video."""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("reindex", help="re-embed every video with the configured checkpoint")
    p.add_argument("--wait", action="store_true", help="wait until the new version serves")
    p.add_argument("--timeout", type=float, default=0, help="with --wait: give up after S s")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from services.index import IndexSet
    from services.jobs import Dispatcher, enqueue_reindex, make_celery
    from services.settings import Settings
    from services.store import open_store, serving_model_version, videos_missing_version
    from sora_encoder import load_runtime

    settings = Settings.from_env()
    store = open_store(settings.database_url)
    version = load_runtime(settings.checkpoint, variant=settings.variant).model_version
    jobs = enqueue_reindex(store, version)
    Dispatcher(make_celery(settings), store).send(jobs)
    with store.ReadSession.begin() as s:
        serving = serving_model_version(s, version)
        todo = len(videos_missing_version(s, version))
    print(f"model {version}: {len(jobs)} job(s) queued, {todo} video(s) to re-embed; "
          f"serving {serving}")  # fmt: skip
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while todo:
        if deadline and time.monotonic() > deadline:
            print(f"gave up waiting: {todo} video(s) left")
            return 3
        time.sleep(0.5)
        with store.ReadSession.begin() as s:
            todo = len(videos_missing_version(s, version))
    for st in IndexSet(store, version, settings.snapshot_dir).sync():
        print(f"index {st.level} ({version}): {st.ntotal} vectors (SQL: {st.sql_count})")
    with store.ReadSession.begin() as s:
        print(f"serving {serving_model_version(s, version)}")
    return 0
