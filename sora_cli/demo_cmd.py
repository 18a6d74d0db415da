"""`sora demo`: the embedded service end to end, showing each step.

1. sample videos: synthetic ones made with ffmpeg (or --videos DIR)
2. `sora serve --embedded` in a child process (API + worker, SQLite, no servers)
3. ingest the videos through the API (uploads), waiting for the worker
4. a query clip: the middle of one video, cropped, scaled and re-encoded
5. search by that clip, and print the hits with the matched time ranges
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the embedded service on sample videos and search them")
    p.add_argument("--videos", help="a folder of your videos (default: synthetic samples)")
    p.add_argument("--data-dir", default=".sora-demo/data", help="the demo service's data")
    p.add_argument("--limit", type=int, default=20, help="at most this many videos")
    p.set_defaults(func=run)


def make_query_clip(source: Path, out: Path, duration_s: float) -> tuple[float, float]:
    """A transformed copy of the middle of `source` -> its (start, end) in the source."""
    import ffmpeg

    from sora_encoder.media import ffmpeg_exe

    length = min(8.0, max(duration_s / 2, 1.0))
    start = max(0.0, (duration_s - length) / 2)
    cmd = (
        ffmpeg.input(str(source), ss=start, t=length)
        .output(
            str(out), vf="crop=iw*0.9:ih*0.9,scale=240:-2", vcodec="libx264", crf=32, an=None
        )  # fmt: skip
        .global_args("-hide_banner", "-loglevel", "error", "-nostdin")
        .compile(cmd=ffmpeg_exe(), overwrite_output=True)
    )
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return start, start + length


def run(args: argparse.Namespace) -> int:
    from services.api.client import SoraClient
    from sora_encoder.files import find_videos
    from sora_encoder.media.samples import make_samples

    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    if args.videos:
        videos = find_videos([args.videos])[: args.limit]
        print(f"== 1. {len(videos)} video(s) from {args.videos}")
    else:
        videos = make_samples(data.parent / "videos")
        print(f"== 1. {len(videos)} synthetic sample videos written with ffmpeg in "
              f"{videos[0].parent}")  # fmt: skip
    if not videos:
        print("sora demo: no videos found", file=sys.stderr)
        return 2

    print(f"== 2. starting the embedded service (data in {data})")
    server = subprocess.Popen(
        [sys.executable, "-m", "sora_cli.main", "serve", "--embedded", "--port", "0",
         "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=open(data / "server.log", "ab"), text=True,  # noqa: SIM115
    )  # fmt: skip
    print(f"   its log: {data / 'server.log'}; the worker's: {data / 'worker.log'}")
    try:
        address = None
        deadline = time.monotonic() + 120
        while address is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                print("sora demo: the service did not start", file=sys.stderr)
                return 1
            m = re.search(r"serving on (\S+:\d+)", line)
            address = m.group(1) if m else None
        print(f"   serving on {address}")
        with SoraClient(address) as client:
            client.wait_until_serving(120)
            print(f"== 3. ingesting {len(videos)} video(s) through the API")
            jobs = {}
            for path in videos:
                res = client.upload(path, collection="demo")
                jobs[res.job_id] = path.name
                print(f"   {path.name}: video {res.video_id}" +
                      (f", job {res.job_id}" if res.job_id else " (already known)"))  # fmt: skip
            for job_id, name in jobs.items():
                if job_id:
                    job = list(client.watch_job(job_id))[-1]  # streams until it ends
                    print(f"   {name}: {job.segments_done} segment(s), "
                          f"{'READY' if not job.error else 'FAILED: ' + job.error}")  # fmt: skip
            # The query: the middle of the longest video, transformed.
            longest = max(client.iter_videos(status="READY"), key=lambda v: v.duration_s)
            source = next(p for p in videos if p.stem == longest.title)
            query = data / "query-clip.mp4"
            start, end = make_query_clip(source, query, longest.duration_s)
            print(f"== 4. query: {source.name} {start:.1f}-{end:.1f} s, cropped 90%, scaled, "
                  f"re-encoded ({query})")  # fmt: skip
            time.sleep(2.0)  # the index keeper syncs every second
            res = client.search_by_clip(query, top_k=5)
            print(f"== 5. search by that clip: {len(res.hits)} hit(s), model {res.model_version}")
            if res.HasField("copy_threshold"):
                print(f"   (COPY: copy score >= {res.copy_threshold:.3f}, the model's threshold)")
            for n, h in enumerate(res.hits, 1):
                match = (
                    (
                        f"  query {h.query.start_s:.1f}-{h.query.end_s:.1f} s = "
                        f"{h.target.start_s:.1f}-{h.target.end_s:.1f} s"
                    )
                    if h.aligned
                    else ""
                )
                verdict = (
                    f"{'COPY' if h.is_copy else 'no':>4} {h.copy_score:+.3f}  "
                    if h.HasField("copy_score")
                    else ""
                )
                print(f"   {n}. {h.score:.4f}  {verdict}{h.video.title}{match}")  # fmt: skip
        print("== done; try: sora serve --embedded, then sora ingest / sora search (see README)")
        return 0
    finally:
        server.terminate()
        server.wait(60)
