"""`sora worker`: a Celery ingest worker plus the reconciler, in this process."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run an ingest worker (broker: $SORA_BROKER_URL, database: $SORA_DATABASE_URL)",
    )
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--hostname", help="Celery node name (default: sora@<host>-<pid>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import socket

    from workers.celery_app import QUEUE, app, declare_queue
    from workers.dispatch import Dispatcher
    from workers.reconciler import ReconcilerThread
    from workers.resources import settings, store

    cfg = settings()
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
