"""The SQL schema: SQLAlchemy 2.0 declarative models, the source of truth of the index.

    videos ──< video_tags            (tag filter = index lookup on (tag, video_id))
       │──< video_metadata           (user key/values; filter = lookup on (key, value))
       │──< segments                 (segments.id = FAISS id at segment level)
       │──< video_embeddings         (video_embeddings.id = FAISS id at video level)
       └──< jobs                     (ingest / reindex work, leases for the workers)
    vector_tombstones                (append-only log of removed vector ids, by seq)
    video_changes                    (append-only log of videos whose metadata changed)
    classifiers                      (trained heads on the vectors)

Every change to this file needs a migration in `migrations/versions/`; a test runs an
autogenerate diff against the migrated database and fails when they disagree.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Explicit constraint names: the same on both databases, and needed by Alembic's batch
# mode on SQLite to alter a constraint later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Ids are 64-bit on PostgreSQL (FAISS ids are int64). On SQLite only INTEGER PRIMARY KEY is
# the rowid alias that autoincrements, so the variant keeps it INTEGER there (64-bit anyway).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

# Model versions are a hash of weights + config (see DESIGN.md); 64 chars fits a sha256.
MODEL_VERSION_LEN = 64


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as
    naive UTC and given its tzinfo back on load. Naive datetimes are refused at the boundary
    (a naive "now" is a classic source of lease bugs).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class VideoStatus(str, enum.Enum):
    PENDING = "PENDING"  # registered, an ingest job is queued
    PROCESSING = "PROCESSING"  # a worker holds the ingest job
    READY = "READY"  # vectors written, searchable
    FAILED = "FAILED"  # ingest failed for good; `error` says why
    DELETED = "DELETED"  # soft-deleted: vectors removed and tombstoned, the row stays


class JobKind(str, enum.Enum):
    INGEST = "ingest"  # first embedding of a video
    REINDEX = "reindex"  # re-embedding with another model version


class JobStatus(str, enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class VectorLevel(str, enum.Enum):
    SEGMENT = "segment"
    VIDEO = "video"


def _str_enum(cls: type[enum.Enum], name: str) -> Enum:
    """A VARCHAR with a CHECK constraint (portable; no PostgreSQL enum type to migrate)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (
        # Keyset pages filtered by collection or status: WHERE col = ? AND id > ? ORDER BY id.
        Index("ix_videos_collection_id", "collection", "id"),
        Index("ix_videos_status_id", "status", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    uri: Mapped[str] = mapped_column(Text)  # as the client gave it: a path or a URL
    # Lower-case hex sha256 of the bytes: re-ingesting the same bytes finds this row.
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[VideoStatus] = mapped_column(
        _str_enum(VideoStatus, "video_status"), default=VideoStatus.PENDING
    )
    error: Mapped[str | None] = mapped_column(Text)  # why it FAILED
    # Probe facts, filled in when the ingest completes.
    duration_s: Mapped[float | None] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    rotation: Mapped[int | None] = mapped_column(Integer)  # degrees, from the stream's metadata
    codec: Mapped[str | None] = mapped_column(String(32))
    # The picture inside letterbox / frame borders that was embedded, "x,y,w,h" as fractions
    # of the upright frame (sora_encoder.media.ContentBox.to_text); NULL: not known.
    content_box: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(Text)
    collection: Mapped[str | None] = mapped_column(String(255))
    # The caller's id of the asset (its editing or review tool's), unique per collection
    # among live videos (see external_key); NULL: none given.
    external_id: Mapped[str | None] = mapped_column(String(255))
    # What makes external_id unique per collection: "<len(collection)>:<collection>:<id>"
    # ('' for no collection). A unique constraint over (collection, external_id) would not
    # do: NULLs are distinct in it on both databases, so two videos without a collection
    # could share an id. NULL when there is no external id, or once the video is DELETED
    # (its id is then free for another video; the row keeps external_id for the record).
    external_key: Mapped[str | None] = mapped_column(String(520), unique=True)
    # The file's name and path on the client's disk (uploads), or as given (server paths,
    # URLs): `uri` is where the server reads the bytes, not where the user knows them.
    original_name: Mapped[str | None] = mapped_column(Text)
    original_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tag_rows: Mapped[list[VideoTag]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="VideoTag.tag",
        passive_deletes=True,
    )
    metadata_rows: Mapped[list[VideoMetadataEntry]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="VideoMetadataEntry.key",
        passive_deletes=True,
    )

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]

    @property
    def user_metadata(self) -> dict[str, str]:
        return {m.key: m.value for m in self.metadata_rows}

    def __repr__(self) -> str:
        return f"Video(id={self.id}, status={self.status}, sha={self.content_sha256[:12]})"


class VideoTag(Base):
    __tablename__ = "video_tags"
    # The primary key serves "tags of a video"; the index serves "videos with a tag".
    __table_args__ = (Index("ix_video_tags_tag_video_id", "tag", "video_id"),)

    video_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)


class VideoMetadataEntry(Base):
    """One user key/value of a video (free metadata from the caller's tools)."""

    __tablename__ = "video_metadata"
    # The primary key serves "metadata of a video"; the index serves "videos with key=value".
    __table_args__ = (Index("ix_video_metadata_key_value_video_id", "key", "value", "video_id"),)

    video_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024))


class VideoChange(Base):
    """Append-only: a video's metadata (title, collection, tags, external id, user
    metadata) changed. Written, under `lock_vector_log`, in the transaction that changes
    it, so that every search catalogue re-reads the video (`seq` is its watermark, as a
    tombstone's is for removed vectors)."""

    __tablename__ = "video_changes"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    video_id: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Segment(Base):
    """One window of a video and its vector. `id` is the segment's FAISS id."""

    __tablename__ = "segments"
    __table_args__ = (
        # A retried task cannot duplicate segments. Its leading column also serves as the
        # index on video_id (lookups and the foreign key), so there is no separate one.
        UniqueConstraint("video_id", "model_version", "segment_index"),
        # The index's catch-up: WHERE model_version = ? AND id > ? ORDER BY id.
        Index("ix_segments_model_version_id", "model_version", "id"),
        # AUTOINCREMENT: SQLite never reuses an id, even the largest one after a delete
        # (the index's watermark relies on ids only ever growing).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    video_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("videos.id", ondelete="CASCADE"))
    segment_index: Mapped[int] = mapped_column(Integer)  # 0, 1, ... in time order
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # (d,) little-endian float32
    model_version: Mapped[str] = mapped_column(String(MODEL_VERSION_LEN))

    def as_array(self) -> np.ndarray:
        """The vector as a (d,) float32 array."""
        return np.frombuffer(self.vector, dtype="<f4").astype(np.float32, copy=False)


class VideoEmbedding(Base):
    """A video's mean vector. `id` is the video-level FAISS id."""

    __tablename__ = "video_embeddings"
    __table_args__ = (
        UniqueConstraint("video_id", "model_version"),
        Index("ix_video_embeddings_model_version_id", "model_version", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    video_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("videos.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(MODEL_VERSION_LEN))
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # (d,) little-endian float32

    def as_array(self) -> np.ndarray:
        return np.frombuffer(self.vector, dtype="<f4").astype(np.float32, copy=False)


class VectorTombstone(Base):
    """Append-only: a vector row was removed. Written in the transaction that removes it."""

    __tablename__ = "vector_tombstones"
    __table_args__ = (
        Index("ix_vector_tombstones_level_model_version_seq", "level", "model_version", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    level: Mapped[VectorLevel] = mapped_column(_str_enum(VectorLevel, "vector_level"))
    vector_id: Mapped[int] = mapped_column(BigInteger)
    model_version: Mapped[str] = mapped_column(String(MODEL_VERSION_LEN))
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_video_id", "video_id"),
        # The reconciler: WHERE status = 'RUNNING' AND lease_expires_at < now.
        Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    video_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("videos.id", ondelete="CASCADE"))
    kind: Mapped[JobKind] = mapped_column(_str_enum(JobKind, "job_kind"))
    status: Mapped[JobStatus] = mapped_column(
        _str_enum(JobStatus, "job_status"), default=JobStatus.QUEUED
    )
    # The model version a reindex job must produce (None: whatever the worker runs).
    model_version: Mapped[str | None] = mapped_column(String(MODEL_VERSION_LEN))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far
    lease_owner: Mapped[str | None] = mapped_column(String(255))  # e.g. "host:pid:task-id"
    lease_expires_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)  # last failure, transient or final
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When its message was last handed to the broker (None: not yet). A QUEUED job not
    # claimed long after this had its message lost (a broker restart): it is re-sent.
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]  # of the latest attempt
    finished_at: Mapped[datetime | None]
    # Seconds spent per stage of the successful attempt.
    decode_s: Mapped[float | None] = mapped_column(Float)
    encode_s: Mapped[float | None] = mapped_column(Float)
    write_s: Mapped[float | None] = mapped_column(Float)
    # Progress for the API's stream: segments done of total (total unknown until probed).
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Job(id={self.id}, video_id={self.video_id}, {self.kind.value}, {self.status})"


class Classifier(Base):
    __tablename__ = "classifiers"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    labels: Mapped[list[Any]] = mapped_column(JSON)  # class names, in output order
    weights: Mapped[bytes] = mapped_column(LargeBinary)  # serialised head (e.g. safetensors)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_version: Mapped[str] = mapped_column(String(MODEL_VERSION_LEN))  # of its inputs
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StoreIdentity(Base):
    """One row: a random id of this database, made the first time it is asked for (see
    `identity.database_id`). Index snapshots record it, so a snapshot folder is never
    served over another database (a re-created one, or another deployment's)."""

    __tablename__ = "store_identity"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    database_id: Mapped[str] = mapped_column(String(36))  # uuid4, hex with dashes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
