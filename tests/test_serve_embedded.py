"""`sora serve --embedded` with real processes: its worker child dies with it, even when the
serve process is killed with SIGKILL (no chance to stop the worker itself)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workers_harness import ROOT, IngestEnv, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie waiting for init to reap it counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_worker_exits_when_serve_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = IngestEnv(home, f"sqlite:///{home / 'sora.db'}", f"sqla+sqlite:///{home / 'broker.db'}")
    serve = subprocess.Popen(
        [sys.executable, "-m", "sora_cli.main", "serve", "--embedded", "--port", "0",
         "--data-dir", str(home)],
        cwd=ROOT, env=env.environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    worker_pid: int | None = None
    try:
        lines: list[str] = []

        def serving() -> bool:
            lines.append(serve.stdout.readline())
            assert lines[-1] or serve.poll() is None, "".join(lines)
            return "serving on" in lines[-1]

        wait_for(serving, 120, "sora serve to print its address")
        found = re.search(r"worker started \(pid (\d+)\)", "".join(lines))
        assert found, "".join(lines)
        worker_pid = int(found.group(1))
        # The worker is up and consuming (Celery logs "ready") before its parent dies.
        wait_for(lambda: b" ready." in (home / "worker.log").read_bytes(), 120, "the worker")
        assert _alive(worker_pid)

        serve.send_signal(signal.SIGKILL)
        serve.wait(30)
        wait_for(lambda: not _alive(worker_pid), 60, f"worker {worker_pid} to exit", every=0.1)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(30)
        if worker_pid is not None and _alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)  # the bug: do not leave it running
