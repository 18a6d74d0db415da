"""`sora serve`: the gRPC API, and with --embedded a worker process beside it.

    sora serve --embedded [--port P] [--data-dir D]
        SQLite + the SQLite-backed broker + local index files under D (default ~/.sora):
        the API in this process, one `sora worker` child process; no server needed.
    sora serve [--port P]
        the API alone, on $SORA_DATABASE_URL and $SORA_BROKER_URL (PostgreSQL, Redis);
        run `sora worker` processes separately (as docker-compose does).

SIGTERM or Ctrl-C stops the API (letting calls in flight finish) and the worker. The worker
also dies when this process is killed outright (`sora worker --exit-with-parent`), so a
restart never finds two workers on one data folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from services.settings import Settings, home_of

logger = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the gRPC API (with --embedded: and a worker)")
    p.add_argument("--embedded", action="store_true", help="SQLite + embedded broker + a worker")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=50051, help="port (0: any free port)")
    p.add_argument("--data-dir", help="where the embedded service keeps its data (~/.sora)")
    p.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose videos may be ingested by server-side path (repeatable)",
    )
    p.set_defaults(func=run)


def embedded_environment(data_dir: Path) -> dict[str, str]:
    """The settings that make every part use files under `data_dir`, no servers."""
    return {
        "SORA_HOME": str(data_dir),
        "SORA_DATABASE_URL": f"sqlite:///{data_dir / 'sora.db'}",
        "SORA_BROKER_URL": f"sqla+sqlite:///{data_dir / 'broker.db'}",
    }


def service_environment(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, str]:
    """`environ` with the options applied: the environment of the API (read by Settings)
    and of the worker process it starts. os.environ itself is left alone."""
    env = dict(environ)
    if args.data_dir:
        env["SORA_HOME"] = str(Path(args.data_dir).resolve())
    if args.embedded:
        env.update(embedded_environment(home_of(env).resolve()))
    if args.allow_root:
        env["SORA_ALLOWED_ROOTS"] = os.pathsep.join(str(Path(r).resolve()) for r in args.allow_root)
    return env


def run(args: argparse.Namespace) -> int:
    from services.api.server import create_server

    env = service_environment(args, dict(os.environ))
    settings = Settings.from_env(env)
    settings.ensure_home()
    worker = None
    log_path = settings.home / "worker.log"

    def start_worker() -> subprocess.Popen:
        worker_cmd = ["worker", "--loglevel", "INFO", "--exit-with-parent", str(os.getpid())]
        proc = subprocess.Popen(
            [sys.executable, "-m", "sora_cli.main", *worker_cmd],
            env=env,
            stdout=open(log_path, "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
        )
        print(f"sora: worker started (pid {proc.pid}), log in {log_path}", flush=True)
        return proc

    if args.embedded:
        from services.jobs import declare_queue, make_celery

        declare_queue(make_celery(settings))  # before two processes race to create it
        worker = start_worker()
    restarts: list[float] = []
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server, port = create_server(f"{args.host}:{args.port}", settings=settings)
        server.start()
        mode = f"embedded, data in {settings.home}" if args.embedded else "external servers"
        print(f"sora: serving on {args.host}:{port} ({mode})", flush=True)
        while not stop.wait(0.5):
            if worker is not None and worker.poll() is not None:
                # Supervise: restart a dead worker (its job is re-sent by the reconciler),
                # but give up on one that keeps dying at once.
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                print(f"sora: the worker exited ({worker.returncode}); see {log_path}",
                      file=sys.stderr)  # fmt: skip
                if len(restarts) > 3:
                    print("sora: the worker died 4 times in a minute; stopping", file=sys.stderr)
                    return 1
                worker = start_worker()
        print("sora: stopping", flush=True)
        server.stop(grace=5).wait()
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
