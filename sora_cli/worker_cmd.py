"""`sora worker`: a Celery ingest worker plus the reconciler, in this process.

`--exit-with-parent PID` (what `sora serve --embedded` passes): the worker dies with its
parent, however the parent ends (SIGKILL, OOM killer), so a restarted `sora serve` never
finds a second, orphaned worker on its data folder (services/parent_watch.py). SIGKILL
rather than SIGTERM: a warm shutdown would first finish the video in hand, minutes during
which the two workers overlap; a killed worker loses nothing (its job's lease runs out and
the reconciler re-sends it).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run an ingest worker (broker: $SORA_BROKER_URL, database: $SORA_DATABASE_URL)",
    )
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--hostname", help="Celery node name (default: sora@<host>-<pid>)")
    p.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        help="exit when process PID (this worker's parent) exits; sora serve --embedded sets it",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import socket

    if args.exit_with_parent is not None:
        from services.parent_watch import exit_with_parent

        exit_with_parent(args.exit_with_parent)  # first: before anything slow

    from services.jobs import QUEUE, Dispatcher, ReconcilerThread, declare_queue
    from workers.app import worker_app
    from workers.resources import settings, store

    cfg = settings()
    app = worker_app(cfg)
    declare_queue(app)
    reconciler = ReconcilerThread(
        store(),
        Dispatcher(app, store()),
        interval_s=cfg.reconcile_interval_s,
        dispatch_timeout_s=cfg.dispatch_timeout_s,
    )
    reconciler.start()
    # The solo pool runs the task in this process: one video at a time per worker; scale
    # with more worker processes (`--scale worker=N`). A killed worker's job is re-sent by
    # the reconciler once its lease expires, whatever the broker does with the message.
    argv = [
        "worker",
        "--pool=solo",
        f"--queues={QUEUE}",
        f"--loglevel={args.loglevel}",
        f"--hostname={args.hostname or f'sora@{socket.gethostname()}-{os.getpid()}'}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    try:
        app.worker_main(argv)
    finally:
        reconciler.stop()
    return 0
