"""The Python client of the SoraIndex API, the way tools call the service: one method per
RPC, iterators over pages, deadlines, and retries of what is safe to retry.

    with SoraClient("127.0.0.1:50051", token=os.environ.get("SORA_API_TOKEN")) as c:
        r = c.upload("clip.mp4", collection="holiday", external_id="A-1",
                     user_metadata={"reel": "3"})                        # IngestResponse
        for job in c.watch_job(r.job_id): print(job.segments_done, job.segments_total)
        hits = c.search(video_id=r.video_id, top_k=5, user_metadata={"reel": "3"}).hits
        for e in c.iter_embeddings(collection="holiday"): ...       # every page, in turn

Methods return the proto messages (`services.api.gen.sora.v1.sora_pb2`) or plain Python
values; failures raise grpc.RpcError with the server's status code and message
(`err.code()`, `err.details()`). Uploads stream the file in chunks (1 MiB by default).
docs/examples/tool_client.py is a whole tool to copy from.

Deadlines: every call has one, `timeout=` seconds (the client's default, 30 s, unless
given; None: none). Uploads and WatchJob have none by default (big files, long jobs).

Retries (RetryPolicy): a call that fails with UNAVAILABLE (server restarting, index still
loading, database or broker down) is tried again after an exponential back-off with
jitter (0.2 s, 0.4 s, ... at most 5 s; 5 attempts in all by default), each attempt with
the call's full deadline. Only calls that are safe to repeat are retried:

    retried      every read (GetVideo, ListVideos, GetJob, GetEmbeddings, ListEmbeddings,
                 Search, SearchBatch, SearchByClip of a file, Classify, ListClassifiers,
                 health) and the ingest calls, which are idempotent: IngestUri, BulkIngest,
                 UploadVideo of a file (the same bytes, or the same external id, give the
                 same video), and DeleteVideo (deleting twice is a no-op)
    not retried  TrainClassifier (expensive; it may have run), upload_bytes (an iterator
                 cannot be replayed), WatchJob (a stream: watch again)

Any other code (INVALID_ARGUMENT, NOT_FOUND, DEADLINE_EXCEEDED, ...) is raised at once.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.api.gen.sora.v1 import sora_pb2 as pb
from services.api.gen.sora.v1 import sora_pb2_grpc

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0
LEVELS = {"video": pb.SEARCH_LEVEL_VIDEO, "segment": pb.SEARCH_LEVEL_SEGMENT}
# Clip queries: when to also search with the clip's regions (RegionSearch in the .proto)
REGION_SEARCH = {
    "auto": pb.REGION_SEARCH_AUTO,
    "always": pb.REGION_SEARCH_ALWAYS,
    "never": pb.REGION_SEARCH_NEVER,
}
VIDEO_STATUSES = {
    "PENDING": pb.VIDEO_STATUS_PENDING,
    "PROCESSING": pb.VIDEO_STATUS_PROCESSING,
    "READY": pb.VIDEO_STATUS_READY,
    "FAILED": pb.VIDEO_STATUS_FAILED,
    "DELETED": pb.VIDEO_STATUS_DELETED,
}

_Unset = object()
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of UNAVAILABLE for the calls that are safe to repeat (module docstring)."""

    max_attempts: int = 5  # attempts in all; 1: no retries
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2  # each wait is scaled by a random factor in [1 - j, 1 + j]
    sleep: Callable[[float], None] = time.sleep  # for tests: a hook that sees each wait

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts {self.max_attempts}: expected >= 1")
        if not (0 <= self.initial_backoff_s <= self.max_backoff_s) or self.multiplier < 1:
            raise ValueError("expected 0 <= initial_backoff_s <= max_backoff_s, multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter {self.jitter}: expected 0 <= jitter < 1")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1, 2, ...)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


NO_RETRIES = RetryPolicy(max_attempts=1)


def _metadata(
    title: str | None,
    collection: str | None,
    tags: Iterable[str],
    external_id: str | None = None,
    user_metadata: Mapping[str, str] | None = None,
) -> pb.VideoMetadata:
    return pb.VideoMetadata(
        title=title or "",
        collection=collection or "",
        tags=list(tags),
        external_id=external_id or "",
        user_metadata=dict(user_metadata or {}),
    )


def _file_chunks(path: Path, chunk_size: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            yield block


def _batch_request(
    video_ids: Sequence[int] | None,
    vectors: Sequence[Sequence[float]] | np.ndarray | None,
    options: dict[str, Any],
    *,
    packed: bool,
) -> pb.SearchBatchRequest:
    if (video_ids is None) == (vectors is None):
        raise ValueError("give exactly one of video_ids and vectors")
    opts = search_options(**options)
    if video_ids is not None:
        return pb.SearchBatchRequest(
            video_ids=[int(v) for v in video_ids], options=opts, packed=packed
        )
    return pb.SearchBatchRequest(vectors=[_vector(v) for v in vectors], options=opts, packed=packed)


def _vector(values: Sequence[float] | np.ndarray) -> pb.VectorQuery:
    return pb.VectorQuery(values=np.asarray(values, dtype=np.float32).reshape(-1).tolist())


def search_options(
    *,
    level: str = "video",
    top_k: int = 10,
    collection: str | None = None,
    tags: Iterable[str] = (),
    min_score: float = 0.0,
    exclude_query_video: bool = False,
    alignment: bool = True,
    regions: str | bool = "auto",
    external_ids: Iterable[str] = (),
    user_metadata: Mapping[str, str] | None = None,
) -> pb.SearchOptions:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
    if isinstance(regions, bool):  # the flag before the modes: on, or explicitly off
        regions = "always" if regions else "never"
    if regions not in REGION_SEARCH:
        raise ValueError(f"regions must be one of {sorted(REGION_SEARCH)}, got {regions!r}")
    return pb.SearchOptions(
        level=LEVELS[level],
        top_k=top_k,
        collection=collection or "",
        tags=list(tags),
        min_score=min_score,
        exclude_query_video=exclude_query_video,
        disable_alignment=not alignment,
        region_search=REGION_SEARCH[regions],
        external_ids=list(external_ids),
        user_metadata=dict(user_metadata or {}),
    )


@dataclass(frozen=True)
class Duplicates:
    """FindDuplicates' answer, its pages put together."""

    groups: list[pb.DuplicateGroup]  # largest first; each with its pairs, best first
    model_version: str
    copy_threshold: float | None  # the verdicts' threshold; None without a calibration
    min_score: float | None  # the pair criterion when given (else the copy verdict)


class SoraClient:
    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls_ca: str | os.PathLike | bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_message_bytes: int = 64 << 20,
        chunk_size: int = CHUNK,
        retry: RetryPolicy | None = None,
    ) -> None:
        """token: sent as `authorization: Bearer <token>` on every call.
        tls_ca: a PEM file (or its bytes) of the CA that signed the server's certificate;
        None: plaintext. timeout: the default deadline of each call in seconds (None: no
        deadline); every method takes `timeout=` to override it. retry: the policy for
        UNAVAILABLE (default RetryPolicy(); NO_RETRIES turns retries off)."""
        self.retry = retry or RetryPolicy()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # The channel's own reconnection after a failure paces like the retries: with
            # gRPC's default (1 s, then longer), a retry soon after a server came back
            # would still fail fast on the broken channel.
            ("grpc.initial_reconnect_backoff_ms", max(1, int(self.retry.initial_backoff_s * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(1, int(self.retry.initial_backoff_s * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(self.retry.max_backoff_s * 1000))),
        ]
        if tls_ca is not None:
            root = tls_ca if isinstance(tls_ca, bytes) else Path(tls_ca).read_bytes()
            creds = grpc.ssl_channel_credentials(root_certificates=root)
            self.channel = grpc.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.stub = sora_pb2_grpc.SoraIndexStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout
        self.chunk_size = chunk_size
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SoraClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _kw(self, timeout: Any) -> dict[str, Any]:
        return {
            "timeout": self.timeout if timeout is _Unset else timeout,
            "metadata": self._auth,
        }

    def _retrying(self, attempt: Callable[[], T], what: str) -> T:
        """attempt() until it returns, or fails with anything but UNAVAILABLE, or the
        policy's attempts are spent (the last error is raised)."""
        for n in range(1, self.retry.max_attempts + 1):
            try:
                return attempt()
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or n == self.retry.max_attempts:
                    raise
                wait = self.retry.backoff(n)
                log.info("%s: UNAVAILABLE (%s); retry %d in %.2f s", what, exc.details(), n, wait)
                self.retry.sleep(wait)
        raise AssertionError("unreachable")

    def _unary(self, rpc: Any, request: Any, timeout: Any, *, retry: bool = True) -> Any:
        """One unary call with the deadline and auth; retried on UNAVAILABLE if `retry`."""
        name = getattr(rpc, "_method", b"call")
        call = lambda: rpc(request, **self._kw(timeout))  # noqa: E731
        return self._retrying(call, str(name)) if retry else call()

    # ------------------------------------------------------------------ health
    def health(self, service: str = "", *, timeout: Any = _Unset) -> str:
        """ "SERVING", "NOT_SERVING", ... (no token needed)."""
        r = self._unary(
            self.health_stub.Check, health_pb2.HealthCheckRequest(service=service), timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def wait_until_serving(self, timeout: float = 60.0, *, poll_s: float = 0.2) -> None:
        """Block until health says SERVING (the index is loaded); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        last: Exception | str | None = None
        while time.monotonic() < deadline:
            try:
                last = self._unary(
                    self.health_stub.Check,
                    health_pb2.HealthCheckRequest(service=""),
                    max(0.5, min(5.0, deadline - time.monotonic())),
                    retry=False,  # this loop is the retry
                )
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(last.status)
                if last == "SERVING":
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(poll_s)
        raise TimeoutError(f"the server is not SERVING after {timeout:.0f} s (last: {last})")

    # ------------------------------------------------------------------ ingest
    def ingest_uri(
        self,
        uri: str,
        *,
        title: str | None = None,
        collection: str | None = None,
        tags: Iterable[str] = (),
        external_id: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        timeout: Any = _Unset,
    ) -> pb.IngestResponse:
        """A server-side path (inside the server's allowed roots) or an allowed URL.
        external_id: the caller's id of the asset (see VideoMetadata in the .proto: the same
        id and bytes again update the metadata; other bytes are ALREADY_EXISTS)."""
        meta = _metadata(title, collection, tags, external_id, user_metadata)
        return self._unary(
            self.stub.IngestUri, pb.IngestUriRequest(uri=uri, metadata=meta), timeout
        )

    def upload(
        self,
        path: str | os.PathLike,
        *,
        title: str | None = None,
        collection: str | None = None,
        tags: Iterable[str] = (),
        external_id: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        timeout: Any = None,
    ) -> pb.IngestResponse:
        """Stream a local file to the server; its name and absolute path go along (the
        video's original_name / original_path). No deadline by default (big files)."""
        p = Path(path)
        size = p.stat().st_size
        meta = pb.UploadMetadata(
            filename=p.name,
            metadata=_metadata(title, collection, tags, external_id, user_metadata),
            size_bytes=size,
            original_path=str(p.absolute()),
        )

        def requests() -> Iterator[pb.UploadVideoRequest]:
            yield pb.UploadVideoRequest(metadata=meta)
            for block in _file_chunks(p, self.chunk_size):
                yield pb.UploadVideoRequest(chunk=block)

        # each attempt reads the file again from its start
        return self._retrying(
            lambda: self.stub.UploadVideo(requests(), **self._kw(timeout)), "UploadVideo"
        )

    def upload_bytes(
        self,
        data: bytes | Iterable[bytes],
        *,
        filename: str = "",
        title: str | None = None,
        collection: str | None = None,
        tags: Iterable[str] = (),
        size_bytes: int = 0,
        external_id: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        original_path: str = "",
        timeout: Any = None,
    ) -> pb.IngestResponse:
        """Upload bytes (or an iterable of chunks) from memory. Not retried."""
        blocks = [data] if isinstance(data, (bytes, bytearray)) else data
        if isinstance(data, (bytes, bytearray)) and not size_bytes:
            size_bytes = len(data)
        meta = pb.UploadMetadata(
            filename=filename,
            metadata=_metadata(title, collection, tags, external_id, user_metadata),
            size_bytes=size_bytes,
            original_path=original_path,
        )

        def requests() -> Iterator[pb.UploadVideoRequest]:
            yield pb.UploadVideoRequest(metadata=meta)
            for block in blocks:
                for i in range(0, len(block), self.chunk_size):
                    yield pb.UploadVideoRequest(chunk=bytes(block[i : i + self.chunk_size]))

        return self.stub.UploadVideo(requests(), **self._kw(timeout))

    def bulk_ingest(
        self,
        uris: Iterable[str] | Iterable[tuple[str, str]] | Mapping[str, str],
        *,
        collection: str | None = None,
        tags: Iterable[str] = (),
        user_metadata: Mapping[str, str] | None = None,
        timeout: Any = _Unset,
    ) -> list[pb.BulkIngestItem]:
        """Per-item results: `item.result` on success, `item.error`/`item.error_code` not.
        uris: a list, or (uri, external_id) pairs / {uri: external_id} to give each one."""
        tags = list(tags)
        pairs = [
            (u, "") if isinstance(u, str) else (u[0], u[1])
            for u in (uris.items() if isinstance(uris, Mapping) else uris)
        ]
        request = pb.BulkIngestRequest(
            videos=[
                pb.IngestUriRequest(
                    uri=u, metadata=_metadata(None, collection, tags, ext, user_metadata)
                )
                for u, ext in pairs
            ]
        )
        return list(self._unary(self.stub.BulkIngest, request, timeout).items)

    # ------------------------------------------------------------------ jobs
    def get_job(self, job_id: int, *, timeout: Any = _Unset) -> pb.Job:
        return self._unary(self.stub.GetJob, pb.GetJobRequest(job_id=job_id), timeout)

    def watch_job(self, job_id: int, *, timeout: float | None = None) -> Iterator[pb.Job]:
        """The job now and at every change until it SUCCEEDED or FAILED (no deadline by
        default; closing the iterator cancels the stream)."""
        call = self.stub.WatchJob(pb.GetJobRequest(job_id=job_id), **self._kw(timeout))
        try:
            yield from call
        finally:
            call.cancel()

    # ------------------------------------------------------------------ videos
    def get_video(self, video_id: int, *, timeout: Any = _Unset) -> pb.Video:
        return self._unary(self.stub.GetVideo, pb.GetVideoRequest(video_id=video_id), timeout)

    def get_video_by_external_id(
        self, external_id: str, *, collection: str | None = None, timeout: Any = _Unset
    ) -> pb.Video:
        """The live video with this external id in `collection` (None: no collection)."""
        request = pb.GetVideoRequest(external_id=external_id, collection=collection or "")
        return self._unary(self.stub.GetVideo, request, timeout)

    def wait_for_jobs(
        self, job_ids: Iterable[int], *, timeout: float | None = None, poll_s: float = 0.5
    ) -> list[pb.Job]:
        """Poll until every job SUCCEEDED or FAILED -> the final jobs, in the order given.
        TimeoutError after `timeout` seconds (None: wait as long as it takes)."""
        final = (pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED)
        ids = [int(j) for j in job_ids]
        done: dict[int, pb.Job] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for job_id in ids:
                if job_id not in done:
                    job = self.get_job(job_id)
                    if job.status in final:
                        done[job_id] = job
            if len(done) == len(ids):
                return [done[j] for j in ids]
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids) - len(done)} of {len(ids)} jobs not done")
            time.sleep(poll_s)

    def list_videos(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        collection: str | None = None,
        tag: str | None = None,
        status: str | None = None,
        external_id: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        timeout: Any = _Unset,
    ) -> pb.ListVideosResponse:
        """One page; pass `next_page_token` back for the next (or use iter_videos).
        status: e.g. "READY"; user_metadata: videos carrying every key=value."""
        request = pb.ListVideosRequest(
            page_size=page_size,
            page_token=page_token,
            collection=collection or "",
            tag=tag or "",
            status=VIDEO_STATUSES[status.upper()] if status else pb.VIDEO_STATUS_UNSPECIFIED,
            external_id=external_id or "",
            user_metadata=dict(user_metadata or {}),
        )
        return self._unary(self.stub.ListVideos, request, timeout)

    def iter_videos(self, *, page_size: int = 200, **filters: Any) -> Iterator[pb.Video]:
        """Every video matching the filters (list_videos' keywords), page after page; each
        page is one call with its own deadline and retries."""
        token = ""
        while True:
            page = self.list_videos(page_size=page_size, page_token=token, **filters)
            yield from page.videos
            token = page.next_page_token
            if not token:
                return

    def delete_video(self, video_id: int, *, timeout: Any = _Unset) -> pb.Video:
        request = pb.DeleteVideoRequest(video_id=video_id)
        return self._unary(self.stub.DeleteVideo, request, timeout).video

    def get_embeddings(
        self, video_id: int, *, model_version: str = "", timeout: Any = _Unset
    ) -> pb.Embeddings:
        request = pb.GetEmbeddingsRequest(video_id=video_id, model_version=model_version)
        return self._unary(self.stub.GetEmbeddings, request, timeout)

    def list_embeddings(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        collection: str | None = None,
        tag: str | None = None,
        user_metadata: Mapping[str, str] | None = None,
        model_version: str = "",
        video_vectors_only: bool = False,
        timeout: Any = _Unset,
    ) -> pb.ListEmbeddingsResponse:
        """One page of READY videos with their vectors and metadata (or iter_embeddings)."""
        request = pb.ListEmbeddingsRequest(
            page_size=page_size,
            page_token=page_token,
            collection=collection or "",
            tag=tag or "",
            user_metadata=dict(user_metadata or {}),
            model_version=model_version,
            video_vectors_only=video_vectors_only,
        )
        return self._unary(self.stub.ListEmbeddings, request, timeout)

    def iter_embeddings(self, *, page_size: int = 0, **filters: Any) -> Iterator[pb.Embeddings]:
        """Every READY video's Embeddings (`.video` its metadata), page after page.
        filters: list_embeddings' keywords. Raises RuntimeError if the served model version
        changes between pages (a reindex finished): the vectors would not mix; start over."""
        token, version = "", None
        while True:
            page = self.list_embeddings(page_size=page_size, page_token=token, **filters)
            if version is not None and page.model_version and page.model_version != version:
                raise RuntimeError(
                    f"the served model version changed from {version} to "
                    f"{page.model_version} while paging: start again (or pass model_version)"
                )
            version = version or page.model_version or None
            yield from page.videos
            token = page.next_page_token
            if not token:
                return

    # ------------------------------------------------------------------ search
    def search(
        self,
        *,
        video_id: int | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        timeout: Any = _Unset,
        **options: Any,
    ) -> pb.SearchResponse:
        """By a video id or a vector (exactly one). options: level ("video"/"segment"),
        top_k, collection, tags, min_score, exclude_query_video, alignment, external_ids
        (only these assets), user_metadata (only videos carrying every key=value)."""
        if (video_id is None) == (vector is None):
            raise ValueError("give exactly one of video_id and vector")
        opts = search_options(**options)
        if video_id is not None:
            request = pb.SearchRequest(video_id=video_id, options=opts)
        else:
            assert vector is not None
            request = pb.SearchRequest(vector=_vector(vector), options=opts)
        return self._unary(self.stub.Search, request, timeout)

    def search_batch(
        self,
        *,
        video_ids: Sequence[int] | None = None,
        vectors: Sequence[Sequence[float]] | np.ndarray | None = None,
        timeout: Any = _Unset,
        **options: Any,
    ) -> list[pb.SearchResponse]:
        """Many queries in one call: video ids or vectors (exactly one; at most 256, the
        server's cap), the same options as search for each. One response per query, in
        order, as search would answer each."""
        request = _batch_request(video_ids, vectors, options, packed=False)
        return list(self._unary(self.stub.SearchBatch, request, timeout).results)

    def search_batch_packed(
        self,
        *,
        video_ids: Sequence[int] | None = None,
        vectors: Sequence[Sequence[float]] | np.ndarray | None = None,
        timeout: Any = _Unset,
        **options: Any,
    ) -> pb.PackedHits:
        """search_batch's hits as columns (bulk jobs: ids and scores, no Video per hit).
        Query i's hits are entries offsets[i]:offsets[i + 1] of each per-hit column, e.g.
        np.asarray(packed.video_ids)[packed.offsets[i]:packed.offsets[i + 1]]."""
        request = _batch_request(video_ids, vectors, options, packed=True)
        response = self._unary(self.stub.SearchBatch, request, timeout)
        if not response.HasField("packed"):  # a server that predates `packed` ignores it
            raise RuntimeError("the server answered SearchBatch without packed hits: it is "
                               "older than this client; use search_batch")  # fmt: skip
        return response.packed

    def search_by_clip(
        self, path: str | os.PathLike, *, timeout: Any = _Unset, **options: Any
    ) -> pb.SearchResponse:
        """Upload a clip; the server embeds it and searches (same options as search)."""
        p = Path(path)
        meta = pb.ClipQueryMetadata(
            filename=p.name, options=search_options(**options), size_bytes=p.stat().st_size
        )

        def requests() -> Iterator[pb.SearchByClipRequest]:
            yield pb.SearchByClipRequest(metadata=meta)
            for block in _file_chunks(p, self.chunk_size):
                yield pb.SearchByClipRequest(chunk=block)

        return self._retrying(
            lambda: self.stub.SearchByClip(requests(), **self._kw(timeout)), "SearchByClip"
        )

    # ------------------------------------------------------------------ classifiers
    def train_classifier(
        self,
        name: str,
        examples: Mapping[int, str] | Iterable[tuple[int, str]],
        *,
        holdout_fraction: float = 0.0,
        seed: int = 0,
        timeout: Any = _Unset,
    ) -> pb.Classifier:
        """examples: {video_id: label} or (video_id, label) pairs."""
        pairs = examples.items() if isinstance(examples, Mapping) else examples
        request = pb.TrainClassifierRequest(
            name=name,
            examples=[pb.LabelledVideo(video_id=v, label=label) for v, label in pairs],
            holdout_fraction=holdout_fraction,
            seed=seed,
        )
        return self._unary(self.stub.TrainClassifier, request, timeout, retry=False)

    def list_classifiers(self, *, timeout: Any = _Unset) -> list[pb.Classifier]:
        r = self._unary(self.stub.ListClassifiers, pb.ListClassifiersRequest(), timeout)
        return list(r.classifiers)

    def classify(
        self,
        classifier: str,
        *,
        video_id: int | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        timeout: Any = _Unset,
    ) -> list[tuple[str, float]]:
        """[(label, probability)], most probable first."""
        r = self.classify_raw(classifier, video_id=video_id, vector=vector, timeout=timeout)
        return [(s.label, s.probability) for s in r.labels]

    def classify_raw(
        self,
        classifier: str,
        *,
        video_id: int | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        timeout: Any = _Unset,
    ) -> pb.ClassifyResponse:
        """The ClassifyResponse (labels and the classifier's model version)."""
        if (video_id is None) == (vector is None):
            raise ValueError("give exactly one of video_id and vector")
        if video_id is not None:
            request = pb.ClassifyRequest(classifier=classifier, video_id=video_id)
        else:
            assert vector is not None
            request = pb.ClassifyRequest(classifier=classifier, vector=_vector(vector))
        return self._unary(self.stub.Classify, request, timeout)

    # ------------------------------------------------------------------ duplicates
    def find_duplicates(
        self,
        *,
        collection: str | None = None,
        min_score: float | None = None,
        top_k: int = 10,
        page_size: int = 0,
        refine: bool = True,
        on_progress: Callable[[pb.DuplicatesProgress], None] | None = None,
        timeout: float | None = None,
    ) -> Duplicates:
        """Groups of videos that are copies of each other or share segments (FindDuplicates).
        min_score None: pairs by the model's copy verdict. on_progress is called with each
        progress message as it streams in. No deadline by default: the call searches the
        whole library (README "Duplicates" says how long that takes)."""
        request = pb.FindDuplicatesRequest(
            collection=collection or "",
            min_score=min_score or 0.0,
            top_k=top_k,
            page_size=page_size,
            disable_refinement=not refine,
        )
        groups: list[pb.DuplicateGroup] = []
        last: pb.DuplicateGroupsPage | None = None
        for message in self.stub.FindDuplicates(request, timeout=timeout, metadata=self._auth):
            if message.WhichOneof("part") == "progress":
                if on_progress is not None:
                    on_progress(message.progress)
            else:
                last = message.page
                groups.extend(last.groups)
        if last is None or not last.last:
            raise RuntimeError("FindDuplicates ended before its last page")
        return Duplicates(
            groups=groups,
            model_version=last.model_version,
            copy_threshold=last.copy_threshold if last.HasField("copy_threshold") else None,
            min_score=last.min_score or None,
        )
