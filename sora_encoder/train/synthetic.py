"""Synthetic training videos made by ffmpeg's lavfi sources: content no camera library has
(fractal zooms, cellular automata, test patterns with moving objects), in several colours,
speeds and sizes. `make train-default` adds them to the real clips; they cost nothing to
make and carry no licence."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from sora_encoder.media import ffmpeg_exe

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
        tmp = path.with_name(path.stem + ".tmp.mp4")
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", graph]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(tmp)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        tmp.replace(path)
    return paths
