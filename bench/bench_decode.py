"""Benchmark: our decode path against bare ffmpeg running the same filters, in one run.

    ours:  probe(path) + plan_windows + decode_clips(path, ...)   (Python, pipe to numpy)
    bare:  ffmpeg <same input options> -filter_complex <same filters> -f null -

Both are timed on the same files in the same run, alternating which goes first for each
file and each repeat, so that drift in machine load hits both alike. The figure of merit is
video-seconds decoded per wall-clock second, and the ratio ours_time / bare_time (target:
<= 1.3). `ours` is also shown split into its probe and its decode: the probe is a second
ffmpeg start (about 10 ms of process start-up for the static wheel binary), a fixed cost
per file that weighs most on short clips. With --compare-select, bare ffmpeg is also timed
with two other ways of picking frames (a `select` expression, a plain `fps` filter), to show
what the exact warp costs.

    python bench/bench_decode.py [FOLDER] [--limit N] [--repeats R] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sora_encoder.files import find_videos
from sora_encoder.media import decode_clips, ffmpeg_exe, ffmpeg_version, plan_windows, probe
from sora_encoder.media.decode import decode_command, default_threads
from sora_encoder.media.limits import DEFAULT_LIMITS
from sora_encoder.media.sampling import scaled_size

log = logging.getLogger("bench_decode")


def spread_videos(folder: Path, limit: int | None) -> list[Path]:
    """Video files under `folder` (`find_videos`); with `limit`, evenly spread over the
    sorted list so that every sub-folder (class) is represented."""
    files = find_videos([folder])
    if limit is not None and limit < len(files):
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def bare_command(ours: list[str], filters: str | None = None) -> list[str]:
    """Our decode command with the rawvideo pipe replaced by the null muxer, optionally
    with another filter chain (`[in]...[out]` labels are kept)."""
    args = list(ours)
    i = args.index("rawvideo")
    args[i] = "null"
    args[-1] = "-"
    if filters is not None:
        j = args.index("-filter_complex")
        head, _, _ = args[j + 1].partition("]")
        args[j + 1] = f"{head}]{filters}[s0]"
        args[args.index("-map") + 1] = "[s0]"
    return args


def run_bare(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=600)
    return time.perf_counter() - t0


def run_ours(
    path: Path, segment_s: float, frames: int, size: int, threads: int
) -> tuple[float, float]:
    """(probe seconds, decode seconds) of one file."""
    t0 = time.perf_counter()
    info = probe(path)
    windows = plan_windows(info.duration_s, segment_s)
    t1 = time.perf_counter()
    clips = decode_clips(path, info, windows, frames_per_clip=frames, size=size, threads=threads)
    t2 = time.perf_counter()
    assert clips.shape == (len(windows), frames, size, size, 3), clips.shape
    return t1 - t0, t2 - t1


def alternative_filters(windows: list, frames: int, width: int, height: int, size: int) -> dict:
    """Other ways to pick frames, for --compare-select (not exact, see sampling.py)."""
    seg = windows[0].duration_s
    step = seg / frames
    tail = f"scale={width}:{height}:flags=bilinear,format=rgb24,crop={size}:{size}"
    # First frame at or after each sample time of the full-window grid: a frame is kept
    # when a grid point lies in (prev_t, t]. It cannot repeat a frame.
    o = step / 2
    select = (
        f"select='isnan(prev_t)*gte(t,{o})+gt(floor((t-{o})/{step}),floor((prev_t-{o})/{step}))'"
    )
    return {
        "bare_select": f"{select},{tail}",
        "bare_fps": f"fps={frames / seg}:start_time=0,{tail}",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder", nargs="?", default="/work/shared/data/clips", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="at most N files (evenly spread)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the files (default 3)")
    ap.add_argument("--segment", type=float, default=4.0, help="window length in seconds")
    ap.add_argument("--frames", type=int, default=16, help="frames per clip")
    ap.add_argument("--size", type=int, default=112, help="clip side in pixels")
    ap.add_argument("--threads", type=int, default=None, help="decoder threads (default: ours)")
    ap.add_argument("--compare-select", action="store_true", help="also time select/fps filters")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    opts = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    files = spread_videos(opts.folder, opts.limit)
    if not files:
        print(f"no videos under {opts.folder}", file=sys.stderr)
        return 1
    threads = opts.threads if opts.threads is not None else default_threads()
    exe = ffmpeg_exe()

    plans = []
    for path in files:  # probe once up front to build the bare commands (not timed)
        info = probe(path)
        windows = plan_windows(info.duration_s, opts.segment)
        ours = decode_command(
            exe,
            path,
            info,
            windows,
            frames_per_clip=opts.frames,
            size=opts.size,
            limits=DEFAULT_LIMITS,
            threads=threads,
        )
        variants = {"bare": bare_command(ours)}
        if opts.compare_select:
            w, h = scaled_size(info.display_aspect, opts.size)
            for name, chain in alternative_filters(windows, opts.frames, w, h, opts.size).items():
                variants[name] = bare_command(ours, chain)
        plans.append((path, info, variants))

    runners = ["ours", *plans[0][2].keys()]
    # "ours" is also split into its two ffmpeg runs: the probe and the decode.
    names = ["ours", "ours_probe", "ours_decode", *runners[1:]]
    times: dict[str, list[list[float]]] = {n: [[] for _ in files] for n in names}
    for rep in range(opts.repeats):
        for i, (path, _info, variants) in enumerate(plans):
            order = runners if (i + rep) % 2 == 0 else runners[::-1]  # alternate who goes first
            for name in order:
                if name == "ours":
                    probe_s, decode_s = run_ours(
                        path, opts.segment, opts.frames, opts.size, threads
                    )
                    times["ours_probe"][i].append(probe_s)
                    times["ours_decode"][i].append(decode_s)
                    times["ours"][i].append(probe_s + decode_s)
                else:
                    times[name][i].append(run_bare(variants[name]))

    video_s = sum(info.duration_s for _, info, _ in plans)
    # Per file, the median over repeats; the totals add those medians.
    totals = {n: sum(statistics.median(ts) for ts in times[n]) for n in names}
    results = {
        n: {
            "seconds": totals[n],
            "video_s_per_s": video_s / totals[n],
            "ratio": totals[n] / totals["bare"],
        }
        for n in names
    }
    print(
        f"{len(files)} files, {video_s:.1f} s of video, {opts.repeats} repeats, "
        f"{opts.frames} frames x {opts.size} px per {opts.segment:g}-s window, threads={threads}"
    )
    print(f"ffmpeg {'.'.join(map(str, ffmpeg_version(exe)))} at {exe}; {os.cpu_count()} CPUs")
    print(f"{'path':<14}{'seconds':>10}{'video-s/s':>12}{'vs bare':>10}")
    for n in names:
        r = results[n]
        print(f"{n:<14}{r['seconds']:>10.3f}{r['video_s_per_s']:>12.1f}{r['ratio']:>10.3f}")

    # The probe's fixed cost per file weighs by clip length: show the ratio by length too.
    by_length = {}
    for lo, hi in ((0.0, 5.0), (5.0, 15.0), (15.0, float("inf"))):
        idx = [i for i, (_, info, _) in enumerate(plans) if lo <= info.duration_s < hi]
        if idx:
            ours = sum(statistics.median(times["ours"][i]) for i in idx)
            bare = sum(statistics.median(times["bare"][i]) for i in idx)
            label = f"{lo:g}-{hi:g} s" if hi != float("inf") else f">= {lo:g} s"
            by_length[label] = {"files": len(idx), "ratio": ours / bare}
            print(f"clips {label:<9} {len(idx):>4} files   ours/bare {ours / bare:.3f}")

    if opts.json:
        payload = {
            "benchmark": "decode",
            "folder": str(opts.folder),
            "files": len(files),
            "video_seconds": video_s,
            "repeats": opts.repeats,
            "params": {"segment_s": opts.segment, "frames": opts.frames, "size": opts.size},
            "threads": threads,
            "ffmpeg": {"exe": exe, "version": list(ffmpeg_version(exe))},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "results": results,
            "ratio_ours_over_bare": results["ours"]["ratio"],
            "ratio_by_clip_length": by_length,
            "per_file": [
                {"path": str(p), "duration_s": info.duration_s, **{n: times[n][i] for n in names}}
                for i, (p, info, _) in enumerate(plans)
            ],
        }
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {opts.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
