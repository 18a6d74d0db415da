"""Videos and jobs: get, list, delete, vectors; a job's progress as a stream of changes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from services.errors import ConflictError
from services.store import (
    Job,
    JobStatus,
    Segment,
    Store,
    Video,
    VideoStatus,
    delete_video,
    get_job,
    get_segments,
    get_video,
    get_video_embedding,
    list_videos,
)

from .call import Call
from .index_keeper import IndexKeeper

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
FINAL_JOB_STATES = (JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class EmbeddingsView:
    video_id: int
    model_version: str
    video_vector: np.ndarray | None  # (d,) float32
    segments: list[Segment]  # in time order, vectors loaded


class VideoService:
    def __init__(self, store: Store, keeper: IndexKeeper) -> None:
        self.store = store
        self.keeper = keeper

    def get(self, video_id: int) -> Video:
        with self.store.ReadSession.begin() as s:
            return get_video(s, video_id)

    def list(
        self,
        *,
        page_size: int = 0,
        page_token: str | None = None,
        collection: str | None = None,
        tag: str | None = None,
        status: VideoStatus | None = None,
    ) -> tuple[list[Video], str | None]:
        with self.store.ReadSession.begin() as s:
            return list_videos(
                s,
                collection=collection,
                tag=tag,
                status=status,
                page_size=page_size or DEFAULT_PAGE_SIZE,
                page_token=page_token or None,
            )

    def delete(self, video_id: int) -> Video:
        """Soft delete. Once its transaction has committed, the video leaves the serving
        catalogue, so every search from now on filters its hits out; the index drops its
        vectors at its next sync (asked for now)."""
        with self.store.Session.begin() as s:
            video = delete_video(s, video_id)
        self.keeper.forget_video(video_id)
        self.keeper.request_sync()
        return video

    def embeddings(self, video_id: int, model_version: str | None = None) -> EmbeddingsView:
        version = model_version or self.keeper.model_version
        with self.store.ReadSession.begin() as s:
            video = get_video(s, video_id)
            if version is None:
                raise ConflictError(
                    f"video {video_id} has no vectors yet (status {video.status.value}): "
                    "no video has been embedded so far"
                )
            emb = get_video_embedding(s, video_id, version)
            segments = get_segments(s, video_id, version)
            if emb is None and not segments:
                raise ConflictError(
                    f"video {video_id} has no vectors of model version {version} "
                    f"(status {video.status.value}"
                    + (f": {video.error}" if video.error else "")
                    + "); wait for its ingest or reindex job"
                )
            return EmbeddingsView(
                video_id, version, emb.as_array() if emb is not None else None, segments
            )


class JobService:
    def __init__(self, store: Store, *, poll_s: float = 0.25) -> None:
        self.store = store
        self.poll_s = poll_s

    def get(self, job_id: int) -> Job:
        with self.store.ReadSession.begin() as s:
            return get_job(s, job_id)

    def watch(self, job_id: int, call: Call | None = None) -> Iterator[Job]:
        """The job now, then at each change (status, progress, attempts, error), until it
        SUCCEEDED or FAILED. When the deadline passes or the client goes away it raises
        (DeadlineExceededError / CallCancelledError): returning instead would race gRPC's
        own deadline and, on a loaded machine, end the stream with OK before the client
        hears DEADLINE_EXCEEDED."""
        call = call or Call()
        last = None
        while True:
            job = self.get(job_id)
            state = (job.status, job.progress_done, job.progress_total, job.attempts, job.error)
            if state != last:
                last = state
                yield job
            if job.status in FINAL_JOB_STATES:
                return
            deadline = time.monotonic() + self.poll_s
            while time.monotonic() < deadline:
                call.check()
                time.sleep(min(0.05, self.poll_s))
