"""A Python client for the SoraIndex API: one method per RPC.

    with SoraClient("127.0.0.1:50051", token=os.environ.get("SORA_API_TOKEN")) as c:
        r = c.upload("clip.mp4", collection="holiday", tags=["2026"])   # IngestResponse
        for job in c.watch_job(r.job_id): print(job.segments_done, job.segments_total)
        hits = c.search(video_id=r.video_id, top_k=5).hits

Methods return the proto messages (`services.api.gen.sora.v1.sora_pb2`) or plain Python
values; failures raise grpc.RpcError with the server's status code and message
(`err.code()`, `err.details()`). Uploads stream the file in chunks (1 MiB by default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _metadata(title: str | None, collection: str | None, tags: Iterable[str]) -> pb.VideoMetadata:
    return pb.VideoMetadata(title=title or "", collection=collection or "", tags=list(tags))


def _file_chunks(path: Path, chunk_size: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            yield block


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
    regions: str = "auto",
) -> pb.SearchOptions:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
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
        max_message_bytes: int = 16 << 20,
        chunk_size: int = CHUNK,
    ) -> None:
        """token: sent as `authorization: Bearer <token>` on every call.
        tls_ca: a PEM file (or its bytes) of the CA that signed the server's certificate;
        None: plaintext. timeout: the default deadline of each call in seconds (None: no
        deadline); every method takes `timeout=` to override it."""
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
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

    # ------------------------------------------------------------------ health
    def health(self, service: str = "", *, timeout: Any = _Unset) -> str:
        """ "SERVING", "NOT_SERVING", ... (no token needed)."""
        r = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), **self._kw(timeout)
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def wait_until_serving(self, timeout: float = 60.0, *, poll_s: float = 0.2) -> None:
        """Block until health says SERVING (the index is loaded); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        last: Exception | str | None = None
        while time.monotonic() < deadline:
            try:
                last = self.health(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
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
        timeout: Any = _Unset,
    ) -> pb.IngestResponse:
        """A server-side path (inside the server's allowed roots) or an allowed URL."""
        request = pb.IngestUriRequest(uri=uri, metadata=_metadata(title, collection, tags))
        return self.stub.IngestUri(request, **self._kw(timeout))

    def upload(
        self,
        path: str | os.PathLike,
        *,
        title: str | None = None,
        collection: str | None = None,
        tags: Iterable[str] = (),
        timeout: Any = None,
    ) -> pb.IngestResponse:
        """Stream a local file to the server. No deadline by default (big files)."""
        p = Path(path)
        size = p.stat().st_size
        meta = pb.UploadMetadata(
            filename=p.name, metadata=_metadata(title, collection, tags), size_bytes=size
        )

        def requests() -> Iterator[pb.UploadVideoRequest]:
            yield pb.UploadVideoRequest(metadata=meta)
            for block in _file_chunks(p, self.chunk_size):
                yield pb.UploadVideoRequest(chunk=block)

        return self.stub.UploadVideo(requests(), **self._kw(timeout))

    def upload_bytes(
        self,
        data: bytes | Iterable[bytes],
        *,
        filename: str = "",
        title: str | None = None,
        collection: str | None = None,
        tags: Iterable[str] = (),
        size_bytes: int = 0,
        timeout: Any = None,
    ) -> pb.IngestResponse:
        """Upload bytes (or an iterable of chunks) from memory."""
        blocks = [data] if isinstance(data, (bytes, bytearray)) else data
        if isinstance(data, (bytes, bytearray)) and not size_bytes:
            size_bytes = len(data)
        meta = pb.UploadMetadata(
            filename=filename, metadata=_metadata(title, collection, tags), size_bytes=size_bytes
        )

        def requests() -> Iterator[pb.UploadVideoRequest]:
            yield pb.UploadVideoRequest(metadata=meta)
            for block in blocks:
                for i in range(0, len(block), self.chunk_size):
                    yield pb.UploadVideoRequest(chunk=bytes(block[i : i + self.chunk_size]))

        return self.stub.UploadVideo(requests(), **self._kw(timeout))

    def bulk_ingest(
        self,
        uris: Iterable[str],
        *,
        collection: str | None = None,
        tags: Iterable[str] = (),
        timeout: Any = _Unset,
    ) -> list[pb.BulkIngestItem]:
        """Per-item results: `item.result` on success, `item.error`/`item.error_code` not."""
        tags = list(tags)
        request = pb.BulkIngestRequest(
            videos=[
                pb.IngestUriRequest(uri=u, metadata=_metadata(None, collection, tags)) for u in uris
            ]
        )
        return list(self.stub.BulkIngest(request, **self._kw(timeout)).items)

    # ------------------------------------------------------------------ jobs
    def get_job(self, job_id: int, *, timeout: Any = _Unset) -> pb.Job:
        return self.stub.GetJob(pb.GetJobRequest(job_id=job_id), **self._kw(timeout))

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
        return self.stub.GetVideo(pb.GetVideoRequest(video_id=video_id), **self._kw(timeout))

    def list_videos(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        collection: str | None = None,
        tag: str | None = None,
        status: str | None = None,
        timeout: Any = _Unset,
    ) -> pb.ListVideosResponse:
        """One page; pass `next_page_token` back for the next. status: e.g. "READY"."""
        request = pb.ListVideosRequest(
            page_size=page_size,
            page_token=page_token,
            collection=collection or "",
            tag=tag or "",
            status=VIDEO_STATUSES[status.upper()] if status else pb.VIDEO_STATUS_UNSPECIFIED,
        )
        return self.stub.ListVideos(request, **self._kw(timeout))

    def iter_videos(self, *, page_size: int = 200, **filters: Any) -> Iterator[pb.Video]:
        """Every video matching the filters, page after page."""
        token = ""
        while True:
            page = self.list_videos(page_size=page_size, page_token=token, **filters)
            yield from page.videos
            token = page.next_page_token
            if not token:
                return

    def delete_video(self, video_id: int, *, timeout: Any = _Unset) -> pb.Video:
        request = pb.DeleteVideoRequest(video_id=video_id)
        return self.stub.DeleteVideo(request, **self._kw(timeout)).video

    def get_embeddings(
        self, video_id: int, *, model_version: str = "", timeout: Any = _Unset
    ) -> pb.Embeddings:
        request = pb.GetEmbeddingsRequest(video_id=video_id, model_version=model_version)
        return self.stub.GetEmbeddings(request, **self._kw(timeout))

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
        top_k, collection, tags, min_score, exclude_query_video, alignment."""
        if (video_id is None) == (vector is None):
            raise ValueError("give exactly one of video_id and vector")
        opts = search_options(**options)
        if video_id is not None:
            request = pb.SearchRequest(video_id=video_id, options=opts)
        else:
            assert vector is not None
            request = pb.SearchRequest(vector=_vector(vector), options=opts)
        return self.stub.Search(request, **self._kw(timeout))

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
        if (video_ids is None) == (vectors is None):
            raise ValueError("give exactly one of video_ids and vectors")
        opts = search_options(**options)
        if video_ids is not None:
            request = pb.SearchBatchRequest(video_ids=[int(v) for v in video_ids], options=opts)
        else:
            assert vectors is not None
            request = pb.SearchBatchRequest(vectors=[_vector(v) for v in vectors], options=opts)
        return list(self.stub.SearchBatch(request, **self._kw(timeout)).results)

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

        return self.stub.SearchByClip(requests(), **self._kw(timeout))

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
        return self.stub.TrainClassifier(request, **self._kw(timeout))

    def list_classifiers(self, *, timeout: Any = _Unset) -> list[pb.Classifier]:
        r = self.stub.ListClassifiers(pb.ListClassifiersRequest(), **self._kw(timeout))
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
        return self.stub.Classify(request, **self._kw(timeout))

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
