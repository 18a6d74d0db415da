"""`sora ingest PATH|URL...`: videos (folders recursively, or http(s) URLs the server may
fetch) into the index.

    default        upload each file to the API server (works against any server); its
                   name and absolute path go along (the video's original_name/_path)
    --server-path  send the absolute paths instead (a server that reads the same disk,
                   inside its allowed roots)
    --direct       no server: register in the database and send to the broker directly
                   (the settings' URLs), for an operator on the service's own machine

Asset identity: --external-id ID (one file or URL), or --external-id-from relpath|stem|
name for folders (relpath: the file's path under the folder given, e.g. "day1/a.mp4");
--meta KEY=VALUE (repeatable) attaches user metadata to every video. Ingesting a file
again under its external id updates its metadata; another file under a taken id is
refused (ALREADY_EXISTS), and reported with the other failures.

With --wait: a progress bar of videos done, then failures with their reasons."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .client_options import add_client_options, connect
from .metadata_options import parse_key_values

EXTERNAL_ID_FROM = ("relpath", "stem", "name")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ingest", help="ingest video files or folders (recursively)")
    p.add_argument("paths", nargs="+", metavar="PATH|URL")
    p.add_argument("--collection", help="collection to file the videos under")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    ids = p.add_mutually_exclusive_group()
    ids.add_argument("--external-id", help="the asset's id in your tools (one PATH or URL)")
    ids.add_argument("--external-id-from", choices=EXTERNAL_ID_FROM,
                     help="each file's external id: its path under the folder given, its "
                     "stem or its name")  # fmt: skip
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="user metadata for every video (repeatable)")  # fmt: skip
    p.add_argument("--wait", action="store_true", help="wait until every video is done")
    p.add_argument(
        "--timeout", type=float, default=0, help="with --wait: give up after S seconds (0: never)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--server-path", action="store_true", help="send paths, not bytes")
    mode.add_argument("--direct", action="store_true", help="no API server: database + broker")
    add_client_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_direct(args) if args.direct else run_remote(args)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def sources(args: argparse.Namespace) -> list[tuple[str | Path, str | None]]:
    """(a file or URL, its external id or None) for every video the arguments name.
    FileNotFoundError for a missing path; ValueError for --external-id on many videos."""
    from sora_encoder.files import find_videos

    out: list[tuple[str | Path, str | None]] = []
    for arg in args.paths:
        if _is_url(arg):
            out.append((arg, None))
            continue
        root = Path(arg)
        for path in find_videos([arg]):
            ext = None
            if args.external_id_from == "relpath":
                ext = path.relative_to(root).as_posix() if root.is_dir() else path.name
            elif args.external_id_from == "stem":
                ext = path.stem
            elif args.external_id_from == "name":
                ext = path.name
            out.append((path, ext))
    if args.external_id:
        if len(out) != 1:
            raise ValueError(
                f"--external-id names one video, but the arguments give {len(out)}: use "
                f"--external-id-from {'|'.join(EXTERNAL_ID_FROM)} for many"
            )
        out = [(out[0][0], args.external_id)]
    return out


def run_remote(args: argparse.Namespace) -> int:
    import grpc

    try:
        todo = sources(args)
        user_metadata = parse_key_values(args.meta)
    except (FileNotFoundError, ValueError) as exc:
        print(f"sora ingest: {exc}", file=sys.stderr)
        return 2
    files = todo
    failures: list[tuple[str, str]] = []
    jobs: dict[int, str] = {}  # job id -> file
    known = 0
    with connect(args) as client:
        for path, external_id in todo:
            meta = dict(
                collection=args.collection, tags=args.tag, external_id=external_id,
                user_metadata=user_metadata,
            )  # fmt: skip
            try:
                if isinstance(path, str):  # a URL: the server fetches it
                    res = client.ingest_uri(path, **meta)
                elif args.server_path:
                    res = client.ingest_uri(str(path.resolve()), **meta)
                else:
                    res = client.upload(path, **meta)
            except grpc.RpcError as exc:
                failures.append((str(path), f"{exc.code().name}: {exc.details()}"))
                continue
            if res.job_id:
                jobs[res.job_id] = str(path)
            else:
                known += 1
        print(f"{len(files)} file(s): {len(jobs)} queued, {known} already known, "
              f"{len(failures)} refused", flush=True)  # fmt: skip
        if args.wait and jobs:
            failures += wait_for_jobs(client, jobs, args.timeout)
    for path, reason in failures:
        print(f"FAILED {path}: {reason}", file=sys.stderr)
    return 1 if failures else 0


def wait_for_jobs(client, jobs: dict[int, str], timeout: float) -> list[tuple[str, str]]:
    """Poll the jobs until each SUCCEEDED or FAILED, drawing a progress bar."""
    from services.api.gen.sora.v1 import sora_pb2 as pb

    final = (pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED)
    deadline = time.monotonic() + timeout if timeout else None
    state: dict[int, object] = {}
    shown = -1
    while True:
        for job_id in jobs:
            if job_id not in state or state[job_id].status not in final:
                state[job_id] = client.get_job(job_id)
        done = sum(1 for j in state.values() if j.status in final)
        if done != shown:
            shown = done
            bar = "#" * (30 * done // len(jobs))
            print(f"\r[{bar:<30}] {done}/{len(jobs)} videos done", end="", flush=True)
        if done == len(jobs):
            print()
            return [
                (jobs[j.id], j.error or "failed")
                for j in state.values()
                if j.status == pb.JOB_STATUS_FAILED
            ]
        if deadline and time.monotonic() > deadline:
            print()
            return [(jobs[j], f"not done after {timeout:.0f} s") for j, s in state.items()
                    if s.status not in final]  # fmt: skip
        time.sleep(0.5)


def run_direct(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from services.errors import ServiceError
    from services.index import IndexSet
    from services.jobs import Dispatcher, make_celery, register_files
    from services.settings import Settings
    from services.store import Segment, Video, VideoStatus, open_store

    settings = Settings.from_env()
    if any(_is_url(p) for p in args.paths):
        print("sora ingest: --direct takes files, not URLs", file=sys.stderr)
        return 2
    try:
        todo = sources(args)
        user_metadata = parse_key_values(args.meta)
    except (FileNotFoundError, ValueError) as exc:
        print(f"sora ingest: {exc}", file=sys.stderr)
        return 2
    files = [Path(p) for p, _ in todo]
    external_ids = {Path(p): ext for p, ext in todo if ext is not None}
    store = open_store(settings.database_url)
    try:
        subs = register_files(
            store, files, collection=args.collection, tags=args.tag,
            external_ids=external_ids, user_metadata=user_metadata,
        )  # fmt: skip
    except ServiceError as exc:  # e.g. an external id other bytes already have
        print(f"sora ingest: {exc} (files registered before it are queued by a worker's "
              "reconciler)", file=sys.stderr)  # fmt: skip
        return 2
    new_jobs = [s.job_id for s in subs if s.job_id is not None]
    sent = Dispatcher(make_celery(settings), store).send(new_jobs)
    known = len(subs) - len(new_jobs)
    print(f"{len(subs)} video(s): {len(new_jobs)} queued, {known} already known", flush=True)
    if len(sent) < len(new_jobs):
        print(
            f"warning: {len(new_jobs) - len(sent)} job(s) not sent (broker unreachable); "
            "a worker's reconciler sends them later",
            file=sys.stderr,
        )
    if not args.wait:
        return 0

    ids = [s.video_id for s in subs]
    deadline = time.monotonic() + args.timeout if args.timeout else None
    final = (VideoStatus.READY, VideoStatus.FAILED, VideoStatus.DELETED)
    shown = -1
    while True:
        with store.ReadSession.begin() as s:
            videos = s.scalars(select(Video).where(Video.id.in_(ids)))
            rows = {v.id: (v.status, v.error, v.uri) for v in videos}
        done = sum(1 for st, _, _ in rows.values() if st in final)
        if done != shown:
            shown = done
            bar = "#" * (30 * done // max(len(ids), 1))
            print(f"\r[{bar:<30}] {done}/{len(ids)} done", end="", flush=True)
        if done == len(ids):
            break
        if deadline and time.monotonic() > deadline:
            print(f"\nsora ingest: gave up waiting after {args.timeout:.0f} s", file=sys.stderr)
            return 3
        time.sleep(0.5)
    print()
    failed = [(uri, err) for st, err, uri in rows.values() if st is VideoStatus.FAILED]
    for uri, err in failed:
        print(f"FAILED {uri}: {err}", file=sys.stderr)

    # Bring the index of each model version these videos were embedded with up to date.
    with store.ReadSession.begin() as s:
        versions = sorted(
            set(s.scalars(select(Segment.model_version).where(Segment.video_id.in_(ids))))
        )
    for version in versions:
        for st in IndexSet(store, version, settings.snapshot_dir).sync():
            print(
                f"index {st.level} ({version}): {st.ntotal} vectors "
                f"(SQL: {st.sql_count}), +{st.added} -{st.removed}"
            )
    return 1 if failed else 0
