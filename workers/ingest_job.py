"""One ingest job, start to finish, without Celery (the task is a thin shell around it).

    claim (SQL, lease)  ->  embed the file (decode || encode, lease renewed per batch)
        ->  ONE transaction: segment vectors + video vector + READY + SUCCEEDED

Bad media fails the job for good with its reason; anything else propagates to the task,
which retries transient faults. A duplicate delivery finds the job taken or done and
returns "skipped" without touching anything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from services.store import (
    ProbeFacts,
    Store,
    Video,
    claim_job,
    complete_ingest,
    fail_job,
    local_path,
    renew_lease,
)
from sora_encoder import VideoEmbedder
from sora_encoder.media import MediaError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    status: str  # "succeeded", "failed" (bad media, final) or "skipped" (nothing to do)
    reason: str | None = None
    segments: int = 0


def run_ingest_job(
    store: Store, embedder: VideoEmbedder, job_id: int, *, owner: str, lease_s: float
) -> JobOutcome:
    with store.Session.begin() as s:
        job = claim_job(s, job_id, owner, lease_s)
        if job is None:
            return JobOutcome(job_id, "skipped")
        video_id = job.video_id
        wanted_version = job.model_version
        uri = s.get(Video, video_id).uri

    if wanted_version is not None and wanted_version != embedder.model_version:
        # A reindex job for another checkpoint (a rolling upgrade: this worker is old or
        # new). Hand it back, not failed: a worker running that version will take it (the
        # reconciler re-sends it; a job bounced MAX_ATTEMPTS times fails for good).
        reason = f"job wants model {wanted_version}, this worker runs {embedder.model_version}"
        logger.warning("job %s: %s; handed back", job_id, reason)
        with store.Session.begin() as s:
            fail_job(s, job_id, reason, permanent=False, owner=owner)
        return JobOutcome(job_id, "skipped", reason)

    def heartbeat(done: int, total: int) -> None:
        with store.Session.begin() as s:
            renew_lease(s, job_id, owner, lease_s, done=done, total=total)

    try:
        path = local_path(uri)
        if path is None:
            raise FileNotFoundError(f"{uri} names no file on this machine")
        emb = embedder.embed(path, on_batch=heartbeat)
    except (MediaError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return _fail(store, job_id, owner, f"{type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    info = emb.info
    with store.Session.begin() as s:
        complete_ingest(
            s,
            job_id,
            video_id,
            model_version=emb.model_version,
            segments=[(g.index, g.start_s, g.end_s, g.vector) for g in emb.segments],
            video_vector=emb.vector,
            probe=ProbeFacts(
                duration_s=info.duration_s,
                fps=info.fps,
                width=info.width,
                height=info.height,
                rotation=info.rotation,
                codec=info.codec,
                content_box=emb.box.to_text(),
            ),
            timings={
                "decode_s": emb.timings["decode_wait_s"],
                "encode_s": emb.timings["encode_s"],
                "write_s": time.perf_counter() - t0,
            },
        )
    logger.info("job %s: video %s READY, %d segments", job_id, video_id, len(emb.segments))
    return JobOutcome(job_id, "succeeded", segments=len(emb.segments))


def _fail(store: Store, job_id: int, owner: str, reason: str) -> JobOutcome:
    logger.warning("job %s failed: %s", job_id, reason)
    with store.Session.begin() as s:
        fail_job(s, job_id, reason, permanent=True, owner=owner)
    return JobOutcome(job_id, "failed", reason)
