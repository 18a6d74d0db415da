"""Real parts for the ingest tests: a Redis server of our own on a free port, `sora worker`
processes, and the environment that points them at one database and one broker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_or_skip(reason: str) -> None:
    """CI sets SORA_REQUIRE_SERVERS=1: a missing server is then a failure, not a skip."""
    if os.environ.get("SORA_REQUIRE_SERVERS"):
        pytest.fail(reason)
    pytest.skip(reason)


class RedisServer:
    """A throw-away redis-server (no persistence, like this machine's): restarting it
    loses every queued message, which is the fault the reconciler must absorb."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            require_or_skip("redis-server is not installed")
        self.exe, self.workdir, self.port = exe, workdir, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: _redis_ping(self.port), 10, "redis-server to start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_for(cond: Callable[[], object], timeout_s: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_for_progress(
    cond: Callable[[], object],
    progress: Callable[[], object],
    stall_s: float,
    what: str,
    every: float = 0.05,
    limit_s: float = 1800.0,
):
    """wait_for() without a deadline sized for a quiet machine: wait as long as `progress()`
    keeps changing (jobs advancing, logs growing) and fail once it has stood still for
    `stall_s` seconds (or after `limit_s` in all, a backstop against a livelock)."""
    start = last_change = time.monotonic()
    seen = progress()
    while True:
        value = cond()
        if value:
            return value
        now = time.monotonic()
        if now - start > limit_s:
            raise AssertionError(f"gave up after {limit_s:.0f} s waiting for {what}")
        if (current := progress()) != seen:
            seen, last_change = current, now
        elif now - last_change > stall_s:
            raise AssertionError(f"no progress for {stall_s:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class IngestEnv:
    home: Path
    database_url: str
    broker_url: str
    workers: list[subprocess.Popen] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. SORA_VARIANT

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SORA_HOME=str(self.home),
            SORA_DATABASE_URL=self.database_url,
            SORA_BROKER_URL=self.broker_url,
            SORA_CACHE_DIR=str(self.home / "cache"),
            # Short clocks so faults are noticed within a test's time. The lease is renewed
            # once per embedded batch: 3 s expired under a loaded machine's slower batches,
            # and the live job was re-queued until it failed for attempts (MAX_ATTEMPTS).
            SORA_LEASE_SECONDS="20",
            SORA_RECONCILE_INTERVAL="0.5",
            SORA_DISPATCH_TIMEOUT="4",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start_worker(self) -> subprocess.Popen:
        log = open(self.home / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "sora_cli.main", "worker", "--loglevel", "INFO"],
            cwd=ROOT, env=self.environ(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.workers.append(proc)
        return proc

    def sora(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sora_cli.main", *args],
            cwd=ROOT, env=self.environ(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def worker_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.home.glob("worker-*.log"))
        )
