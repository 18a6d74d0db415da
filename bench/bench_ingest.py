"""Ingest benchmark: a folder end to end through one real worker, against the decode-only
and encode-only times of the same files, measured in the same run.

    e2e     submit (hash + register + send) .. every video READY/FAILED, one `sora worker`
    decode  probe + decode_clips of every file (the worker's windows, frames and size)
    encode  the decoded clips through the same runtime, video by video, as the worker does
    borders detect_content_box of every file (keyframes only): the step border-aware
            decoding added to every ingest, which decode-only leaves out

Target: e2e <= 1.1 x (decode + encode): the queue, the database and the index add <= 10%.
(The worker overlaps decoding with encoding, so e2e can come in under the sum.)

    python bench/bench_ingest.py [DIR] [--limit N] [--stack embedded|redis] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import machine_info, print_table, write_json  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "data" / "clips"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--limit", type=int, default=60, help="files to ingest (0: all)")
    ap.add_argument("--stack", choices=("embedded", "redis"), default="embedded")
    ap.add_argument("--variant", default=None, help="model variant (default: the default)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    from sora_encoder.files import find_videos

    files = find_videos([args.folder])
    if args.limit:
        # Spread the sample over the folder's sub-folders (their videos differ in length).
        step = max(len(files) // args.limit, 1)
        files = files[::step][: args.limit]
    home = Path(tempfile.mkdtemp(prefix="sora-bench-ingest-"))
    env = dict(os.environ, SORA_HOME=str(home), SORA_CACHE_DIR=str(home / "cache"))
    if args.variant:
        env["SORA_VARIANT"] = args.variant
    if args.stack == "redis":
        env["SORA_DATABASE_URL"] = os.environ.get(
            "SORA_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
        )
        env["SORA_BROKER_URL"] = os.environ.get("SORA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ.update(env)  # this process opens the same store and broker
    # One precision for the worker and the encode-only pass: resolve "auto" once, here.
    from sora_encoder import load_runtime

    env["SORA_PRECISION"] = os.environ["SORA_PRECISION"] = load_runtime(
        variant=args.variant
    ).precision

    try:
        e2e = run_end_to_end(files, env, home)
        decode_s, clips = run_decode_only(files)
        encode_s = run_encode_only(clips, args.variant)
        borders_s = run_borders_only(files)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    video_s = sum(e2e["durations"])
    bound = decode_s + encode_s
    rows = [
        {"stage": "end to end (1 worker)", "s": e2e["seconds"], "vps": video_s / e2e["seconds"]},
        {"stage": "decode only", "s": decode_s, "vps": video_s / decode_s},
        {"stage": "encode only", "s": encode_s, "vps": video_s / encode_s},
        {"stage": "decode + encode", "s": bound, "vps": video_s / bound},
        {"stage": "border detection only", "s": borders_s, "vps": video_s / borders_s},
    ]
    print(f"\n{len(files)} files, {video_s:.0f} s of video, stack {args.stack}, "
          f"{e2e['ready']} READY, {e2e['failed']} FAILED")  # fmt: skip
    print_table(rows, [("stage", "stage", "{}"), ("s", "seconds", "{:.2f}"),
                       ("vps", "video-s per s", "{:.1f}")])  # fmt: skip
    print(f"worker: {e2e['in_task_s']:.2f} s inside tasks (claim..complete), of which "
          f"{e2e['encode_s']:.2f} s encoding and {e2e['decode_wait_s']:.2f} s waiting for "
          f"ffmpeg; {e2e['seconds'] - e2e['in_task_s']:.2f} s between tasks")  # fmt: skip
    ratio = e2e["seconds"] / bound
    print(f"\nend to end / (decode + encode) = {ratio:.3f}  (target <= 1.1); border "
          f"detection is {borders_s / bound:.1%} of decode + encode")  # fmt: skip
    if args.json:
        write_json(args.json, {
            "machine": machine_info(), "stack": args.stack, "files": len(files),
            "video_seconds": video_s, "e2e_s": e2e["seconds"], "decode_s": decode_s,
            "encode_s": encode_s, "borders_s": borders_s,
            "ratio_e2e_over_decode_plus_encode": ratio,
            "ready": e2e["ready"], "failed": e2e["failed"],
        })  # fmt: skip
    return 0


def run_end_to_end(files: list[Path], env: dict, home: Path) -> dict:
    from sqlalchemy import delete, select

    from services.jobs import Dispatcher, make_celery, register_files
    from services.settings import Settings
    from services.store import Job, Video, VideoStatus, open_store
    from services.store.models import Base

    settings = Settings.from_env()
    store = open_store(settings.database_url)
    with store.Session.begin() as s:  # a bench database starts empty
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(delete(table))
    app = make_celery(settings)
    app.control.purge() if settings.broker_url.startswith("redis") else None
    dispatcher = Dispatcher(app, store)
    log = open(home / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "sora_cli.main", "worker", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    final = (VideoStatus.READY, VideoStatus.FAILED)

    def wait_all(ids: list[int]) -> list[Video]:
        while True:
            with store.ReadSession.begin() as s:
                rows = list(s.scalars(select(Video).where(Video.id.in_(ids))))
            if len(rows) == len(ids) and all(v.status in final for v in rows):
                return rows
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited: {(home / 'worker.log').read_text()[-2000:]}")
            time.sleep(0.05)

    try:
        # Warm-up: the worker loads its model and calibrates on its first job; not timed.
        from tests.media_factory import make_video

        warm = make_video(home / "warmup.mp4", duration_s=4.0)
        subs = register_files(store, [warm])
        dispatcher.send([s.job_id for s in subs])
        wait_all([s.video_id for s in subs])

        t0 = time.perf_counter()
        subs = register_files(store, files)
        dispatcher.send([s.job_id for s in subs if s.job_id is not None])
        rows = wait_all([s.video_id for s in subs])
        seconds = time.perf_counter() - t0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    by_id = {v.id: v for v in rows}
    with store.ReadSession.begin() as s:
        jobs = list(s.scalars(select(Job).where(Job.video_id.in_(list(by_id)))))
    in_task = sum((j.finished_at - j.started_at).total_seconds() for j in jobs if j.finished_at)
    return {
        "in_task_s": in_task,
        "decode_wait_s": sum(j.decode_s or 0 for j in jobs),
        "encode_s": sum(j.encode_s or 0 for j in jobs),
        "seconds": seconds,
        "durations": [by_id[s.video_id].duration_s or 0.0 for s in subs],
        "ready": sum(v.status is VideoStatus.READY for v in rows),
        "failed": sum(v.status is VideoStatus.FAILED for v in rows),
    }


def run_decode_only(files: list[Path]):
    from services.settings import Settings
    from sora_encoder import load_runtime
    from sora_encoder.media import MediaError, decode_clips, plan_windows, probe

    settings = Settings.from_env()
    spec = load_runtime(settings.checkpoint, variant=settings.variant).input_spec
    clips, t0 = [], time.perf_counter()
    for path in files:
        try:
            info = probe(path)
            windows = plan_windows(info.duration_s, settings.segment_s)
            clips.append(decode_clips(path, info, windows, frames_per_clip=spec.frames,
                                      size=spec.size))  # fmt: skip
        except MediaError:
            pass
    return time.perf_counter() - t0, clips


def run_borders_only(files: list[Path]) -> float:
    from sora_encoder.media import MediaError, detect_content_box, probe

    t0 = time.perf_counter()
    for path in files:
        try:
            detect_content_box(path, probe(path))
        except MediaError:
            pass
    return time.perf_counter() - t0


def run_encode_only(clips, variant: str | None) -> float:
    from services.settings import Settings
    from sora_encoder import load_runtime

    settings = Settings.from_env()
    runtime = load_runtime(settings.checkpoint, variant=variant)
    runtime.encode_clips(clips[0][:1])  # warm-up, as the worker's first job
    t0 = time.perf_counter()
    for c in clips:
        runtime.encode_clips(c)
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
