"""The SoraIndex servicer: proto in, one call to a service class, proto out.

Status codes come from `errors.status_of`, applied to every method of the service
descriptor by `with_status_codes`; nothing here catches or aborts by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from services.api import converters as cv
from services.api.gen.sora.v1 import sora_pb2 as pb
from services.api.gen.sora.v1 import sora_pb2_grpc
from services.errors import InvalidArgumentError

from .call import Call
from .classifier_service import ClassifierService
from .duplicate_service import DuplicateService, DuplicatesProgress
from .errors import with_status_codes
from .ingest_service import IngestService
from .limits import StreamGuard
from .search_service import SearchService
from .video_service import JobService, VideoService

SERVICE = pb.DESCRIPTOR.services_by_name["SoraIndex"]


@dataclass
class Services:
    ingest: IngestService
    videos: VideoService
    jobs: JobService
    search: SearchService
    classifiers: ClassifierService
    duplicates: DuplicateService


def _split_stream(requests: Iterator[Any], what: str) -> tuple[Any, Iterator[bytes]]:
    """(the first message's metadata, an iterator over the following chunks) of a
    client stream whose messages are `oneof part { metadata; chunk }`."""
    requests = iter(requests)
    first = next(requests, None)
    if first is None or first.WhichOneof("part") != "metadata":
        raise InvalidArgumentError(
            f"{what}: the first message must carry `metadata`, then `chunk`s"
        )

    def chunks() -> Iterator[bytes]:
        for message in requests:
            if message.WhichOneof("part") != "chunk":
                raise InvalidArgumentError(f"{what}: `metadata` may only come first")
            yield message.chunk

    return first.metadata, chunks()


def _vector(q: pb.VectorQuery) -> Any:
    return cv.vector_from_pb(q.values)


@with_status_codes(SERVICE)
class SoraIndexServicer(sora_pb2_grpc.SoraIndexServicer):
    def __init__(self, services: Services, stream_guard: StreamGuard | None = None) -> None:
        self.s = services
        self.guard = stream_guard

    def _client_stream(self, requests: Iterator[Any], context: grpc.ServicerContext, what: str):
        """_split_stream of `requests`, cut off by the guard when the client stalls."""
        if self.guard is not None:
            requests = self.guard.guard(requests, context)
        return _split_stream(requests, what)

    # ---- ingest
    def IngestUri(self, request: pb.IngestUriRequest, context: grpc.ServicerContext):
        video = cv.new_video_from_pb(request.uri, request.metadata)
        return cv.ingest_to_pb(self.s.ingest.ingest_uri(video, Call.of(context)))

    def UploadVideo(self, request_iterator: Iterator[Any], context: grpc.ServicerContext):
        meta, chunks = self._client_stream(request_iterator, context, "UploadVideo")
        video = cv.new_video_from_pb(meta.filename, meta.metadata, meta.original_path)
        result = self.s.ingest.upload(
            video, chunks, declared_size=meta.size_bytes or None, call=Call.of(context)
        )
        return cv.ingest_to_pb(result)

    def BulkIngest(self, request: pb.BulkIngestRequest, context: grpc.ServicerContext):
        videos = [cv.new_video_from_pb(v.uri, v.metadata) for v in request.videos]
        items = self.s.ingest.bulk(videos, Call.of(context))
        return pb.BulkIngestResponse(items=[cv.bulk_item_to_pb(i) for i in items])

    # ---- jobs
    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext):
        return cv.job_to_pb(self.s.jobs.get(request.job_id))

    def WatchJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext):
        for job in self.s.jobs.watch(request.job_id, Call.of(context)):
            yield cv.job_to_pb(job)

    # ---- videos
    def GetVideo(self, request: pb.GetVideoRequest, context: grpc.ServicerContext):
        if request.external_id:
            if request.video_id:
                raise InvalidArgumentError("give `video_id` or `external_id`, not both")
            video = self.s.videos.get_by_external_id(
                request.external_id, request.collection or None
            )
            return cv.video_to_pb(video)
        return cv.video_to_pb(self.s.videos.get(request.video_id))

    def ListVideos(self, request: pb.ListVideosRequest, context: grpc.ServicerContext):
        videos, token = self.s.videos.list(
            page_size=request.page_size,
            page_token=request.page_token or None,
            collection=request.collection or None,
            tag=request.tag or None,
            status=cv.video_status_from_pb(request.status),
            external_id=request.external_id or None,
            user_metadata=dict(request.user_metadata),
        )
        return pb.ListVideosResponse(
            videos=[cv.video_to_pb(v) for v in videos], next_page_token=token or ""
        )

    def DeleteVideo(self, request: pb.DeleteVideoRequest, context: grpc.ServicerContext):
        return pb.DeleteVideoResponse(video=cv.video_to_pb(self.s.videos.delete(request.video_id)))

    def GetEmbeddings(self, request: pb.GetEmbeddingsRequest, context: grpc.ServicerContext):
        view = self.s.videos.embeddings(request.video_id, request.model_version or None)
        return cv.embeddings_to_pb(view)

    def ListEmbeddings(self, request: pb.ListEmbeddingsRequest, context: grpc.ServicerContext):
        page = self.s.videos.list_embeddings(
            page_size=request.page_size,
            page_token=request.page_token or None,
            model_version=request.model_version or None,
            with_segments=not request.video_vectors_only,
            collection=request.collection or None,
            tag=request.tag or None,
            user_metadata=dict(request.user_metadata),
        )
        return pb.ListEmbeddingsResponse(
            videos=[cv.embeddings_to_pb(v) for v in page.videos],
            next_page_token=page.next_page_token or "",
            model_version=page.model_version or "",
        )

    # ---- search
    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext):
        options = cv.search_options_from_pb(request.options)
        which = request.WhichOneof("query")
        if which == "video_id":
            result = self.s.search.search_video(request.video_id, options, Call.of(context))
        elif which == "vector":
            result = self.s.search.search_vector(_vector(request.vector), options, Call.of(context))
        else:
            raise InvalidArgumentError("the query is missing: set `video_id` or `vector`")
        return cv.search_to_pb(result)

    def SearchBatch(self, request: pb.SearchBatchRequest, context: grpc.ServicerContext):
        options = cv.search_options_from_pb(request.options)
        if request.vectors and request.video_ids:
            raise InvalidArgumentError("give `vectors` or `video_ids`, not both")
        search = self.s.search
        if request.video_ids:
            queries: list[Any] = list(request.video_ids)
            by = search.search_videos_packed if request.packed else search.search_videos
        else:
            queries = [_vector(v) for v in request.vectors]
            by = search.search_vectors_packed if request.packed else search.search_vectors
        answer = by(queries, options, Call.of(context))
        if request.packed:
            return pb.SearchBatchResponse(packed=cv.packed_hits_to_pb(answer))
        return cv.search_batch_to_pb(answer)

    def SearchByClip(self, request_iterator: Iterator[Any], context: grpc.ServicerContext):
        meta, chunks = self._client_stream(request_iterator, context, "SearchByClip")
        result = self.s.search.search_clip(
            chunks,
            cv.search_options_from_pb(meta.options),
            declared_size=meta.size_bytes or None,
            call=Call.of(context),
        )
        return cv.search_to_pb(result)

    # ---- classifiers
    def TrainClassifier(self, request: pb.TrainClassifierRequest, context: grpc.ServicerContext):
        row = self.s.classifiers.train(
            request.name,
            [(e.video_id, e.label) for e in request.examples],
            holdout_fraction=request.holdout_fraction or None,
            seed=request.seed,
            call=Call.of(context),
        )
        return cv.classifier_to_pb(row)

    def ListClassifiers(self, request: pb.ListClassifiersRequest, context: grpc.ServicerContext):
        rows = self.s.classifiers.list()
        return pb.ListClassifiersResponse(classifiers=[cv.classifier_to_pb(c) for c in rows])

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext):
        if not request.classifier:
            raise InvalidArgumentError("name the classifier (`classifier`)")
        which = request.WhichOneof("input")
        if which == "video_id":
            labels, version = self.s.classifiers.classify_video(
                request.classifier, request.video_id
            )
        elif which == "vector":
            labels, version = self.s.classifiers.classify_vector(
                request.classifier, _vector(request.vector)
            )
        else:
            raise InvalidArgumentError("the input is missing: set `video_id` or `vector`")
        return cv.classify_to_pb(labels, version)

    # ---- duplicates
    def FindDuplicates(self, request: pb.FindDuplicatesRequest, context: grpc.ServicerContext):
        page_size = cv.duplicates_page_size(request.page_size)
        for event in self.s.duplicates.find(cv.duplicates_request_from_pb(request),
                                            Call.of(context)):  # fmt: skip
            if isinstance(event, DuplicatesProgress):
                yield pb.FindDuplicatesResponse(progress=cv.duplicates_progress_to_pb(event))
            else:
                for page in cv.duplicate_pages(event, page_size):
                    yield pb.FindDuplicatesResponse(page=page)
