"""`sora serve`: the gRPC API, and with --embedded a worker process beside it.

    sora serve --embedded [--port P] [--data-dir D]
        SQLite + the SQLite-backed broker + local index files under D (default ~/.sora):
        the API in this process, one `sora worker` child process; no server needed.
    sora serve [--port P]
        the API alone, on $SORA_DATABASE_URL and $SORA_BROKER_URL (PostgreSQL, Redis);
        run `sora worker` processes separately (as docker-compose does).
    sora serve ... --api-processes N --port P
        N API processes sharing port P (SO_REUSEPORT: the kernel spreads connections over
        them), each with its own index in memory: one Python process is bound by its GIL
        (docs/ARCHITECTURE.md, "Serving search"). Only process 0 writes index snapshots; a
        delete through one is seen by the others' next search (change_signal.py). One
        client channel is one connection, so it is served by one process: many clients,
        or a channel per client thread, spread the load.

SIGTERM or Ctrl-C stops the API (letting calls in flight finish) and the worker. Child
processes (the worker, API processes) are restarted when they die, unless one dies 4 times
in a minute, and die when this process is killed outright (services/parent_watch.py), so
a restart never finds two workers on one data folder or orphans on the port.
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
from collections.abc import Callable
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
        "--api-processes",
        type=int,
        default=1,
        metavar="N",
        help="API processes sharing the port (default 1; needs a fixed --port)",
    )
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
    from services.api.server import create_server, freeze_after_load

    if args.api_processes < 1:
        print("sora: --api-processes must be 1 or more", file=sys.stderr)
        return 2
    if args.api_processes > 1 and args.port == 0:
        print("sora: --api-processes N needs a fixed --port: the processes share it",
              file=sys.stderr)  # fmt: skip
        return 2
    env = service_environment(args, dict(os.environ))
    # one process unless --api-processes says otherwise (not a stray SORA_API_PROCESSES)
    for name in ("SORA_API_PROCESSES", "SORA_API_PROCESS_INDEX"):
        env.pop(name, None)
    settings = Settings.from_env(env)
    settings.ensure_home()
    log_path = settings.home / "worker.log"

    def start_worker() -> subprocess.Popen:
        worker_cmd = ["worker", "--loglevel", "INFO", "--exit-with-parent", str(os.getpid())]
        return subprocess.Popen(
            [sys.executable, "-m", "sora_cli.main", *worker_cmd],
            env=env,
            stdout=open(log_path, "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
        )

    def start_api(index: int) -> subprocess.Popen:
        child_env = {**env, "SORA_API_ADDRESS": f"{args.host}:{args.port}",
                     "SORA_API_PROCESSES": str(args.api_processes),
                     "SORA_API_PROCESS_INDEX": str(index)}  # fmt: skip
        return subprocess.Popen(
            [sys.executable, "-m", "services.api.server", "--exit-with-parent", str(os.getpid())],
            env=child_env,
        )

    children: list[Supervised] = []
    if args.embedded:
        from services.jobs import declare_queue, make_celery

        declare_queue(make_celery(settings))  # before two processes race to create it
        children.append(Supervised("worker", start_worker, str(log_path)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    try:
        mode = f"embedded, data in {settings.home}" if args.embedded else "external servers"
        if args.api_processes == 1:
            server, port = create_server(f"{args.host}:{args.port}", settings=settings)
            server.start()
            freeze_after_load(server)
            print(f"sora: serving on {args.host}:{port} ({mode})", flush=True)
        else:
            for i in range(args.api_processes):
                children.append(Supervised(f"API process {i}", lambda i=i: start_api(i)))
            pids = ", ".join(str(c.proc.pid) for c in children if c.name.startswith("API"))
            print(f"sora: serving on {args.host}:{args.port} ({mode}) with "
                  f"{args.api_processes} API processes (pids {pids})", flush=True)  # fmt: skip
        while not stop.wait(0.5):
            if not all(c.alive_or_restarted() for c in children):
                return 1
        print("sora: stopping", flush=True)
        if server is not None:
            server.stop(grace=5).wait()
        return 0
    finally:
        for c in children:  # all at once: each finishes its calls (process 0 then saves)
            c.terminate()
        for c in children:
            c.wait()


class Supervised:
    """A child process, restarted when it dies (a killed worker's job is re-sent by the
    reconciler; an API process loads its index again), unless it keeps dying at once."""

    def __init__(self, name: str, start: Callable[[], subprocess.Popen], log: str = "") -> None:
        """log: where its output goes, when not to this process's."""
        self.name, self.start, self.log = name, start, log
        self.proc = start()
        self.restarts: list[float] = []
        print(f"sora: {name} started (pid {self.proc.pid}){', log in ' + log if log else ''}",
              flush=True)  # fmt: skip

    def alive_or_restarted(self) -> bool:
        """False once it died 4 times in a minute (the caller stops)."""
        if self.proc.poll() is None:
            return True
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        print(f"sora: the {self.name} exited ({self.proc.returncode})"
              f"{'; see ' + self.log if self.log else ''}",
              file=sys.stderr)  # fmt: skip
        if len(self.restarts) > 3:
            print(f"sora: the {self.name} died 4 times in a minute; stopping", file=sys.stderr)
            return False
        self.proc = self.start()
        print(f"sora: {self.name} restarted (pid {self.proc.pid})", flush=True)
        return True

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout: float = 30.0) -> None:
        """Until it exited (SIGTERM sent); killed after `timeout`."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
