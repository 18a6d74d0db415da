"""Videos and jobs: get (by id or external id), list, delete, vectors (one video's, or many
videos' a page at a time); a job's progress as a stream of changes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from services.errors import ConflictError, InvalidArgumentError
from services.store import (
    Job,
    JobStatus,
    Segment,
    Store,
    Video,
    VideoStatus,
    decode_page_token,
    delete_video,
    encode_page_token,
    get_job,
    get_segments,
    get_video,
    get_video_by_external_id,
    get_video_embedding,
    list_video_vectors,
    list_videos,
)

from .call import Call
from .index_keeper import IndexKeeper

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
DEFAULT_EMBEDDINGS_PAGE = 100
MAX_EMBEDDINGS_PAGE = 1000
# Segment vectors a ListEmbeddings page stops after: 16384 x 256-d floats (~4 bytes each on
# the wire, with times and ids) is ~17 MB, far below the 64 MiB message cap.
MAX_PAGE_SEGMENTS = 16384
FINAL_JOB_STATES = (JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class EmbeddingsView:
    video_id: int
    model_version: str
    video_vector: np.ndarray | None  # (d,) float32
    segments: list[Segment]  # in time order, vectors loaded
    video: Video | None = None  # the video's metadata (ListEmbeddings)


@dataclass(frozen=True)
class EmbeddingsPage:
    videos: list[EmbeddingsView]
    next_page_token: str | None
    model_version: str | None


class VideoService:
    def __init__(self, store: Store, keeper: IndexKeeper) -> None:
        self.store = store
        self.keeper = keeper

    def get(self, video_id: int) -> Video:
        with self.store.ReadSession.begin() as s:
            return get_video(s, video_id)

    def get_by_external_id(self, external_id: str, collection: str | None = None) -> Video:
        with self.store.ReadSession.begin() as s:
            return get_video_by_external_id(s, external_id, collection)

    def list(
        self,
        *,
        page_size: int = 0,
        page_token: str | None = None,
        collection: str | None = None,
        tag: str | None = None,
        status: VideoStatus | None = None,
        external_id: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
    ) -> tuple[list[Video], str | None]:
        with self.store.ReadSession.begin() as s:
            return list_videos(
                s,
                collection=collection,
                tag=tag,
                status=status,
                external_id=external_id,
                user_metadata=user_metadata,
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

    def list_embeddings(
        self,
        *,
        page_size: int = 0,
        page_token: str | None = None,
        model_version: str | None = None,
        with_segments: bool = True,
        collection: str | None = None,
        tag: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
    ) -> EmbeddingsPage:
        """READY videos with vectors of the version (default: the one searches serve), in
        id order, with their metadata; at most page_size of them and about
        MAX_PAGE_SEGMENTS segment vectors a page."""
        page_size = page_size or DEFAULT_EMBEDDINGS_PAGE
        if not 1 <= page_size <= MAX_EMBEDDINGS_PAGE:
            raise InvalidArgumentError(
                f"page_size {page_size}: expected 1..{MAX_EMBEDDINGS_PAGE} videos"
            )
        after = decode_page_token(page_token) if page_token else 0
        version = model_version or self.keeper.model_version
        if version is None:  # nothing embedded yet: an empty library
            return EmbeddingsPage([], None, None)
        with self.store.ReadSession.begin() as s:
            rows, last = list_video_vectors(
                s, version, after_id=after, page_size=page_size,
                max_segments=MAX_PAGE_SEGMENTS, with_segments=with_segments,
                collection=collection, tag=tag, user_metadata=user_metadata,
            )  # fmt: skip
        views = [
            EmbeddingsView(r.video.id, version, r.video_vector, r.segments, r.video) for r in rows
        ]
        return EmbeddingsPage(views, encode_page_token(last) if last else None, version)


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
