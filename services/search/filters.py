"""Stage 3, filter: which vector ids a search may return, answered by the catalogue of
servable videos in memory (services.index.catalogue), never by SQL.

    ids --catalogue.places--> video ids --READY, collection, every tag, external id one
        of those asked for, every user metadata key=value, not the query video--> video
        id, or -1 for an id that is refused (or unknown: deleted, or not synced yet)
"""

from __future__ import annotations

import numpy as np

from services.index import Catalogue, VideoInfo
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


def admit(
    catalogue: Catalogue,
    level: Level,
    ids: np.ndarray,
    opts: SearchOptions,
    exclude_video: int | None = None,
) -> np.ndarray:
    """ids (n,) -> their video ids (n,) int64, -1 where refused."""
    vids = catalogue.places(level, ids).video_id.copy()  # (n,)
    verdict: dict[int, bool] = {}
    for j, v in enumerate(vids.tolist()):
        if v < 0:
            continue
        ok = verdict.get(v)
        if ok is None:
            ok = verdict[v] = passes(catalogue.video(v), opts, exclude_video)
        if not ok:
            vids[j] = -1
    return vids
