"""Matched ranges as a timeline an editor opens: OpenTimelineIO, and a CMX 3600 EDL.

    timeline_of(matches) -> otio Timeline
        track "targets"  one clip per match: the target's media (an ExternalReference to its
                         file), source_range = the matched range in the media's own frame
                         rate (Side.fps), a marker with the score and copy verdict
        track "queries"  the query's matched range beside each, padded with a gap to the
                         target clip's length so the pairs stay side by side
    write_otio(timeline, path)
    write_edl(timeline, path)   the targets track as CMX 3600 (one video track and one
                                frame rate, as EDLs hold: the most common clip rate), when
                                the `otio-cmx3600-adapter` plugin is installed

Frames: a range [start_s, end_s) is frames round(start_s * fps) .. round(end_s * fps), the
nearest frame boundaries; a side without a known frame rate uses DEFAULT_RATE.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import opentimelineio as otio

from .matches import Match, Side

__all__ = ["DEFAULT_RATE", "edl_available", "edl_rate", "frame_range", "timeline_of",
           "write_edl", "write_otio"]  # fmt: skip

DEFAULT_RATE = 25.0
EDL_ADAPTER = "cmx_3600"


def _rate(side: Side) -> float:
    return float(side.fps) if side.fps and side.fps > 0 else DEFAULT_RATE


def frame_range(start_s: float, end_s: float, rate: float) -> otio.opentime.TimeRange:
    """[start_s, end_s) as whole frames at `rate` (at least one frame)."""
    first, last = round(start_s * rate), round(end_s * rate)
    return otio.opentime.TimeRange(
        start_time=otio.opentime.RationalTime(first, rate),
        duration=otio.opentime.RationalTime(max(1, last - first), rate),
    )


def _reference(side: Side) -> otio.schema.ExternalReference:
    rate = _rate(side)
    url = side.path.resolve().as_uri() if side.path is not None else side.uri
    available = None
    if side.duration_s:
        available = otio.opentime.TimeRange(
            start_time=otio.opentime.RationalTime(0, rate),
            duration=otio.opentime.RationalTime(round(side.duration_s * rate), rate),
        )
    return otio.schema.ExternalReference(target_url=url, available_range=available)


def _sora_metadata(m: Match) -> dict:
    def side(s: Side) -> dict:
        return {"video_id": s.video_id, "name": s.name, "uri": s.uri,
                "start_s": s.start_s, "end_s": s.end_s}  # fmt: skip

    meta = {"score": m.score, "query": side(m.query), "target": side(m.target)}
    if m.copy_score is not None:
        meta["copy_score"] = m.copy_score
    if m.is_copy is not None:
        meta["is_copy"] = m.is_copy
    return {"sora": meta}


def _clip(side: Side, m: Match, n: int, role: str) -> otio.schema.Clip:
    rate = _rate(side)
    clip = otio.schema.Clip(
        name=f"{n:03d} {side.name}",
        media_reference=_reference(side),
        source_range=frame_range(side.start_s, side.end_s, rate),
        metadata=_sora_metadata(m),
    )
    colour = otio.schema.MarkerColor.RED if m.is_copy else otio.schema.MarkerColor.GREEN
    clip.markers.append(
        otio.schema.Marker(
            name=f"{role} #{n}: {m.verdict()}",
            marked_range=otio.opentime.TimeRange(
                start_time=clip.source_range.start_time,
                duration=otio.opentime.RationalTime(0, rate),
            ),
            color=colour,
            metadata=_sora_metadata(m),
        )
    )
    return clip


def timeline_of(matches: Sequence[Match], *, name: str = "sora matches") -> otio.schema.Timeline:
    """Two video tracks, targets and queries, one clip per match on each (see above)."""
    rate = _rate(matches[0].target) if matches else DEFAULT_RATE
    timeline = otio.schema.Timeline(
        name=name, global_start_time=otio.opentime.RationalTime(0, rate)
    )
    targets = otio.schema.Track(name="targets", kind=otio.schema.TrackKind.Video)
    queries = otio.schema.Track(name="queries", kind=otio.schema.TrackKind.Video)
    for n, m in enumerate(matches, 1):
        target, query = _clip(m.target, m, n, "target"), _clip(m.query, m, n, "query")
        targets.append(target)
        queries.append(query)
        gap = target.duration().to_seconds() - query.duration().to_seconds()
        if gap > 0:  # keep the next pair side by side
            queries.append(otio.schema.Gap(
                source_range=otio.opentime.TimeRange(
                    duration=otio.opentime.from_seconds(gap, _rate(m.query)))))  # fmt: skip
        elif gap < 0:
            targets.append(otio.schema.Gap(
                source_range=otio.opentime.TimeRange(
                    duration=otio.opentime.from_seconds(-gap, _rate(m.target)))))  # fmt: skip
    timeline.tracks.append(targets)
    timeline.tracks.append(queries)
    return timeline


def write_otio(timeline: otio.schema.Timeline, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    otio.adapters.write_to_file(timeline, str(path), adapter_name="otio_json")
    return path


def edl_available() -> bool:
    """Whether the CMX 3600 adapter plugin (PyPI otio-cmx3600-adapter) is installed."""
    try:
        return EDL_ADAPTER in otio.adapters.available_adapter_names()
    except Exception:  # noqa: BLE001 - a broken plugin manifest means: not available
        return False


def edl_rate(timeline: otio.schema.Timeline) -> float:
    """The rate an EDL of the targets track is written at: the most common clip rate
    (an EDL has one; clips at another rate are converted to its timecode)."""
    rates = [c.source_range.start_time.rate for c in timeline.tracks[0].find_clips()]
    return max(set(rates), key=rates.count) if rates else DEFAULT_RATE


def write_edl(timeline: otio.schema.Timeline, path: str | os.PathLike[str]) -> float:
    """The targets track as a CMX 3600 EDL (an EDL holds one video track) -> its rate
    (read it back with that rate). RuntimeError when the adapter is not installed."""
    if not edl_available():
        raise RuntimeError(
            "no CMX 3600 adapter for OpenTimelineIO: pip install otio-cmx3600-adapter"
        )
    rate = edl_rate(timeline)
    edl = otio.schema.Timeline(name=timeline.name,
                               global_start_time=otio.opentime.RationalTime(0, rate))  # fmt: skip
    edl.tracks.append(timeline.tracks[0].deepcopy())
    otio.adapters.write_to_file(edl, str(path), adapter_name=EDL_ADAPTER, rate=rate)
    return rate
