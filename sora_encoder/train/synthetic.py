"""Synthetic training videos made by ffmpeg's lavfi sources: content no camera library has
(fractal zooms, cellular automata, test patterns with moving objects), in several colours,
speeds and sizes. `make train-default` adds them to the real clips; they cost nothing to
make and carry no licence.

    python -m sora_encoder.train.synthetic runs/synthetic --count 28 --seed 0   # prints paths
    sora train encoder --manifest clips/MANIFEST.csv --also runs/synthetic ...
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from sora_encoder.media.lavfi import write_lavfi_video

# A lavfi graph per kind; {s} size, {r} rate, {d} duration, {x} a per-video random number.
_KINDS = (
    "testsrc2=size={s}:rate={r}:duration={d}",
    "mandelbrot=size={s}:rate={r}:start_scale={x3}:end_scale={x4},trim=duration={d}",
    "life=size={s}:rate={r}:mold=10:ratio={x1}:life_color=#{c1}:death_color=#{c2},trim=duration={d}",
    "cellauto=size={s}:rate={r}:rule={rule},trim=duration={d}",
    "smptehdbars=size={s}:rate={r}:duration={d},"
    "drawbox=x='mod(t*{speed},iw)':y=ih/3:w=iw/8:h=ih/8:color=#{c1}:t=fill",
    "rgbtestsrc=size={s}:rate={r}:duration={d},hue=h=t*{speed}",
    "color=c=#{c1}:size={s}:rate={r}:duration={d},"
    "drawbox=x='iw/2+iw/3*sin(t*{x2})':y='ih/2+ih/3*cos(t*{x2})':w=iw/6:h=ih/6:color=#{c2}:t=fill,"
    "noise=alls=20:allf=t",
)


def _params(rng: random.Random, duration_s: float) -> dict[str, object]:
    w = rng.choice((160, 192, 240))
    return {
        "s": f"{w}x{w * 3 // 4}",
        "r": rng.choice((15, 25, 30)),
        "d": duration_s,
        "x1": round(rng.uniform(0.05, 0.5), 3),
        "x2": round(rng.uniform(0.5, 3.0), 3),
        "x3": round(rng.uniform(1.0, 3.0), 3),
        "x4": round(rng.uniform(0.01, 0.5), 4),
        "c1": f"{rng.randrange(1 << 24):06x}",
        "c2": f"{rng.randrange(1 << 24):06x}",
        "rule": rng.choice((18, 30, 60, 90, 110, 150)),
        "speed": rng.randrange(20, 200),
    }


def make_synthetic_videos(
    out_dir: str | Path, count: int, *, seed: int = 0, duration_s: float = 8.0
) -> list[Path]:
    """Write `count` videos (H.264 in MP4) into out_dir, cycling through the kinds with
    parameters drawn from `seed`; existing files are kept (same seed, same files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        graph = _KINDS[i % len(_KINDS)].format(**_params(rng, duration_s))
        path = out / f"synthetic-{i:03d}.mp4"
        paths.append(path)
        if path.is_file():
            continue
        write_lavfi_video(graph, path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sora_encoder.train.synthetic OUT_DIR [--count N] [--seed S]`: write the
    videos (keeping those already there) and print their paths, one a line."""
    p = argparse.ArgumentParser(
        prog="python -m sora_encoder.train.synthetic",
        description="Synthetic training videos from ffmpeg's lavfi sources (see "
        "docs/TRAINING.md); use them with `sora train encoder --also OUT_DIR`.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write synthetic-NNN.mp4 into")
    p.add_argument("--count", type=int, default=len(_KINDS), help="how many videos (7)")
    p.add_argument("--seed", type=int, default=0, help="seed of their parameters (0)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds each (8)")
    args = p.parse_args(argv)
    if args.count < 1 or not args.duration > 0:
        p.error("--count must be >= 1 and --duration > 0")
    for path in make_synthetic_videos(
        args.out_dir, args.count, seed=args.seed, duration_s=args.duration
    ):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
