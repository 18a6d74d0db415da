"""Contact sheets: the query's stills beside the target's at the aligned times, labelled.

    match_strip(match)      one match: a header (names, ranges, score), the query's stills
                            in a row, the target's under them at the aligned times, each
                            still labelled with its time -> PIL.Image
    contact_sheet(matches)  the strips of several matches stacked under a title -> PIL.Image

Stills come from sora_encoder.media.stills (ffmpeg, time-limited); Pillow lays them out
and writes the labels. A side whose file is not on this machine, or a still that does not
decode, is an empty cell saying so: a sheet is still made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sora_encoder.media import MediaError, MediaLimits, VideoInfo, probe
from sora_encoder.media.stills import STILL_HEIGHT, grab_stills

from .matches import Match, Side

__all__ = ["FRAMES", "Probes", "contact_sheet", "match_strip"]

FRAMES = 4  # stills a side per match: enough to see the moments line up, small on a page
PAD = 6  # pixels between cells
HEADER = 34  # pixels of a strip's two header lines
LABEL = 16  # pixels of a still's time label
BACKGROUND = (24, 24, 24)
EMPTY = (64, 64, 64)
TEXT = (235, 235, 235)
COPY_TEXT = (255, 196, 64)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


class Probes:
    """Each file probed once per sheet; None for a side that has no file here."""

    def __init__(self, limits: MediaLimits) -> None:
        self.limits = limits
        self._held: dict[Path, VideoInfo | None] = {}

    def __call__(self, side: Side) -> VideoInfo | None:
        if side.path is None:
            return None
        if side.path not in self._held:
            try:
                self._held[side.path] = probe(side.path, self.limits)
            except (MediaError, OSError):
                self._held[side.path] = None
        return self._held[side.path]


def _stills(side: Side, times: Sequence[float], info: VideoInfo | None, height: int, limits):
    if info is None or side.path is None:
        return [None] * len(times)
    try:
        return grab_stills(side.path, info, times, height=height, limits=limits)
    except (MediaError, OSError):
        return [None] * len(times)


def _cell(still: np.ndarray | None, size: tuple[int, int], why: str) -> Image.Image:
    """A still fitted into a cell of `size` (w, h), centred; an empty cell saying `why`."""
    w, h = size
    cell = Image.new("RGB", size, EMPTY if still is None else BACKGROUND)
    if still is None:
        ImageDraw.Draw(cell).text((w / 2, h / 2), why, fill=TEXT, font=_font(11), anchor="mm")
        return cell
    img = Image.fromarray(still)
    img.thumbnail(size)  # keeps the aspect; never enlarges
    cell.paste(img, ((w - img.width) // 2, (h - img.height) // 2))
    return cell


def _side_name(side: Side) -> str:
    return f"{side.name} {side.start_s:.2f}-{side.end_s:.2f} s"


def match_strip(
    match: Match,
    *,
    frames: int = FRAMES,
    height: int = STILL_HEIGHT,
    limits: MediaLimits | None = None,
    probes: Probes | None = None,
    label: str = "",
) -> Image.Image:
    """One match as a strip: header, query stills, target stills at the aligned times."""
    limits = limits or MediaLimits()
    probes = probes or Probes(limits)
    times = match.aligned_times(frames)
    cell = (int(round(height * 16 / 9)), height)
    rows = []
    for side, ts in ((match.query, [q for q, _ in times]), (match.target, [t for _, t in times])):
        info = probes(side)
        why = "not on this machine" if side.path is None else "no frame"
        stills = _stills(side, ts, info, height, limits)
        rows.append([(_cell(s, cell, why), t) for s, t in zip(stills, ts, strict=True)])
    width = PAD + frames * (cell[0] + PAD)
    strip = Image.new("RGB", (width, HEADER + 2 * (cell[1] + LABEL + PAD)), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    head = f"{label}  " if label else ""
    draw.text((PAD, 2), f"{head}query {_side_name(match.query)}  ->  target "
              f"{_side_name(match.target)}", fill=TEXT, font=_font(12))  # fmt: skip
    colour = COPY_TEXT if match.is_copy else TEXT
    draw.text((PAD, 18), match.verdict(), fill=colour, font=_font(12))
    for r, (row, who) in enumerate(zip(rows, ("query", "target"), strict=True)):
        y = HEADER + r * (cell[1] + LABEL + PAD)
        for i, (img, t) in enumerate(row):
            x = PAD + i * (cell[0] + PAD)
            strip.paste(img, (x, y))
            draw.text((x + 2, y + cell[1] + 1), f"{who} {t:.2f} s", fill=TEXT, font=_font(11))
    return strip


def contact_sheet(
    matches: Sequence[Match],
    *,
    title: str = "",
    frames: int = FRAMES,
    height: int = STILL_HEIGHT,
    limits: MediaLimits | None = None,
) -> Image.Image:
    """The strips of `matches`, numbered, stacked under `title`."""
    if not matches:
        raise ValueError("a contact sheet needs at least one match")
    limits = limits or MediaLimits()
    probes = Probes(limits)
    strips = [
        match_strip(
            m, frames=frames, height=height, limits=limits, probes=probes, label=f"#{n}"
        )  # fmt: skip
        for n, m in enumerate(matches, 1)
    ]
    top = 24 if title else 0
    sheet = Image.new(
        "RGB", (max(s.width for s in strips), top + sum(s.height for s in strips)), BACKGROUND
    )
    if title:
        ImageDraw.Draw(sheet).text((PAD, 4), title, fill=TEXT, font=_font(14))
    y = top
    for s in strips:
        sheet.paste(s, (0, y))
        y += s.height
    return sheet
