"""Stage 3, filter: which vector ids a search may return, answered by the catalogue of
servable videos in memory (services.index.catalogue), never by SQL.

    ids --catalogue.places--> video ids --READY, collection, every tag, external id one
        of those asked for, every user metadata key=value, not the query video--> video
        id, or -1 for an id that is refused (or unknown: deleted, or not synced yet)

Array code for the common filters: READY is the catalogue's flag per video id; a
collection / tags filter has flags of its own, built by the catalogue on its first search
and kept current by every change (Catalogue.filter_mask); from those, bits per vector id
that the index tests while it scans (admitted_bits), so such a filter needs no
over-fetch. Asset ids (external_ids) and metadata values, mostly one-offs, test the
candidates' videos one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

from services.index import Catalogue, VideoInfo
from services.index.catalogue import flags_at
from services.store import Level, VideoStatus

from .types import SearchOptions


def passes(info: VideoInfo | None, opts: SearchOptions, exclude_video: int | None) -> bool:
    """Whether a video may appear in this search's results."""
    return (
        info is not None
        and info.status is VideoStatus.READY
        and (not opts.collection or info.collection == opts.collection)
        and all(t in info.tags for t in opts.tags)
        and (not opts.external_ids or info.external_id in opts.external_ids)
        and all(item in info.metadata_items for item in opts.metadata_items)
        and info.id != exclude_video
    )


def is_filtered(opts: SearchOptions) -> bool:
    """Whether the options ask for more than READY videos of the serving version."""
    return bool(opts.collection or opts.tags or opts.external_ids or opts.metadata_items)


def admit(
    catalogue: Catalogue,
    level: Level,
    ids: np.ndarray,
    opts: SearchOptions,
    exclude_video: int | None = None,
) -> np.ndarray:
    """ids (n,) -> their video ids (n,) int64, -1 where refused."""
    return admit_videos(catalogue, catalogue.places(level, ids).video_id, opts, exclude_video)


def admit_videos(
    catalogue: Catalogue, vids: np.ndarray, opts: SearchOptions, exclude_video: int | None = None
) -> np.ndarray:
    """The video ids (n,) of some vector ids (-1: unknown) -> the same, -1 where refused."""
    if not is_filtered(opts):  # the catalogue holds READY videos only: a flag per video id
        ok = (vids >= 0) & catalogue.servable(vids)
    elif _has_flags(opts):  # flags kept by the catalogue
        ok = flags_at(_flags(catalogue, opts), vids) & catalogue.servable(vids)
    else:  # asset ids and metadata values are mostly one-offs: test the candidates' videos
        videos, where = np.unique(vids, return_inverse=True)  # one verdict per video
        verdict = np.array(
            [v >= 0 and passes(catalogue.video(v), opts, None) for v in videos.tolist()],
            dtype=bool,
        )
        ok = verdict[where.reshape(-1)]
    if exclude_video is not None:
        ok &= vids != exclude_video
    return np.where(ok, vids, -1)


def _has_flags(opts: SearchOptions) -> bool:
    """A filter of collection and/or tags only: the catalogue keeps flags for it."""
    return is_filtered(opts) and not (opts.external_ids or opts.metadata_items)


def _flags(catalogue: Catalogue, opts: SearchOptions) -> np.ndarray:
    """The catalogue's flags of the videos a collection / tags filter admits (collections
    and tags recur across searches: built once, then kept current)."""
    return catalogue.filter_mask(*_filter_of(opts))


def _filter_of(opts: SearchOptions) -> tuple[Hashable, Callable[[VideoInfo], bool]]:
    """A collection / tags filter as the catalogue keeps it: its key, and its test."""
    return (opts.collection, opts.tags), lambda info: passes(info, opts, None)


def admitted_bits(catalogue: Catalogue, opts: SearchOptions) -> np.ndarray | None:
    """A collection / tags filter's vector ids as bits (Catalogue.vector_bits), for the
    index to test while it searches: then no over-fetch is needed for it. None for no
    filter (every id the index holds is servable) and for asset ids and metadata values
    (one-offs, tested per candidate)."""
    if not _has_flags(opts):
        return None
    return catalogue.vector_bits(opts.level, *_filter_of(opts))


def admitted_share(catalogue: Catalogue, opts: SearchOptions) -> float:
    """About what share of the servable videos the filter admits (1.0 without a filter,
    or for asset ids / metadata values, which are tested per candidate): how much
    retrieve over-fetches so that one round usually finds enough."""
    if not _has_flags(opts):
        return 1.0
    servable = max(1, catalogue.servable_count())
    return min(1.0, int(np.count_nonzero(_flags(catalogue, opts))) / servable)
