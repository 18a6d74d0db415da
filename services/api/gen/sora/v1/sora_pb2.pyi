from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VideoStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_STATUS_UNSPECIFIED: _ClassVar[VideoStatus]
    VIDEO_STATUS_PENDING: _ClassVar[VideoStatus]
    VIDEO_STATUS_PROCESSING: _ClassVar[VideoStatus]
    VIDEO_STATUS_READY: _ClassVar[VideoStatus]
    VIDEO_STATUS_FAILED: _ClassVar[VideoStatus]
    VIDEO_STATUS_DELETED: _ClassVar[VideoStatus]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]

class SearchLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_LEVEL_UNSPECIFIED: _ClassVar[SearchLevel]
    SEARCH_LEVEL_VIDEO: _ClassVar[SearchLevel]
    SEARCH_LEVEL_SEGMENT: _ClassVar[SearchLevel]

class RegionSearch(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGION_SEARCH_UNSPECIFIED: _ClassVar[RegionSearch]
    REGION_SEARCH_AUTO: _ClassVar[RegionSearch]
    REGION_SEARCH_ALWAYS: _ClassVar[RegionSearch]
    REGION_SEARCH_NEVER: _ClassVar[RegionSearch]
VIDEO_STATUS_UNSPECIFIED: VideoStatus
VIDEO_STATUS_PENDING: VideoStatus
VIDEO_STATUS_PROCESSING: VideoStatus
VIDEO_STATUS_READY: VideoStatus
VIDEO_STATUS_FAILED: VideoStatus
VIDEO_STATUS_DELETED: VideoStatus
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
SEARCH_LEVEL_UNSPECIFIED: SearchLevel
SEARCH_LEVEL_VIDEO: SearchLevel
SEARCH_LEVEL_SEGMENT: SearchLevel
REGION_SEARCH_UNSPECIFIED: RegionSearch
REGION_SEARCH_AUTO: RegionSearch
REGION_SEARCH_ALWAYS: RegionSearch
REGION_SEARCH_NEVER: RegionSearch

class Video(_message.Message):
    __slots__ = ("id", "uri", "content_sha256", "size_bytes", "status", "error", "duration_s", "fps", "width", "height", "rotation", "codec", "title", "collection", "tags", "created_at", "content_box", "external_id", "user_metadata", "original_name", "original_path")
    class UserMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_BOX_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_METADATA_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_NAME_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_PATH_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    content_sha256: str
    size_bytes: int
    status: VideoStatus
    error: str
    duration_s: float
    fps: float
    width: int
    height: int
    rotation: int
    codec: str
    title: str
    collection: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    created_at: str
    content_box: str
    external_id: str
    user_metadata: _containers.ScalarMap[str, str]
    original_name: str
    original_path: str
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., content_sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., status: _Optional[_Union[VideoStatus, str]] = ..., error: _Optional[str] = ..., duration_s: _Optional[float] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., rotation: _Optional[int] = ..., codec: _Optional[str] = ..., title: _Optional[str] = ..., collection: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., created_at: _Optional[str] = ..., content_box: _Optional[str] = ..., external_id: _Optional[str] = ..., user_metadata: _Optional[_Mapping[str, str]] = ..., original_name: _Optional[str] = ..., original_path: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "video_id", "kind", "status", "attempts", "error", "segments_done", "segments_total", "queued_at", "started_at", "finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_DONE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    QUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    video_id: int
    kind: str
    status: JobStatus
    attempts: int
    error: str
    segments_done: int
    segments_total: int
    queued_at: str
    started_at: str
    finished_at: str
    def __init__(self, id: _Optional[int] = ..., video_id: _Optional[int] = ..., kind: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., segments_done: _Optional[int] = ..., segments_total: _Optional[int] = ..., queued_at: _Optional[str] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ...) -> None: ...

class VideoMetadata(_message.Message):
    __slots__ = ("title", "collection", "tags", "external_id", "user_metadata")
    class UserMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_METADATA_FIELD_NUMBER: _ClassVar[int]
    title: str
    collection: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    external_id: str
    user_metadata: _containers.ScalarMap[str, str]
    def __init__(self, title: _Optional[str] = ..., collection: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., external_id: _Optional[str] = ..., user_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class IngestUriRequest(_message.Message):
    __slots__ = ("uri", "metadata")
    URI_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    uri: str
    metadata: VideoMetadata
    def __init__(self, uri: _Optional[str] = ..., metadata: _Optional[_Union[VideoMetadata, _Mapping]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("video_id", "job_id", "created", "status")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    job_id: int
    created: bool
    status: VideoStatus
    def __init__(self, video_id: _Optional[int] = ..., job_id: _Optional[int] = ..., created: _Optional[bool] = ..., status: _Optional[_Union[VideoStatus, str]] = ...) -> None: ...

class UploadMetadata(_message.Message):
    __slots__ = ("filename", "metadata", "size_bytes", "original_path")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_PATH_FIELD_NUMBER: _ClassVar[int]
    filename: str
    metadata: VideoMetadata
    size_bytes: int
    original_path: str
    def __init__(self, filename: _Optional[str] = ..., metadata: _Optional[_Union[VideoMetadata, _Mapping]] = ..., size_bytes: _Optional[int] = ..., original_path: _Optional[str] = ...) -> None: ...

class UploadVideoRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: UploadMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[UploadMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class BulkIngestRequest(_message.Message):
    __slots__ = ("videos",)
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[IngestUriRequest]
    def __init__(self, videos: _Optional[_Iterable[_Union[IngestUriRequest, _Mapping]]] = ...) -> None: ...

class BulkIngestItem(_message.Message):
    __slots__ = ("uri", "result", "error", "error_code")
    URI_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    result: IngestResponse
    error: str
    error_code: str
    def __init__(self, uri: _Optional[str] = ..., result: _Optional[_Union[IngestResponse, _Mapping]] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ...) -> None: ...

class BulkIngestResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BulkIngestItem]
    def __init__(self, items: _Optional[_Iterable[_Union[BulkIngestItem, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class GetVideoRequest(_message.Message):
    __slots__ = ("video_id", "external_id", "collection")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    external_id: str
    collection: str
    def __init__(self, video_id: _Optional[int] = ..., external_id: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ListVideosRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "collection", "tag", "status", "external_id", "user_metadata")
    class UserMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_METADATA_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    collection: str
    tag: str
    status: VideoStatus
    external_id: str
    user_metadata: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., collection: _Optional[str] = ..., tag: _Optional[str] = ..., status: _Optional[_Union[VideoStatus, str]] = ..., external_id: _Optional[str] = ..., user_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListVideosResponse(_message.Message):
    __slots__ = ("videos", "next_page_token")
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[Video]
    next_page_token: str
    def __init__(self, videos: _Optional[_Iterable[_Union[Video, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteVideoRequest(_message.Message):
    __slots__ = ("video_id",)
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    def __init__(self, video_id: _Optional[int] = ...) -> None: ...

class DeleteVideoResponse(_message.Message):
    __slots__ = ("video",)
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    video: Video
    def __init__(self, video: _Optional[_Union[Video, _Mapping]] = ...) -> None: ...

class GetEmbeddingsRequest(_message.Message):
    __slots__ = ("video_id", "model_version")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    model_version: str
    def __init__(self, video_id: _Optional[int] = ..., model_version: _Optional[str] = ...) -> None: ...

class SegmentEmbedding(_message.Message):
    __slots__ = ("segment_id", "index", "start_s", "end_s", "vector")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    index: int
    start_s: float
    end_s: float
    vector: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, segment_id: _Optional[int] = ..., index: _Optional[int] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., vector: _Optional[_Iterable[float]] = ...) -> None: ...

class Embeddings(_message.Message):
    __slots__ = ("video_id", "model_version", "video_vector", "segments", "video")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VIDEO_VECTOR_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    model_version: str
    video_vector: _containers.RepeatedScalarFieldContainer[float]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentEmbedding]
    video: Video
    def __init__(self, video_id: _Optional[int] = ..., model_version: _Optional[str] = ..., video_vector: _Optional[_Iterable[float]] = ..., segments: _Optional[_Iterable[_Union[SegmentEmbedding, _Mapping]]] = ..., video: _Optional[_Union[Video, _Mapping]] = ...) -> None: ...

class SearchOptions(_message.Message):
    __slots__ = ("level", "top_k", "collection", "tags", "min_score", "exclude_query_video", "disable_alignment", "query_regions", "region_search", "external_ids", "user_metadata")
    class UserMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_QUERY_VIDEO_FIELD_NUMBER: _ClassVar[int]
    DISABLE_ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    QUERY_REGIONS_FIELD_NUMBER: _ClassVar[int]
    REGION_SEARCH_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    USER_METADATA_FIELD_NUMBER: _ClassVar[int]
    level: SearchLevel
    top_k: int
    collection: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    min_score: float
    exclude_query_video: bool
    disable_alignment: bool
    query_regions: bool
    region_search: RegionSearch
    external_ids: _containers.RepeatedScalarFieldContainer[str]
    user_metadata: _containers.ScalarMap[str, str]
    def __init__(self, level: _Optional[_Union[SearchLevel, str]] = ..., top_k: _Optional[int] = ..., collection: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., min_score: _Optional[float] = ..., exclude_query_video: _Optional[bool] = ..., disable_alignment: _Optional[bool] = ..., query_regions: _Optional[bool] = ..., region_search: _Optional[_Union[RegionSearch, str]] = ..., external_ids: _Optional[_Iterable[str]] = ..., user_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class VectorQuery(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("video_id", "vector", "options")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    vector: VectorQuery
    options: SearchOptions
    def __init__(self, video_id: _Optional[int] = ..., vector: _Optional[_Union[VectorQuery, _Mapping]] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("vectors", "video_ids", "options", "packed")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[VectorQuery]
    video_ids: _containers.RepeatedScalarFieldContainer[int]
    options: SearchOptions
    packed: bool
    def __init__(self, vectors: _Optional[_Iterable[_Union[VectorQuery, _Mapping]]] = ..., video_ids: _Optional[_Iterable[int]] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ..., packed: _Optional[bool] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("results", "packed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    packed: PackedHits
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ..., packed: _Optional[_Union[PackedHits, _Mapping]] = ...) -> None: ...

class PackedHits(_message.Message):
    __slots__ = ("offsets", "video_ids", "segment_ids", "scores", "target_start_s", "target_end_s", "aligned", "copy_scores", "is_copy", "candidates", "model_version", "copy_threshold")
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TARGET_START_S_FIELD_NUMBER: _ClassVar[int]
    TARGET_END_S_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_FIELD_NUMBER: _ClassVar[int]
    COPY_SCORES_FIELD_NUMBER: _ClassVar[int]
    IS_COPY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COPY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedScalarFieldContainer[int]
    video_ids: _containers.RepeatedScalarFieldContainer[int]
    segment_ids: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    target_start_s: _containers.RepeatedScalarFieldContainer[float]
    target_end_s: _containers.RepeatedScalarFieldContainer[float]
    aligned: _containers.RepeatedScalarFieldContainer[bool]
    copy_scores: _containers.RepeatedScalarFieldContainer[float]
    is_copy: _containers.RepeatedScalarFieldContainer[bool]
    candidates: _containers.RepeatedScalarFieldContainer[int]
    model_version: str
    copy_threshold: float
    def __init__(self, offsets: _Optional[_Iterable[int]] = ..., video_ids: _Optional[_Iterable[int]] = ..., segment_ids: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., target_start_s: _Optional[_Iterable[float]] = ..., target_end_s: _Optional[_Iterable[float]] = ..., aligned: _Optional[_Iterable[bool]] = ..., copy_scores: _Optional[_Iterable[float]] = ..., is_copy: _Optional[_Iterable[bool]] = ..., candidates: _Optional[_Iterable[int]] = ..., model_version: _Optional[str] = ..., copy_threshold: _Optional[float] = ...) -> None: ...

class ClipQueryMetadata(_message.Message):
    __slots__ = ("filename", "options", "size_bytes")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    filename: str
    options: SearchOptions
    size_bytes: int
    def __init__(self, filename: _Optional[str] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class SearchByClipRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: ClipQueryMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[ClipQueryMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start_s", "end_s")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("score", "video", "segment_id", "target", "query", "aligned", "alignment_score", "copy_score", "is_copy")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_SCORE_FIELD_NUMBER: _ClassVar[int]
    COPY_SCORE_FIELD_NUMBER: _ClassVar[int]
    IS_COPY_FIELD_NUMBER: _ClassVar[int]
    score: float
    video: Video
    segment_id: int
    target: TimeRange
    query: TimeRange
    aligned: bool
    alignment_score: float
    copy_score: float
    is_copy: bool
    def __init__(self, score: _Optional[float] = ..., video: _Optional[_Union[Video, _Mapping]] = ..., segment_id: _Optional[int] = ..., target: _Optional[_Union[TimeRange, _Mapping]] = ..., query: _Optional[_Union[TimeRange, _Mapping]] = ..., aligned: _Optional[bool] = ..., alignment_score: _Optional[float] = ..., copy_score: _Optional[float] = ..., is_copy: _Optional[bool] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "model_version", "candidates", "copy_threshold", "regions_searched")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    COPY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REGIONS_SEARCHED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    model_version: str
    candidates: int
    copy_threshold: float
    regions_searched: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., model_version: _Optional[str] = ..., candidates: _Optional[int] = ..., copy_threshold: _Optional[float] = ..., regions_searched: _Optional[bool] = ...) -> None: ...

class ListEmbeddingsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "collection", "tag", "user_metadata", "model_version", "video_vectors_only")
    class UserMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    USER_METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VIDEO_VECTORS_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    collection: str
    tag: str
    user_metadata: _containers.ScalarMap[str, str]
    model_version: str
    video_vectors_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., collection: _Optional[str] = ..., tag: _Optional[str] = ..., user_metadata: _Optional[_Mapping[str, str]] = ..., model_version: _Optional[str] = ..., video_vectors_only: _Optional[bool] = ...) -> None: ...

class ListEmbeddingsResponse(_message.Message):
    __slots__ = ("videos", "next_page_token", "model_version")
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[Embeddings]
    next_page_token: str
    model_version: str
    def __init__(self, videos: _Optional[_Iterable[_Union[Embeddings, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class LabelledVideo(_message.Message):
    __slots__ = ("video_id", "label")
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    video_id: int
    label: str
    def __init__(self, video_id: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class TrainClassifierRequest(_message.Message):
    __slots__ = ("name", "examples", "holdout_fraction", "seed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    name: str
    examples: _containers.RepeatedCompositeFieldContainer[LabelledVideo]
    holdout_fraction: float
    seed: int
    def __init__(self, name: _Optional[str] = ..., examples: _Optional[_Iterable[_Union[LabelledVideo, _Mapping]]] = ..., holdout_fraction: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class Classifier(_message.Message):
    __slots__ = ("id", "name", "labels", "model_version", "train_examples", "holdout_examples", "holdout_accuracy", "holdout_macro_f1", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    train_examples: int
    holdout_examples: int
    holdout_accuracy: float
    holdout_macro_f1: float
    created_at: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., train_examples: _Optional[int] = ..., holdout_examples: _Optional[int] = ..., holdout_accuracy: _Optional[float] = ..., holdout_macro_f1: _Optional[float] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListClassifiersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClassifiersResponse(_message.Message):
    __slots__ = ("classifiers",)
    CLASSIFIERS_FIELD_NUMBER: _ClassVar[int]
    classifiers: _containers.RepeatedCompositeFieldContainer[Classifier]
    def __init__(self, classifiers: _Optional[_Iterable[_Union[Classifier, _Mapping]]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("classifier", "video_id", "vector")
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    VIDEO_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    classifier: str
    video_id: int
    vector: VectorQuery
    def __init__(self, classifier: _Optional[str] = ..., video_id: _Optional[int] = ..., vector: _Optional[_Union[VectorQuery, _Mapping]] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("labels", "model_version")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[LabelScore]
    model_version: str
    def __init__(self, labels: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class FindDuplicatesRequest(_message.Message):
    __slots__ = ("collection", "min_score", "top_k", "page_size", "disable_refinement")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISABLE_REFINEMENT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    min_score: float
    top_k: int
    page_size: int
    disable_refinement: bool
    def __init__(self, collection: _Optional[str] = ..., min_score: _Optional[float] = ..., top_k: _Optional[int] = ..., page_size: _Optional[int] = ..., disable_refinement: _Optional[bool] = ...) -> None: ...

class DuplicateSide(_message.Message):
    __slots__ = ("video", "range")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    video: Video
    range: TimeRange
    def __init__(self, video: _Optional[_Union[Video, _Mapping]] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class DuplicatePair(_message.Message):
    __slots__ = ("query", "target", "score", "copy_score", "is_copy", "refined")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COPY_SCORE_FIELD_NUMBER: _ClassVar[int]
    IS_COPY_FIELD_NUMBER: _ClassVar[int]
    REFINED_FIELD_NUMBER: _ClassVar[int]
    query: DuplicateSide
    target: DuplicateSide
    score: float
    copy_score: float
    is_copy: bool
    refined: bool
    def __init__(self, query: _Optional[_Union[DuplicateSide, _Mapping]] = ..., target: _Optional[_Union[DuplicateSide, _Mapping]] = ..., score: _Optional[float] = ..., copy_score: _Optional[float] = ..., is_copy: _Optional[bool] = ..., refined: _Optional[bool] = ...) -> None: ...

class DuplicateGroup(_message.Message):
    __slots__ = ("video_ids", "pairs")
    VIDEO_IDS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    video_ids: _containers.RepeatedScalarFieldContainer[int]
    pairs: _containers.RepeatedCompositeFieldContainer[DuplicatePair]
    def __init__(self, video_ids: _Optional[_Iterable[int]] = ..., pairs: _Optional[_Iterable[_Union[DuplicatePair, _Mapping]]] = ...) -> None: ...

class DuplicatesProgress(_message.Message):
    __slots__ = ("videos_searched", "videos_total", "pairs_found", "pairs_refined")
    VIDEOS_SEARCHED_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FOUND_FIELD_NUMBER: _ClassVar[int]
    PAIRS_REFINED_FIELD_NUMBER: _ClassVar[int]
    videos_searched: int
    videos_total: int
    pairs_found: int
    pairs_refined: int
    def __init__(self, videos_searched: _Optional[int] = ..., videos_total: _Optional[int] = ..., pairs_found: _Optional[int] = ..., pairs_refined: _Optional[int] = ...) -> None: ...

class DuplicateGroupsPage(_message.Message):
    __slots__ = ("groups", "page", "last", "groups_total", "model_version", "copy_threshold", "min_score")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    GROUPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COPY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[DuplicateGroup]
    page: int
    last: bool
    groups_total: int
    model_version: str
    copy_threshold: float
    min_score: float
    def __init__(self, groups: _Optional[_Iterable[_Union[DuplicateGroup, _Mapping]]] = ..., page: _Optional[int] = ..., last: _Optional[bool] = ..., groups_total: _Optional[int] = ..., model_version: _Optional[str] = ..., copy_threshold: _Optional[float] = ..., min_score: _Optional[float] = ...) -> None: ...

class FindDuplicatesResponse(_message.Message):
    __slots__ = ("progress", "page")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    progress: DuplicatesProgress
    page: DuplicateGroupsPage
    def __init__(self, progress: _Optional[_Union[DuplicatesProgress, _Mapping]] = ..., page: _Optional[_Union[DuplicateGroupsPage, _Mapping]] = ...) -> None: ...
