"""Matched ranges to a fraction of a second: the frame-level stage after alignment.

    aligned hit: target = (first segment start, last segment end)   4-s granularity
      -> thumbnails of the library video over that range +- PAD_S (one short ffmpeg run)
      -> sora_encoder.moments.place(query thumbnails, those)        offset and speed
      -> target = where the query's matched part lands, when the frames agree

Only the top REFINE_TOP aligned hits of a clip search are refined: each costs a seek and
~0.1 s of decoding of a library file, and the first hits are the ones a reviewer opens. A
hit keeps its segment-level range when its file is not on this machine (a URL, a deleted
file), cannot be read, or its frames do not single out one offset (static footage, a heavy
crop); a failure here never fails the search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.store import local_file
from sora_encoder.media import ContentBox, MediaError, MediaLimits, detect_content_box, probe
from sora_encoder.media.thumbnails import Thumbnails, decode_thumbnails
from sora_encoder.moments import place

__all__ = ["PAD_S", "REFINE_TOP", "query_thumbnails", "refine_targets", "video_thumbnails"]

log = logging.getLogger(__name__)

REFINE_TOP = 3
PAD_S = 4.0  # one segment either side: the segment range can be off by up to that
MAX_RATE = 2.0  # the fastest playback change sora_encoder.moments tries
# A whole query placed at this mean frame similarity or more matches along its length (true
# copies, also sped up or letterboxed, place at 0.9+; unrelated footage below 0.3).
WHOLE_MIN_SCORE = 0.6


def _content_box(video: Any, path: Path, info: Any, limits: MediaLimits) -> ContentBox:
    """The box ingest stored on the video; detected again for a video ingested before it was
    stored (or an unreadable value)."""
    text = getattr(video, "content_box", None)
    if text:
        try:
            return ContentBox.from_text(text)
        except ValueError:
            log.warning("video %s has an unreadable content box %r", video.id, text)
    return detect_content_box(path, info, limits)


def _query_part(query: Thumbnails, span: tuple[float, float] | None) -> Thumbnails:
    """The query's thumbnails inside its aligned range (all of them without one)."""
    if span is None:
        return query
    i0 = max(0, int(round((span[0] - query.start_s) * query.fps)))
    i1 = min(len(query), int(round((span[1] - query.start_s) * query.fps)))
    return replace(query, start_s=query.start_s + i0 / query.fps, frames=query.frames[i0:i1])


def query_thumbnails(path: Path, emb: Any) -> Thumbnails | None:
    """A query clip's thumbnails inside its borders (`emb`: its VideoEmbedding, which says
    what was decoded); None when they cannot be decoded (hits keep segment-level ranges)."""
    from sora_encoder.media.borders import FULL

    info = getattr(emb, "info", None)
    if info is None:  # an embedder that does not say what it decoded
        return None
    try:
        return decode_thumbnails(path, info, box=getattr(emb, "box", FULL))
    except (MediaError, OSError) as exc:
        log.info("no query thumbnails for moment refinement: %s", exc)
        return None


def video_thumbnails(video: Any, limits: MediaLimits | None = None) -> Thumbnails | None:
    """A library video's thumbnails inside the borders ingest cut off, when its file is on
    this machine (a video-id query's, for refine_targets); None when it is not, or cannot
    be decoded (hits then keep their segment-level ranges)."""
    path = local_file(video.uri)
    if path is None:
        return None
    limits = limits or MediaLimits()
    try:
        info = probe(path, limits)
        return decode_thumbnails(path, info, box=_content_box(video, path, info, limits),
                                 limits=limits)  # fmt: skip
    except (MediaError, OSError) as exc:
        log.info("no thumbnails of video %s for moment refinement: %s", video.id, exc)
        return None


def refine_targets(
    hits: Sequence[Any],
    query: Thumbnails | Callable[[], Thumbnails | None],
    *,
    limits: MediaLimits | None = None,
    top: int = REFINE_TOP,
    placed: list | None = None,
) -> int:
    """Narrow the `target` (and `query`) ranges of the first `top` aligned hits in place;
    returns how many moved. `hits` need `.video.uri`, `.target`, `.query`,
    `.alignment_score` (services.search.types.Hit). `query` may be a function that decodes
    the query's thumbnails: it is called once, and only when a hit is to be refined (an
    aligned hit whose file is on this machine), so a search with none decodes nothing.
    `placed`: a list the hits placed by frames are appended to (also those that stayed)."""
    limits = limits or MediaLimits()
    picked = []
    for hit in [h for h in hits if h.alignment_score is not None and h.target][:top]:
        path = local_file(hit.video.uri)
        if path is not None:
            picked.append((hit, path))
    if not picked:
        return 0
    thumbs = query() if callable(query) else query
    if thumbs is None:
        return 0
    query = thumbs
    moved = 0
    for hit, path in picked:
        part = _query_part(query, hit.query)
        # the stretch where the whole query could land, if more of it matches than the
        # segments said (at up to MAX_RATE x speed), plus a segment either side
        lead = part.start_s - query.start_s  # query seconds before and after its part
        trail = query.duration_s - lead - part.duration_s
        before, after = lead * MAX_RATE + PAD_S, trail * MAX_RATE + PAD_S
        t0, t1 = hit.target
        try:
            info = probe(path, limits)
            box = _content_box(hit.video, path, info, limits)
            target = decode_thumbnails(
                path, info, start_s=t0 - before, duration_s=(t1 - t0) + before + after,
                fps=query.fps, side=query.frames.shape[1], box=box, limits=limits,
            )  # fmt: skip
        except (MediaError, OSError) as exc:
            log.info("moment refinement skipped for video %s: %s", hit.video.id, exc)
            continue
        # the whole query first: frames are finer evidence than the segments' alignment,
        # but a query that only partly matches scores low along its whole length
        p, part_placed = place(query, target), query
        if p is None or p.score < WHOLE_MIN_SCORE:
            p, part_placed = place(part, target), part
        if p is None:
            continue
        hit.target = (max(0.0, p.start_s), min(info.duration_s, p.end_s))
        hit.query = (part_placed.start_s, part_placed.start_s + part_placed.duration_s)
        moved += 1
        if placed is not None:
            placed.append(hit)
    return moved
