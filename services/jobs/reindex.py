"""Re-embedding the library with the configured model version (see services.store.versions):
one REINDEX job per READY video that lacks that version's vectors."""

from __future__ import annotations

from services.store import JobKind, Store, enqueue_job, videos_missing_version


def enqueue_reindex(store: Store, model_version: str) -> list[int]:
    """Queue the jobs (idempotent: an active job for a video is reused) -> new job ids."""
    with store.Session.begin() as s:
        video_ids = videos_missing_version(s, model_version)
    new = []
    for video_id in video_ids:
        with store.Session.begin() as s:
            job, created = enqueue_job(
                s, video_id, kind=JobKind.REINDEX, model_version=model_version
            )
            if created:
                new.append(job.id)
    return new
