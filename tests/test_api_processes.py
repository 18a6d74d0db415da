"""Several API processes on one host (`sora serve --api-processes N`), real processes: a
delete through one is never in a result another produces after DeleteVideo returned;
`sora serve` puts N processes on one port (SO_REUSEPORT), restarts one that dies, and
stops them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.api.change_signal import ChangeSignal
from services.api.client import SoraClient
from services.store import open_store
from tests.test_api_harness import DIM, add_video, unit
from tests.workers_harness import ROOT, free_port, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _environ(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SORA_HOME=str(home),
        SORA_DATABASE_URL=f"sqlite:///{home / 'sora.db'}",
        SORA_BROKER_URL="memory://",  # no ingest here: nothing is sent
        # the keepers' own syncs would catch a delete up within this: never, in a test
        SORA_INDEX_SYNC_INTERVAL="3600",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _library(home: Path, rng, n: int = 6) -> tuple[list[int], np.ndarray]:
    home.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{home / 'sora.db'}")
    try:
        vectors = unit(rng.normal(size=(n, DIM)))
        ids = [add_video(store, np.repeat(v[None], 2, axis=0)) for v in vectors]
    finally:
        store.dispose()
    return ids, vectors


def _api_process(home: Path, port: int, index: int, processes: int, log: Path) -> subprocess.Popen:
    env = _environ(home, SORA_API_ADDRESS=f"127.0.0.1:{port}", SORA_API_PROCESSES=str(processes),
                   SORA_API_PROCESS_INDEX=str(index))  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "services.api.server", "--exit-with-parent", str(os.getpid())],
        cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip


def _stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def _top_ids(client: SoraClient, vector: np.ndarray) -> list[int]:
    return [h.video.id for h in client.search(vector=vector, top_k=10).hits]


def test_a_delete_through_one_api_process_is_at_once_out_of_the_others_results(tmp_path):
    home = tmp_path / "home"
    ids, vectors = _library(home, np.random.default_rng(40))
    ports = [free_port(), free_port()]
    procs = [_api_process(home, port, i, 2, tmp_path / f"api-{i}.log")
             for i, port in enumerate(ports)]  # fmt: skip
    clients = [SoraClient(f"127.0.0.1:{port}") for port in ports]
    try:
        for c in clients:
            c.wait_until_serving(timeout=180)
        for n, (via, other) in enumerate([(0, 1), (1, 0), (0, 1)]):
            video, vector = ids[n], vectors[n]
            assert _top_ids(clients[other], vector)[0] == video  # cached in `other`'s index
            clients[via].delete_video(video)
            # the very next search of the other process: its keeper would not sync for an
            # hour; the change signal made it catch up from SQL first
            assert video not in _top_ids(clients[other], vector)
            assert video not in _top_ids(clients[via], vector)
        rest = _top_ids(clients[1], vectors[4])
        assert rest[0] == ids[4] and set(rest) == set(ids[3:])  # nothing else was lost
        assert ChangeSignal(home / "api-changes.bin").value() == 3
    finally:
        for c in clients:
            c.close()
        _stop(*procs)
    logs = "".join((tmp_path / f"api-{i}.log").read_text(errors="replace") for i in (0, 1))
    assert "API process 0 of 2" in logs and "API process 1 of 2" in logs


def _listeners(port: int) -> dict[int, int]:
    """pid -> count of its sockets listening on 127.0.0.1:port (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].split(":")[1], 16) == port:  # 0A: LISTEN
                inodes.add(f[9])
    owners: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        n = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        if n:
            owners[int(proc.name)] = n
    return owners


def _search_until_answered(address: str, vector: np.ndarray) -> list[int]:
    """A fresh channel's search, again while it reaches a process that has just died."""
    answer: list[int] = []

    def answered() -> bool:
        with SoraClient(address) as c:
            try:
                answer[:] = _top_ids(c, vector)
            except grpc.RpcError as exc:
                if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
                return False
        return True

    wait_for(answered, 60, "a search to be answered")
    return answer


def test_sora_serve_runs_api_processes_on_one_port_and_restarts_one_that_dies(tmp_path):
    home = tmp_path / "home"
    ids, vectors = _library(home, np.random.default_rng(41))
    port = free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "sora_cli.main", "serve", "--api-processes", "2", "--port", "0"],
        cwd=ROOT, env=_environ(home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2 and "needs a fixed --port" in refused.stderr
    serve = subprocess.Popen(
        [sys.executable, "-m", "sora_cli.main", "serve", "--api-processes", "2", "--port",
         str(port), "--data-dir", str(home)],
        cwd=ROOT, env=_environ(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []

    def printed(pattern: str) -> re.Match:
        def seen() -> bool:
            if re.search(pattern, "".join(lines)):
                return True
            lines.append(serve.stdout.readline())
            assert lines[-1] or serve.poll() is None, "".join(lines)
            return False

        wait_for(seen, 120, f"sora serve to print {pattern!r}")
        return re.search(pattern, "".join(lines))

    try:
        printed(r"with 2 API processes")
        pids = [int(printed(rf"API process {i} started \(pid (\d+)\)").group(1)) for i in (0, 1)]
        with SoraClient(f"127.0.0.1:{port}") as c:
            c.wait_until_serving(timeout=180)
        wait_for(lambda: set(pids) <= set(_listeners(port)), 120, "both processes to listen")
        assert _search_until_answered(f"127.0.0.1:{port}", vectors[0])[0] == ids[0]

        os.kill(pids[1], signal.SIGKILL)
        new_pid = int(printed(r"API process 1 restarted \(pid (\d+)\)").group(1))
        assert new_pid != pids[1]
        wait_for(lambda: {pids[0], new_pid} <= set(_listeners(port)), 120, "the restarted one")
        assert pids[1] not in _listeners(port)
        for n in range(4):  # fresh connections, spread by the kernel: every one answered
            assert _search_until_answered(f"127.0.0.1:{port}", vectors[n])[0] == ids[n]

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
        wait_for(lambda: not _listeners(port), 60, "every API process to exit")
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(30)
        for pid in _listeners(port):
            os.kill(pid, signal.SIGKILL)


def test_only_the_snapshot_writer_process_writes_snapshots(db, tmp_path):
    from services.api.index_keeper import IndexKeeper
    from tests.test_api_harness import MODEL

    add_video(db, unit(np.random.default_rng(42).normal(size=(2, DIM))))
    written = {}
    for writer in (False, True):
        folder = tmp_path / f"index-{writer}"
        keeper = IndexKeeper(db, folder, configured_version=MODEL, save_snapshots=writer)
        keeper.sync_once()
        keeper.stop(save=True)  # a stop saves what changed: the writer's job alone
        written[writer] = sorted(p.name for p in folder.glob("*")) if folder.exists() else []
    assert written[False] == [] and any(n.endswith(".manifest.json") for n in written[True])


def test_a_signalled_delete_that_cannot_be_caught_up_does_not_fail_searches(
    db, tmp_path, monkeypatch
):
    """Another process's delete is caught up before a search; with SQL unreadable the
    search is still answered (from what is loaded), and the catch-up is tried again only
    after the sync interval, then succeeds."""
    import services.api.index_keeper as index_keeper
    from services.api.index_keeper import IndexKeeper
    from tests.test_api_harness import MODEL

    add_video(db, unit(np.random.default_rng(43).normal(size=(2, DIM))))
    signal_file = ChangeSignal(tmp_path / "changes.bin")
    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL, interval_s=30,
                         changes=signal_file, save_snapshots=False)  # fmt: skip
    keeper.sync_once()
    now = [1000.0]
    monkeypatch.setattr(index_keeper.time, "monotonic", lambda: now[0])
    attempts: list[float] = []
    real_catch_up = keeper.catch_up

    def catch_up() -> None:
        attempts.append(now[0])
        if len(attempts) == 1:
            raise RuntimeError("database is down")
        real_catch_up()

    monkeypatch.setattr(keeper, "catch_up", catch_up)
    assert keeper.serving().version == MODEL and attempts == []  # nothing signalled yet
    signal_file.bump()  # "another process deleted a video"
    assert keeper.serving().version == MODEL and attempts == [1000.0]  # failed, served
    now[0] += 10
    keeper.serving()
    assert attempts == [1000.0]  # not again within the interval
    now[0] += 25
    keeper.serving()
    keeper.serving()
    assert attempts == [1000.0, 1035.0]  # once more after it, and then caught up


def test_a_restart_on_current_snapshots_does_not_rewrite_them(db, tmp_path):
    """A keeper that loads its snapshots as they are writes none at its periodic save (it
    rewrote every snapshot a minute after each start: seconds of CPU at 10^6); once a sync
    catches rows up, the next periodic save writes again."""
    from services.api.index_keeper import IndexKeeper
    from tests.test_api_harness import MODEL

    rng = np.random.default_rng(44)
    add_video(db, unit(rng.normal(size=(2, DIM))))
    folder = tmp_path / "index"
    first = IndexKeeper(db, folder, configured_version=MODEL)
    first.sync_once()  # builds from SQL and saves
    first.stop(save=True)

    def files() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")}

    saved = files()
    assert any(n.endswith(".manifest.json") for n in saved)
    restarted = IndexKeeper(db, folder, configured_version=MODEL, save_interval_s=0.0)
    restarted.sync_once()  # loads the snapshots; the periodic save is due at once
    restarted.sync_once()
    assert restarted.serving().version == MODEL
    assert files() == saved
    add_video(db, unit(rng.normal(size=(2, DIM))))
    restarted.sync_once()  # caught up: unsaved rows, written by this sync's save
    assert files() != saved
    restarted.stop(save=False)
    # rows added while no process ran: the load catches them up, and they are saved
    saved = files()
    add_video(db, unit(rng.normal(size=(2, DIM))))
    again = IndexKeeper(db, folder, configured_version=MODEL, save_interval_s=0.0)
    again.sync_once()
    assert files() != saved
    again.stop(save=False)


def test_periodic_snapshot_saves_wait_in_proportion_to_what_the_last_one_cost(
    db, tmp_path, monkeypatch
):
    """Under a steady ingest every periodic save writes whole snapshots again (seconds at
    10^6): the next one waits SAVE_COST_FACTOR x the last one's CPU seconds when that is
    longer than save_interval_s, and never more than SAVE_WAIT_MAX x save_interval_s."""
    import services.api.index_keeper as index_keeper
    from services.api.index_keeper import SAVE_COST_FACTOR, SAVE_WAIT_MAX, IndexKeeper
    from services.index import VectorIndex
    from tests.test_api_harness import MODEL

    rng = np.random.default_rng(45)
    add_video(db, unit(rng.normal(size=(2, DIM))))
    now, cpu, cost = [1000.0], [0.0], [0.05]
    monkeypatch.setattr(index_keeper.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(index_keeper, "_cpu_clock", lambda: cpu[0])
    saves: list[float] = []
    real_save = VectorIndex.save_snapshot

    def costly_save(self, *args, **kwargs):  # a write that takes cost[0] CPU seconds
        saves.append(now[0])
        cpu[0] += cost[0]
        return real_save(self, *args, **kwargs)

    keeper = IndexKeeper(db, tmp_path / "index", configured_version=MODEL, save_interval_s=1.0)
    keeper.sync_once()  # built and saved by the build itself
    monkeypatch.setattr(VectorIndex, "save_snapshot", costly_save)

    def ingest_and_sync(after_s: float) -> int:
        add_video(db, unit(rng.normal(size=(2, DIM))))
        now[0] += after_s
        keeper.sync_once()
        return len(saves)

    levels = ingest_and_sync(5.0)  # dirty, past save_interval_s: saved, every level
    assert levels >= 1
    wait = SAVE_COST_FACTOR * cost[0] * levels  # 2.5 s a level: past the 1 s interval
    assert 1.0 < wait < SAVE_WAIT_MAX * 1.0
    assert ingest_and_sync(1.5) == levels  # past save_interval_s, not past the cost's wait
    assert ingest_and_sync(wait) == 2 * levels  # now past it: saved again
    cost[0] = 60.0  # a very costly write: the wait is capped
    assert ingest_and_sync(wait) == 3 * levels
    assert ingest_and_sync(SAVE_WAIT_MAX * 1.0 - 1.0) == 3 * levels
    assert ingest_and_sync(1.0) == 4 * levels  # at the cap, not 50 x 60 s
    keeper.stop(save=False)
