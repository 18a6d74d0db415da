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
    vids = catalogue.places(level, ids).video_id  # (n,)
    if not is_filtered(opts):  # the catalogue holds READY videos only: a flag per video id
        ok = (vids >= 0) & catalogue.servable(vids)
        if exclude_video is not None:
            ok &= vids != exclude_video
        return np.where(ok, vids, -1)
    videos, where = np.unique(vids, return_inverse=True)  # one verdict per video
    verdict = np.array(
        [v >= 0 and passes(catalogue.video(v), opts, exclude_video) for v in videos.tolist()],
        dtype=bool,
    )
    return np.where(verdict[where.reshape(-1)], vids, -1)
