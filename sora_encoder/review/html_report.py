"""A static duplicate report a reviewer opens in a browser: DIR/index.html and DIR/images/,
nothing else (no server, no script, no external URL, no CDN).

    write_report(groups, DIR, title=, notes=)
        each group: its videos, then each pair: names, matched ranges, score and verdict,
        and a thumbnail strip (contact_sheet.match_strip: the query's stills above the
        target's at the aligned times) saved as images/gG-pP.jpg

Everything a person typed (titles, file names) is HTML-escaped.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sora_encoder.media import MediaLimits

from .contact_sheet import FRAMES, Probes, match_strip
from .matches import Match

__all__ = ["ReportGroup", "write_report"]

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.group { border-top: 2px solid #bbb; }
.pair { margin: 1em 0 1.5em; }
.pair img { display: block; max-width: 100%; height: auto; border: 1px solid #999; }
.copy { color: #b00; font-weight: bold; }
.note { color: #555; }
table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; }
td.range { white-space: nowrap; } td.note { font-size: 0.85em; word-break: break-all; }
"""


@dataclass(frozen=True)
class ReportGroup:
    """Videos that are copies of each other or share segments, and the pairs that say so."""

    videos: Sequence[tuple[int | None, str]]  # (video id, name)
    matches: Sequence[Match]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _side(label: str, s) -> str:
    vid = f" (video {s.video_id})" if s.video_id is not None else ""
    return (
        f"<tr><th>{label}</th><td>{_e(s.name)}{_e(vid)}</td>"
        f"<td class=range>{s.start_s:.2f}&ndash;{s.end_s:.2f} s</td>"
        f"<td class=note>{_e(s.uri)}</td></tr>"
    )


def write_report(
    groups: Sequence[ReportGroup],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "Duplicates",
    notes: Sequence[str] = (),
    frames: int = FRAMES,
    limits: MediaLimits | None = None,
) -> Path:
    """Write DIR/index.html and its images; returns the page's path."""
    out = Path(out_dir)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    limits = limits or MediaLimits()
    probes = Probes(limits)
    body = [f"<h1>{_e(title)}</h1>"]
    body += [f"<p class=note>{_e(n)}</p>" for n in notes]
    if not groups:
        body.append("<p>No duplicates found.</p>")
    for g, group in enumerate(groups, 1):
        names = ", ".join(f"{name} (video {vid})" if vid is not None else name
                          for vid, name in group.videos)  # fmt: skip
        body.append(f"<section class=group id=group-{g}>")
        body.append(f"<h2>Group {g}: {len(group.videos)} videos</h2><p>{_e(names)}</p>")
        for p, m in enumerate(group.matches, 1):
            strip = match_strip(m, frames=frames, limits=limits, probes=probes,
                                label=f"group {g}, pair {p}")  # fmt: skip
            name = f"g{g}-p{p}.jpg"
            strip.save(images / name, quality=88)
            verdict = _e(m.verdict())
            if m.is_copy:
                verdict = f"<span class=copy>{verdict}</span>"
            alt = (
                f"query {m.query.name} {m.query.start_s:.1f}-{m.query.end_s:.1f} s beside "
                f"target {m.target.name} {m.target.start_s:.1f}-{m.target.end_s:.1f} s"
            )
            body.append(
                f"<div class=pair id=g{g}-p{p}><h3>Pair {p}: {verdict}</h3><table>"
                f"{_side('query', m.query)}{_side('target', m.target)}</table>"
                f'<img src="images/{name}" width={strip.width} height={strip.height} '
                f'alt="{_e(alt)}"></div>'
            )
        body.append("</section>")
    page = out / "index.html"
    page.write_text(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<link rel=icon href='data:,'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n",
        encoding="utf-8",
    )
    return page
