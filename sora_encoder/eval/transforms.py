"""Near-duplicate transformations: named families of ffmpeg edits applied to real files.

    Family = [Step, ...]                         e.g. crop, then brightness, then low bitrate
    Step.apply(Geometry, label_in, label_out) -> (filter graph fragment, Geometry after it)
    plan(family, VideoInfo) -> Plan              the whole -filter_complex, encoder options,
                                                 and the expected output size and duration
    apply_family(family, src, dst) -> Plan       one ffmpeg run: src -> dst (H.264 MP4)

Every step computes its numbers (crop sizes, trim points) in Python from the probed geometry,
so the expected output size and duration are known without running ffmpeg, and the tests
check them against the written file. Sizes stay even (4:2:0 chroma). Every output is
re-encoded with libx264 (CRF 23 unless a step asks for a low bitrate), as a copy found in
the wild would be.

Text overlays use `drawtext` with a TrueType font: $SORA_EVAL_FONT, else DejaVu Sans or
Liberation Sans in the usual places. Without a font (or without drawtext in the ffmpeg
build) the `text` family draws solid caption blocks with `drawbox` instead, and says so in
its `Plan.note`: a caption-shaped occlusion, not glyphs.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sora_encoder.media import VideoInfo, ffmpeg_exe, probe
from sora_encoder.media.process import run_ffmpeg

__all__ = [
    "FAMILIES",
    "Family",
    "Geometry",
    "Plan",
    "Step",
    "TransformError",
    "apply_family",
    "families_from",
    "family_note",
    "family_names",
    "find_font",
    "get_family",
    "plan",
    "transform_command",
]

log = logging.getLogger(__name__)

FONT_ENV = "SORA_EVAL_FONT"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
DEFAULT_CRF = 23  # libx264's default quality: the re-encode every family includes
LOW_BITRATE = "64k"  # blocky and smeared at 360p (the clips' own rate is ~500-1000k)
TIMEOUT_S = 120.0  # base budget of one transformation; plus TIMEOUT_PER_S per second of video
TIMEOUT_PER_S = 4.0


class TransformError(RuntimeError):
    """ffmpeg could not apply a transformation (a bug in a family, or a broken ffmpeg)."""


@dataclass(frozen=True)
class Geometry:
    """What a step needs to know about its input: display size, duration, frame rate."""

    width: int
    height: int
    duration_s: float
    fps: float


@dataclass(frozen=True)
class Step:
    """One edit. `graph(g, i, o)` returns a -filter_complex fragment reading the stream
    labelled `i` and writing `o` (it may define its own labels, prefixed with `o`), and the
    geometry of its output. `encoder` replaces the default rate control (e.g. a low bitrate).
    """

    name: str
    graph: Callable[[Geometry, str, str], tuple[str, Geometry]]
    encoder: tuple[str, ...] = ()
    note: str = ""
    # A cut: the part of its input's time it keeps, (start, length) as fractions.
    keeps: tuple[float, float] | None = None


@dataclass(frozen=True)
class Family:
    """A named near-duplicate transformation: one step, or a combination of steps."""

    name: str
    description: str
    steps: tuple[Step, ...]

    def source_span(self, duration_s: float) -> tuple[float, float] | None:
        """Seconds of the source a copy of this family shows, for a family that cuts
        (the truth its matched range is measured against); None for one that does not."""
        cuts = [s.keeps for s in self.steps if s.keeps is not None]
        if not cuts:
            return None
        start, length = 0.0, duration_s
        for frac_start, frac_len in cuts:
            start, length = start + frac_start * length, frac_len * length
        return start, start + length


@dataclass(frozen=True)
class Plan:
    """A family made concrete for one input file."""

    family: str
    filter_complex: str  # reads [0:v], writes [out]
    encoder: tuple[str, ...]  # libx264 options after -c:v libx264
    width: int  # expected output size and duration
    height: int
    duration_s: float
    fps: float
    note: str = ""  # e.g. the drawbox fallback of the text family


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _chain(filters: str) -> Callable[[Geometry, str, str], tuple[str, Geometry]]:
    """A step that keeps the geometry: `[i] filters [o]`."""
    return lambda g, i, o: (f"[{i}]{filters}[{o}]", g)


# -- the steps ---------------------------------------------------------------------------


def _scale(factor: float) -> Step:
    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        w, h = _even(g.width * factor), _even(g.height * factor)
        return f"[{i}]scale={w}:{h}:flags=bicubic,setsar=1[{o}]", replace(g, width=w, height=h)

    return Step(f"scale {factor:g}x", graph)


def _crop(keep: float) -> Step:
    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        w, h = _even(g.width * keep), _even(g.height * keep)
        x, y = (g.width - w) // 2, (g.height - h) // 2
        return f"[{i}]crop={w}:{h}:{x}:{y}[{o}]", replace(g, width=w, height=h)

    return Step(f"centre crop {keep:.0%}", graph)


def _trim(start: float, keep: float) -> Step:
    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        t0, dur = g.duration_s * start, g.duration_s * keep
        chain = f"trim=start={t0:.3f}:duration={dur:.3f},setpts=PTS-STARTPTS"
        return f"[{i}]{chain}[{o}]", replace(g, duration_s=dur)

    return Step(f"trim to {keep:.0%} from {start:.0%}", graph, keeps=(start, keep))


def _speed(factor: float) -> Step:
    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        # setpts compresses time; fps then drops frames back to the source's rate.
        chain = f"setpts=PTS/{factor:g},fps={g.fps:g}"
        return f"[{i}]{chain}[{o}]", replace(g, duration_s=g.duration_s / factor)

    return Step(f"speed {factor:g}x", graph)


def _frame_rate(fps: float) -> Step:
    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        return f"[{i}]fps={fps:g}[{o}]", replace(g, fps=fps)

    return Step(f"{fps:g} fps", graph)


def _pad(*, frac_x: float, frac_y: float, color: str, name: str) -> Step:
    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        w, h = _even(g.width * (1 + 2 * frac_x)), _even(g.height * (1 + 2 * frac_y))
        x, y = (w - g.width) // 2, (h - g.height) // 2
        return f"[{i}]pad={w}:{h}:{x}:{y}:color={color}[{o}]", replace(g, width=w, height=h)

    return Step(name, graph)


def _picture_in_picture(scale: float) -> Step:
    """The video shrunk into the lower right of a synthetic moving background (cellauto)."""

    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        w, h = _even(g.width * scale), _even(g.height * scale)
        x, y = _even(g.width * 0.92 - w), _even(g.height * 0.92 - h)
        bg = (
            f"cellauto=size={g.width}x{g.height}:rate={g.fps:g}:rule=30:seed=7,"
            f"trim=duration={g.duration_s:.3f},format=yuv420p"
        )
        fragment = (
            f"{bg}[{o}bg];[{i}]scale={w}:{h},setsar=1[{o}fg];"
            f"[{o}bg][{o}fg]overlay={x}:{y}:shortest=1[{o}]"
        )
        return fragment, g

    return Step(f"picture in picture {scale:.0%}", graph)


@functools.lru_cache(maxsize=1)
def find_font() -> str | None:
    """A TrueType font file for drawtext: $SORA_EVAL_FONT, else a common system font."""
    explicit = os.environ.get(FONT_ENV)
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    return next((p for p in FONT_CANDIDATES if os.path.isfile(p)), None)


@functools.lru_cache(maxsize=8)
def _has_filter(name: str, exe: str) -> bool:
    """Whether the ffmpeg binary `exe` has the filter `name` (drawtext needs libfreetype)."""
    run = run_ffmpeg([exe, "-hide_banner", "-filters"], budget_s=30.0, what="filters")
    listing = run.stdout.decode("utf-8", "replace")
    return any(line.split()[1:2] == [name] for line in listing.splitlines())


def _escape_path(path: str) -> str:
    # filter-graph level then option level: backslash, colon and quote are special
    return path.replace("\\", "/").replace(":", r"\\:").replace("'", r"\\'")


def _text() -> Step:
    def graph(g: Geometry, i: str, o: str) -> tuple[str, Geometry]:
        font = find_font()
        size = max(8, g.height // 10)
        if font and _has_filter("drawtext", ffmpeg_exe()):
            ff = f"fontfile={_escape_path(font)}"
            caption = (
                f"drawtext={ff}:text=SORA EVAL COPY:fontsize={size}:fontcolor=white:"
                f"box=1:boxcolor=black@0.55:boxborderw={max(2, size // 4)}:"
                f"x=(w-text_w)/2:y=h-text_h-{size}"
            )
            small = max(8, size * 2 // 3)
            logo = f"drawtext={ff}:text=@sora:fontsize={small}:fontcolor=yellow:x=8:y=8"
            return f"[{i}]{caption},{logo}[{o}]", g
        # No font: blocks where a caption and a channel logo would be.
        cw, ch = int(g.width * 0.7), size + size // 2
        x, y = (g.width - cw) // 2, g.height - ch - size
        cap = f"drawbox=x={x}:y={y}:w={cw}:h={ch}:color=white@0.8:t=fill"
        logo = f"drawbox=x=8:y=8:w={max(4, g.width // 6)}:h={max(4, size)}:color=yellow@0.9:t=fill"
        return f"[{i}]{cap},{logo}[{o}]", g

    return Step("text overlay", graph)


def family_note(family: Family) -> str:
    """A caveat about how `family` is realised on this machine ("" when none)."""
    return _text_note() if TEXT in family.steps else ""


def _text_note() -> str:
    if find_font() and _has_filter("drawtext", ffmpeg_exe()):
        return ""
    return "no TrueType font or no drawtext filter: caption drawn as drawbox blocks"


LOW_BITRATE_STEP = Step(
    f"re-encode at {LOW_BITRATE}",
    _chain("null"),
    encoder=("-b:v", LOW_BITRATE, "-maxrate", LOW_BITRATE, "-bufsize", "128k"),
)
SCALE = _scale(0.5)
CROP = _crop(0.75)
BRIGHTNESS_CONTRAST = Step(
    "brightness +0.12, contrast 1.3", _chain("eq=brightness=0.12:contrast=1.3")
)
HFLIP = Step("horizontal flip", _chain("hflip"))
TRIM = _trim(0.2, 0.6)
SPEED = _speed(1.25)
FRAME_RATE = _frame_rate(10)
GREY = Step("greyscale", _chain("hue=s=0"))
TEXT = _text()
BORDER = _pad(frac_x=0.1, frac_y=0.1, color="0x3366aa", name="coloured border 10%")
LETTERBOX = _pad(frac_x=0.0, frac_y=0.2, color="black", name="letterbox bars 20%")
PIP = _picture_in_picture(0.5)


def _family(name: str, description: str, *steps: Step) -> Family:
    return Family(name, description, tuple(steps))


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        _family("reencode", f"H.264 at {LOW_BITRATE}/s", LOW_BITRATE_STEP),
        _family("scale", "half the width and height", SCALE),
        _family("crop", "centre crop keeping 75% of each side", CROP),
        _family("brightness", "brightness +0.12, contrast x1.3", BRIGHTNESS_CONTRAST),
        _family("flip", "mirrored left-right", HFLIP),
        _family("trim", "the middle 60% of the video", TRIM),
        _family("speed", "played 1.25x faster", SPEED),
        _family("fps", "frame rate changed to 10 fps", FRAME_RATE),
        _family("grey", "greyscale", GREY),
        _family("text", "caption and logo overlaid", TEXT),
        _family("border", "10% coloured border on every side", BORDER),
        _family("letterbox", "black bars above and below, 20% each", LETTERBOX),
        _family("pip", "shrunk to 50% inside a moving synthetic background", PIP),
        _family("crop+bright+reencode", "crop 75%, brightness/contrast, 64k", CROP,
                BRIGHTNESS_CONTRAST, LOW_BITRATE_STEP),
        _family("flip+scale+text", "mirrored, half size, caption", HFLIP, SCALE, TEXT),
        _family("trim+speed+letterbox", "middle 60%, 1.25x, letterboxed", TRIM, SPEED,
                LETTERBOX),
        _family("grey+fps+border", "greyscale, 10 fps, border", GREY, FRAME_RATE, BORDER),
    )
}  # fmt: skip


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown transformation family {name!r}; known: {family_names()}"
        ) from None


def plan(family: Family, info: VideoInfo) -> Plan:
    """The ffmpeg graph and expected output of `family` applied to the probed video `info`."""
    g = Geometry(
        width=info.width,
        height=info.height,
        duration_s=info.duration_s,
        fps=info.fps if info.fps > 0 else 25.0,
    )
    fragments, label = [], "0:v"
    encoder: tuple[str, ...] = ("-crf", str(DEFAULT_CRF))
    notes = []
    for k, step in enumerate(family.steps):
        out = "out" if k == len(family.steps) - 1 else f"s{k}"
        fragment, g = step.graph(g, label, out)
        fragments.append(fragment)
        label = out
        if step.encoder:
            encoder = step.encoder
        if step is TEXT and (note := _text_note()):
            notes.append(note)
    return Plan(
        family=family.name,
        filter_complex=";".join(fragments),
        encoder=encoder,
        width=g.width,
        height=g.height,
        duration_s=g.duration_s,
        fps=g.fps,
        note="; ".join(notes),
    )


def transform_command(
    exe: str, src: str | os.PathLike[str], dst: str | os.PathLike[str], p: Plan, *, threads: int = 2
) -> list[str]:
    """The ffmpeg command line that writes `dst` from `src` according to `p`."""
    return [
        exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
        "-threads", str(threads), "-i", "file:" + os.path.abspath(src),
        "-filter_complex", p.filter_complex, "-map", "[out]", "-an", "-sn", "-dn",
        "-c:v", "libx264", "-preset", "veryfast", *p.encoder, "-pix_fmt", "yuv420p",
        "-threads", str(threads), "-movflags", "+faststart",
        "file:" + os.path.abspath(dst),
    ]  # fmt: skip


def apply_family(
    family: Family | str,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    info: VideoInfo | None = None,
    threads: int = 2,
) -> Plan:
    """Write `family` applied to `src` into `dst` (an .mp4); returns the plan it followed.

    FileNotFoundError for a missing `src`, MediaError if it cannot be probed, TransformError
    if ffmpeg fails or runs over its time budget (no half-written `dst` is left behind).
    """
    fam = get_family(family) if isinstance(family, str) else family
    info = info or probe(src)
    p = plan(fam, info)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.tmp{dst.suffix}")
    budget = TIMEOUT_S + TIMEOUT_PER_S * info.duration_s
    run = run_ffmpeg(
        transform_command(ffmpeg_exe(), src, tmp, p, threads=threads),
        budget_s=budget,
        what=f"transform {fam.name}",
    )
    if run.returncode != 0 or run.timed_out or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        why = "timed out" if run.timed_out else f"exit {run.returncode}"
        tail = "; ".join(run.stderr.strip().splitlines()[-4:])
        raise TransformError(f"{fam.name} on {src}: ffmpeg {why}: {tail}")
    os.replace(tmp, dst)
    return p


def families_from(names: Sequence[str] | None) -> list[Family]:
    """Families by name (all of them for None or an empty list); ValueError for unknown ones."""
    return [get_family(n) for n in names] if names else list(FAMILIES.values())
