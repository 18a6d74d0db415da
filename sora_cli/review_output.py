"""Hits and duplicate pairs (proto) as sora_encoder.review matches, and the review files
the search and duplicates commands write: contact sheet, OTIO (+ EDL), HTML report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sora_encoder.review import Match, Side

from .output import say


def video_name(video: Any) -> str:
    return video.title or Path(video.uri).name or f"video {video.id}"


def side_of(video: Any, start_s: float, end_s: float) -> Side:
    """A proto Video and a range as a Side (its file when this machine has it). An
    uploaded video is shown, and referenced in timelines, by the file it was uploaded from
    (`original_path`) when that is on this machine: the editor's own media, not the
    server's copy; else by the server's copy."""
    from services.store import local_file  # here: SQLAlchemy stays out of CLI start-up

    original = local_file(video.original_path) if video.original_path else None
    return Side(
        name=video_name(video),
        start_s=max(0.0, start_s),
        end_s=max(start_s, end_s, 0.0),
        path=original or local_file(video.uri),
        fps=video.fps or None,
        duration_s=video.duration_s or None,
        video_id=video.id,
        uri=video.original_path or video.uri,
    )


def match_of_pair(pair: Any) -> Match:
    """A DuplicatePair as a Match."""
    q, t = pair.query, pair.target
    return Match(
        query=side_of(q.video, q.range.start_s, q.range.end_s),
        target=side_of(t.video, t.range.start_s, t.range.end_s),
        score=float(pair.score),
        copy_score=float(pair.copy_score) if pair.HasField("copy_score") else None,
        is_copy=bool(pair.is_copy) if pair.HasField("is_copy") else None,
    )


def match_of_hit(hit: Any, query: Side) -> Match:
    """A search Hit as a Match with the query (`query`'s range: the whole query; an
    aligned hit narrows it to the part that matched)."""
    q0, q1 = (hit.query.start_s, hit.query.end_s) if hit.aligned else (query.start_s,
                                                                        query.end_s)  # fmt: skip
    return Match(
        query=Side(
            name=query.name,
            start_s=q0,
            end_s=max(q0, q1),
            path=query.path,
            fps=query.fps,
            duration_s=query.duration_s,
            video_id=query.video_id,
            uri=query.uri,
        ),  # fmt: skip
        target=side_of(hit.video, hit.target.start_s, hit.target.end_s),
        score=float(hit.score),
        copy_score=float(hit.copy_score) if hit.HasField("copy_score") else None,
        is_copy=bool(hit.is_copy) if hit.HasField("is_copy") else None,
    )


def clip_side(path: str) -> Side:
    """A query clip on this machine as a Side over its whole length."""
    from sora_encoder.media import probe

    info = probe(path)
    return Side(name=Path(path).name, start_s=0.0, end_s=info.duration_s, path=Path(path),
                fps=info.fps or None, duration_s=info.duration_s, uri=str(path))  # fmt: skip


def write_sheet(matches: Sequence[Match], path: str, title: str) -> None:
    from sora_encoder.review.contact_sheet import contact_sheet

    contact_sheet(matches, title=title).save(path)
    say(f"contact sheet: {path} ({len(matches)} match(es))")


def write_timeline(matches: Sequence[Match], path: str, name: str) -> None:
    """FILE.otio, and FILE.edl beside it when the CMX 3600 adapter is installed."""
    from sora_encoder.review.timeline import edl_available, timeline_of, write_edl, write_otio

    timeline = timeline_of(matches, name=name)
    write_otio(timeline, path)
    say(f"timeline: {path} ({len(matches)} clip(s) a track)")
    edl = str(Path(path).with_suffix(".edl"))
    if edl_available():
        rate = write_edl(timeline, edl)
        say(f"EDL: {edl} (CMX 3600 at {rate:g} fps: the targets track)")
    else:
        say("no EDL: the CMX 3600 adapter is not installed (pip install otio-cmx3600-adapter)")
