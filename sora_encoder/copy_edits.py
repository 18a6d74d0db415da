"""Random copy edits: the transformed uploads the copy threshold is calibrated on.

    random_edit(VideoInfo, rng) -> Edit     2-5 edits drawn at random, numbers from the probed
                                            geometry (sizes even, boxes inside the frame)
    apply_edit(src, dst, edit) -> Path      one ffmpeg run: src -> dst (H.264 MP4)

Why random chains and not the eval's families: the copy threshold is one number that must
mean the same for any upload, and uploads are edited in ways no list anticipates. A threshold
picked on untransformed clips only (a clip against the other sources) was far too strict for
real copies: an edit lowers a copy's score much more than it raises a non-copy's. So the
calibration also looks at what edited uploads score, copies and non-copies alike, with the
edits drawn from wide ranges and combined at random (the kinds any copy-detection benchmark
uses: crop, rescale, colour, grey, blur, noise, borders, captions, frame rate, trims, a
lossy re-encode) rather than the fixed parameter sets of `sora eval neardup`, which stays an
independent test of the result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sora_encoder.media import VideoInfo, ffmpeg_exe
from sora_encoder.media.process import run_ffmpeg

__all__ = ["Edit", "EditError", "apply_edit", "random_edit"]

TIMEOUT_S = 120.0  # budget of one edit, plus TIMEOUT_PER_S per second of output
TIMEOUT_PER_S = 4.0


class EditError(RuntimeError):
    """ffmpeg could not apply an edit."""


@dataclass(frozen=True)
class Edit:
    """A random chain made concrete for one input: what ffmpeg runs and what it means."""

    vf: str  # the -vf filter chain
    start_s: float  # the kept part of the input (a trim), in seconds
    duration_s: float
    crf: int  # libx264 quality of the re-encode (23 good .. 40 blocky)
    names: tuple[str, ...]  # the edits in order, for logs and reports


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def random_edit(info: VideoInfo, rng: random.Random, *, min_edits: int = 2) -> Edit:
    """A chain of `min_edits` or more edits for a video of `info`'s geometry. Each edit is
    drawn with its own chance, in the order an uploader would apply them (cut, reframe,
    grade, degrade, decorate); re-encoding is always last."""
    w, h = info.width, info.height
    filters: list[str] = []
    names: list[str] = []
    start, dur = 0.0, info.duration_s

    def trim() -> None:
        nonlocal start, dur
        keep = rng.uniform(0.4, 0.9) * info.duration_s
        start = rng.uniform(0.0, info.duration_s - keep)
        dur = keep

    def crop() -> None:
        nonlocal w, h
        area = rng.uniform(0.45, 0.9)
        aspect = rng.uniform(0.85, 1.15)
        cw = _even(min(w, w * (area * aspect) ** 0.5))
        ch = _even(min(h, h * (area / aspect) ** 0.5))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        filters.append(f"crop={cw}:{ch}:{x}:{y}")
        w, h = cw, ch

    def rescale() -> None:
        nonlocal w, h
        f = rng.uniform(0.3, 0.8)
        w, h = _even(w * f), _even(h * f)
        filters.append(f"scale={w}:{h}")

    def flip() -> None:
        filters.append("hflip")

    def grade() -> None:
        b, c, s = rng.uniform(-0.25, 0.25), rng.uniform(0.6, 1.6), rng.uniform(0.3, 1.8)
        filters.append(f"eq=brightness={b:.3f}:contrast={c:.3f}:saturation={s:.3f}")

    def hue() -> None:
        filters.append(f"hue=h={rng.uniform(-45, 45):.1f}")

    def grey() -> None:
        filters.append("format=gray,format=yuv420p")

    def blur() -> None:
        filters.append(f"gblur=sigma={rng.uniform(0.8, 4.0) * min(w, h) / 360:.2f}")

    def noise() -> None:
        filters.append(f"noise=alls={rng.randint(8, 30)}:allf=t")

    def frame_rate() -> None:
        filters.append(f"fps={rng.choice([8, 10, 12, 15, 20, 24])}")

    def border() -> None:
        nonlocal w, h
        colour = rng.choice(["black", "black", "white", "0x202020", "0x3050a0", "0x808080"])
        side = rng.choice(["letterbox", "pillarbox", "frame"])
        px = _even(w * rng.uniform(0.05, 0.25)) if side != "letterbox" else 0
        py = _even(h * rng.uniform(0.05, 0.25)) if side != "pillarbox" else 0
        filters.append(f"pad={w + 2 * px}:{h + 2 * py}:{px}:{py}:color={colour}")
        w, h = w + 2 * px, h + 2 * py

    def caption() -> None:
        bw, bh = _even(w * rng.uniform(0.3, 0.9)), _even(h * rng.uniform(0.06, 0.2))
        x, y = rng.randint(0, w - bw), rng.choice([0, h - bh, rng.randint(0, h - bh)])
        colour = rng.choice(["black", "white", "yellow", "0x202020"])
        filters.append(f"drawbox=x={x}:y={y}:w={bw}:h={bh}:color={colour}@0.85:t=fill")

    menu = [  # (name, chance, edit) in the order they are applied
        ("trim", 0.3, trim), ("crop", 0.35, crop), ("rescale", 0.4, rescale),
        ("flip", 0.2, flip), ("grade", 0.4, grade), ("hue", 0.2, hue), ("grey", 0.25, grey),
        ("blur", 0.3, blur), ("noise", 0.2, noise), ("fps", 0.25, frame_rate),
        ("border", 0.3, border), ("caption", 0.3, caption),
    ]  # fmt: skip
    while True:
        picked = [(n, f) for n, p, f in menu if rng.random() < p]
        if len(picked) >= min_edits:
            break
    for name, edit in picked:
        edit()
        names.append(name)
    filters.append(f"scale={_even(w)}:{_even(h)},setsar=1,format=yuv420p")
    return Edit(",".join(filters), start, dur, rng.randint(23, 40), tuple(names))


def apply_edit(src: str | Path, dst: str | Path, edit: Edit) -> Path:
    """Write `src` edited by `edit` to `dst` (H.264 in MP4, no audio); atomic."""
    dst = Path(dst)
    tmp = dst.with_name(dst.stem + ".part.mp4")
    args = [
        ffmpeg_exe(), "-v", "error", "-nostdin", "-y",
        "-ss", f"{edit.start_s:.3f}", "-t", f"{edit.duration_s:.3f}", "-i", str(src),
        "-vf", edit.vf, "-an", "-c:v", "libx264", "-preset", "veryfast",
        "-crf", str(edit.crf), str(tmp),
    ]  # fmt: skip
    done = run_ffmpeg(
        args, budget_s=TIMEOUT_S + TIMEOUT_PER_S * edit.duration_s, what=f"edit {src}"
    )
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise EditError(f"ffmpeg could not edit {src} ({'+'.join(edit.names)}): "
                        f"{done.stderr.strip()[-400:]}")  # fmt: skip
    tmp.replace(dst)
    return dst
