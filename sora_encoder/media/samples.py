"""Small demo videos made by ffmpeg's synthetic (lavfi) sources, so a fresh install can
show the service working without any footage of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sora_encoder.media.lavfi import write_lavfi_video


@dataclass(frozen=True)
class SampleSpec:
    name: str
    source: str  # a lavfi graph; `{d}` is the duration, `{s}` the size
    duration_s: float


# Distinct looks and motions: moving test pattern, fractal zoom, cellular automata,
# colour bars with a moving box, and noise; durations span one to several segments.
SAMPLES = (
    SampleSpec("testsrc2", "testsrc2=size={s}:rate=25:duration={d}", 9.0),
    SampleSpec("mandelbrot", "mandelbrot=size={s}:rate=25,trim=duration={d}", 6.0),
    SampleSpec(
        "life", "life=size={s}:rate=25:mold=10:ratio=0.1:death_color=#202020,trim=duration={d}", 5.0
    ),
    SampleSpec(
        "smptebars",
        "smptebars=size={s}:rate=25:duration={d},"
        "drawbox=x='mod(t*80,iw)':y=40:w=40:h=40:color=red@1:t=fill",
        4.0,
    ),
    SampleSpec("cellauto", "cellauto=size={s}:rate=25:rule=110,trim=duration={d}", 3.0),
    SampleSpec("noise", "color=c=gray:size={s}:rate=25:duration={d},noise=alls=60:allf=t", 2.0),
)


def make_samples(
    folder: str | Path, *, size: str = "320x240", timeout_s: float = 60.0
) -> list[Path]:
    """Write the sample videos (H.264 MP4) into `folder`; existing ones are kept."""
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in SAMPLES:
        path = out_dir / f"{spec.name}.mp4"
        if not path.exists():
            graph = spec.source.format(d=spec.duration_s, s=size)
            write_lavfi_video(graph, path, duration_s=spec.duration_s, timeout_s=timeout_s)
        paths.append(path)
    return paths
