"""A/B of search servers: variants of the project's API server (each a checkout and an
environment) and the echo floor, measured interleaved in one run at 10^6 vectors, so that a
change is judged by its ratio to the floor beside the unchanged code, not by QPS taken an
hour apart on a shared host (bench_search.py's floor moved 1.5x between two runs).

    variant   NAME=CHECKOUT[:VAR=VALUE,...]: a server group (--api-processes) started from
              that checkout's services/ and bench/ (this venv's packages), with those
              environment variables: for code that reads them itself (a trial's switch);
              the server's Settings are bench_search's, not read from $SORA_*
    echo      bench_search's echo server of the same messages (the floor)
    lean      bench_search's lean reference (unless --no-lean): the echo plus the search
              itself over the same snapshot, what any Python server of this index pays
    rounds    every variant and the echo back to back per client count, --rounds times,
              each round starting one server further on, so that none always runs
              first or last (in a fixed order the later servers tended to run lower)
    library   bench_search's cached library (runs/bench_search, built when missing), its
              SQLite file and snapshots copied once into a scratch folder that all
              variants serve (no ingest here); a variant that would build or tune its
              index otherwise than the first (factory, nprobe, vectors) stops the run,
              since its snapshot would be what the variants after it load

Run the same checkout twice (A/A) to see the host's noise: on the 2-core dev host two
groups of one checkout differed by 5-8 % in their medians of three or four rounds.

    python bench/ab_search.py --variant main=. --variant trial=../trial:FOO=1 \
        [--clients 1,64] [--rounds 3] [--duration 5] [--json OUT]

Each variant's server process imports from its own checkout (multiprocessing's spawn
starts it with that checkout first on sys.path); this module imports nothing of the
project at import time, because a spawned child imports it again as its main module.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_variant(spec: str) -> tuple[str, Path, dict[str, str]]:
    """NAME=CHECKOUT[:VAR=VALUE,...] -> (name, checkout, environment)."""
    name, sep, rest = spec.partition("=")
    checkout, _, env = rest.partition(":")
    if not sep or not name or not checkout:
        raise argparse.ArgumentTypeError(f"{spec!r}: give NAME=CHECKOUT[:VAR=VALUE,...]")
    pairs = [kv.split("=", 1) for kv in env.split(",") if kv]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"{spec!r}: environment as VAR=VALUE,VAR=VALUE")
    path = Path(checkout).resolve()
    if not (path / "bench" / "bench_search.py").exists():
        raise argparse.ArgumentTypeError(f"{path} is not a checkout of this project")
    return name, path, dict(pairs)  # type: ignore[arg-type]


@contextlib.contextmanager
def imports_from(checkout: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Processes spawned meanwhile import the project from `checkout`, with `env` (a
    child takes both at its start)."""
    saved_path, saved_env = list(sys.path), dict(os.environ)
    sys.path.insert(0, str(checkout))
    os.environ.update(env or {})
    try:
        yield
    finally:
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)


def start_variant(bs: Any, checkout: Path, env: dict[str, str], url: str, home: Path,
                  processes: int) -> Any:  # fmt: skip
    """A server group of `checkout` with `env`."""
    with imports_from(checkout, env):
        return bs.ProcessGroup(
            lambda address, i: bs.ServerProcess(url, home, None, None, address, processes, i),
            processes,
        )


def measure(bs: Any, group: Any, payloads: list[bytes], clients: int, args: Any) -> dict:
    """bench_search's measure of one setting, the figures compared here."""
    run = bs.measure(group, payloads, clients, args)
    return {k: run[k] for k in ("qps", "p50_ms", "p99_ms", "errors", "server_cpu_ms_per_call")}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None  # a setting that answered nothing has no ratio


def _median(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summary(runs: list[dict], names: list[str], clients: list[int]) -> list[dict]:
    """Per client count and server: medians, and the medians of per-round ratios to the
    echo of the same round."""
    rows = []
    for c in clients:
        echo = [r for r in runs if r["clients"] == c and r["server"] == "echo"]
        for name in names:
            mine = [r for r in runs if r["clients"] == c and r["server"] == name]
            pairs = list(zip(mine, echo, strict=True))
            rows.append({
                "clients": c, "server": name,
                "qps": _median(r["qps"] for r in mine),
                "qps_vs_floor": _median(_ratio(a["qps"], b["qps"]) for a, b in pairs),
                "p50_vs_floor": _median(_ratio(a["p50_ms"], b["p50_ms"]) for a, b in pairs),
                "cpu_ms": _median(r["server_cpu_ms_per_call"] for r in mine),
                "rounds": " ".join(f"{_ratio(a['qps'], b['qps']) or 0:.2f}" for a, b in pairs),
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", type=parse_variant, action="append", required=True)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--clients", default="1,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--api-processes", type=int, default=2)
    ap.add_argument("--cache", default=str(ROOT / "runs" / "bench_search"))
    ap.add_argument("--level", choices=("segment", "video"), default="segment",
                    help="the level the searches ask for")  # fmt: skip
    ap.add_argument("--json", help="write the runs and the summary here")
    ap.add_argument("--lean", action=argparse.BooleanOptionalAction, default=True,
                    help="run the lean reference too (bench_search's)")  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(ROOT))
    import grpc  # noqa: PLC0415

    import bench.bench_search as bs  # noqa: PLC0415 - see the module's docstring
    from bench._common import machine_info, print_table, write_json  # noqa: PLC0415
    from services.api.client import SoraClient  # noqa: PLC0415

    bs.add_data_options(ap)
    args = ap.parse_args(argv)
    args.dim, args.database, args.ready_timeout = 256, "sqlite", 900.0
    args.max_calls = 10**7  # bench_search.measure's cap: the duration decides
    clients = [int(c) for c in args.clients.split(",")]
    data = bs.data_options(args)
    names = [name for name, _, _ in args.variant]
    if len(set(names)) < len(names) or {"echo", "lean"} & set(names):
        ap.error("variant names must differ, and 'echo' and 'lean' are the references'")
    cache = bs.cached_library(args.size, args, data)
    # the variants' children import from their own checkouts (bench_search put ROOT on
    # the path too: every copy goes)
    sys.path[:] = [p for p in sys.path if p != str(ROOT)]
    scratch = Path(tempfile.mkdtemp(prefix="ab_search-"))
    groups: dict[str, Any] = {}
    try:
        shutil.copytree(cache / "index", scratch / "index")
        shutil.copy(cache / "sora.db", scratch / "sora.db")
        url = f"sqlite:///{scratch / 'sora.db'}"
        served = None
        for name, checkout, env in args.variant:
            group = groups[name] = start_variant(bs, checkout, env, url, scratch,
                                                 args.api_processes)  # fmt: skip
            with SoraClient(group.address) as client:
                client.wait_until_serving(timeout=args.ready_timeout)
            indexes = [member.ask("info")["indexes"] for member in group.members]  # all loaded
            served = served or indexes[0]
            if any(i != served for i in indexes):
                raise SystemExit(f"{name} serves {indexes[0]}, not {served}: not an A/B")
        payloads = bs.search_payloads(
            bs.make_queries(1000, args.dim, data)[args.level], args.level, None
        )
        first = next(iter(groups.values()))
        with grpc.insecure_channel(first.address) as channel:  # the echo answers what
            answer = channel.unary_unary(bs.SEARCH_METHOD)(payloads[0])  # the first did
        workers = bs.Settings_default("max_workers")
        responses = {bs.LEVELS[args.level]: answer}
        with imports_from(ROOT):  # the echo is this checkout's
            groups["echo"] = bs.ProcessGroup(
                lambda address, _: bs.EchoProcess("sync", workers, responses, address),
                args.api_processes,
            )
            if args.lean:  # over the snapshot the variants serve
                snapshots = str(bs.server_settings(url, scratch).snapshot_dir), args.dim
                groups["lean"] = bs.ProcessGroup(
                    lambda address, _: bs.EchoProcess("sync", workers, responses, address,
                                                      snapshots),
                    args.api_processes,
                )  # fmt: skip
        runs = []
        for rnd in range(args.rounds):
            for c in clients:
                names = list(groups)  # each round starts one further on: the order moves
                names = names[rnd % len(names) :] + names[: rnd % len(names)]  # every one
                for name in names:
                    group = groups[name]
                    run = {"round": rnd, "clients": c, "server": name,
                           **measure(bs, group, payloads, c, args)}  # fmt: skip
                    runs.append(run)
                    print(
                        f"r{rnd} x{c} {name}: {run['qps']:.0f} QPS, p50 {run['p50_ms']:.2f}"
                        f" ms, {run['server_cpu_ms_per_call']:.3f} ms CPU a call",
                        flush=True,
                    )
        if args.json:  # the runs first: they are kept if the summary fails
            variants = {n: {"checkout": str(p), "env": e} for n, p, e in args.variant}
            report = {"machine": machine_info(), "variants": variants, "runs": runs}
            write_json(args.json, report)
        rows = summary(runs, list(groups), clients)
        print("\nmedians over rounds; ratios to the echo of the same round")
        print_table(rows, [("clients", "clients", "{}"), ("server", "server", "{}"),
                           ("qps", "QPS", "{:.0f}"), ("qps_vs_floor", "QPS/floor", "{:.3f}"),
                           ("p50_vs_floor", "p50/floor", "{:.2f}"),
                           ("cpu_ms", "srv CPU ms/call", "{:.3f}"),
                           ("rounds", "QPS/floor by round", "{}")])  # fmt: skip
        if args.json:
            write_json(args.json, {**report, "summary": rows})
    finally:
        for group in groups.values():
            group.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
