"""Submitting videos: hash files, register them in SQL; the caller sends their jobs.

    paths --sora_encoder.files.find_videos--> files
          --sha256--> register_video (one transaction each)
          --> Dispatcher.send(new job ids)   (after commit; a lost send is re-sent later)

The same bytes twice are one video and one job: `register_video` is idempotent on the
content hash, so re-running an ingest over a folder sends nothing for what is known.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.store import Store, register_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    path: Path
    video_id: int
    job_id: int | None  # None: nothing to do (the bytes are known and fine)
    created: bool  # a new video row
    status: str  # the video's status after registration


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def register_files(
    store: Store,
    files: Iterable[Path],
    *,
    collection: str | None = None,
    tags: Iterable[str] = (),
    title_from_name: bool = True,
    external_ids: Mapping[Path, str] | None = None,
    user_metadata: Mapping[str, str] | None = None,
) -> list[Submission]:
    """Register each file (idempotent on its bytes); the caller sends the new jobs.
    `external_ids` maps a file (as given) to its asset id; the store's rules apply (an id
    taken by other bytes is AlreadyExistsError, raised before later files are registered)."""
    out = []
    tags = tuple(tags)
    for given in files:
        path = given.resolve()
        sha = sha256_file(path)
        with store.Session.begin() as s:
            video, job, created = register_video(
                s,
                uri=str(path),
                content_sha256=sha,
                size_bytes=path.stat().st_size,
                title=path.stem if title_from_name else None,
                collection=collection,
                tags=tags,
                external_id=(external_ids or {}).get(given),
                user_metadata=user_metadata,
                original_name=path.name,
                original_path=str(path),
            )
            out.append(
                Submission(path, video.id, job.id if job else None, created, video.status.value)
            )
    return out
