"""Initial schema: videos, tags, segments, video embeddings, tombstones, jobs, classifiers.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Frozen: written out in full rather than importing the models, so that later model changes
cannot silently change what this revision does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 64-bit ids; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the autoincrementing rowid.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
MV = sa.String(64)  # model version


def _one_of(table: str, name: str, column: str, values: Sequence[str]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{name}"))


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", ID, nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("rotation", sa.Integer(), nullable=True),
        sa.Column("codec", sa.String(32), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("collection", sa.String(255), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
        sa.UniqueConstraint("content_sha256", name=op.f("uq_videos_content_sha256")),
        _one_of(
            "videos",
            "video_status",
            "status",
            ("PENDING", "PROCESSING", "READY", "FAILED", "DELETED"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_videos_collection_id", "videos", ["collection", "id"])
    op.create_index("ix_videos_status_id", "videos", ["status", "id"])

    op.create_table(
        "video_tags",
        sa.Column("video_id", ID, nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            name=op.f("fk_video_tags_video_id_videos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("video_id", "tag", name=op.f("pk_video_tags")),
    )
    op.create_index("ix_video_tags_tag_video_id", "video_tags", ["tag", "video_id"])

    op.create_table(
        "segments",
        sa.Column("id", ID, nullable=False),
        sa.Column("video_id", ID, nullable=False),
        sa.Column("segment_index", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("model_version", MV, nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            name=op.f("fk_segments_video_id_videos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint(
            "video_id",
            "model_version",
            "segment_index",
            name=op.f("uq_segments_video_id_model_version_segment_index"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_segments_model_version_id", "segments", ["model_version", "id"])

    op.create_table(
        "video_embeddings",
        sa.Column("id", ID, nullable=False),
        sa.Column("video_id", ID, nullable=False),
        sa.Column("model_version", MV, nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            name=op.f("fk_video_embeddings_video_id_videos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_embeddings")),
        sa.UniqueConstraint(
            "video_id", "model_version", name=op.f("uq_video_embeddings_video_id_model_version")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_video_embeddings_model_version_id", "video_embeddings", ["model_version", "id"]
    )

    op.create_table(
        "vector_tombstones",
        sa.Column("seq", ID, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("vector_id", sa.BigInteger(), nullable=False),
        sa.Column("model_version", MV, nullable=False),
        sa.Column("deleted_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_vector_tombstones")),
        _one_of("vector_tombstones", "vector_level", "level", ("segment", "video")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_vector_tombstones_level_model_version_seq",
        "vector_tombstones",
        ["level", "model_version", "seq"],
    )

    op.create_table(
        "jobs",
        sa.Column("id", ID, nullable=False),
        sa.Column("video_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model_version", MV, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("queued_at", TS, nullable=False),
        sa.Column("dispatched_at", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("decode_s", sa.Float(), nullable=True),
        sa.Column("encode_s", sa.Float(), nullable=True),
        sa.Column("write_s", sa.Float(), nullable=True),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"], ["videos.id"], name=op.f("fk_jobs_video_id_videos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        _one_of("jobs", "job_kind", "kind", ("ingest", "reindex")),
        _one_of("jobs", "job_status", "status", ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_video_id", "jobs", ["video_id"])
    op.create_index("ix_jobs_status_lease_expires_at", "jobs", ["status", "lease_expires_at"])

    op.create_table(
        "classifiers",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("model_version", MV, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classifiers")),
        sa.UniqueConstraint("name", name=op.f("uq_classifiers_name")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in (
        "classifiers",
        "jobs",
        "vector_tombstones",
        "video_embeddings",
        "segments",
        "video_tags",
        "videos",
    ):
        op.drop_table(table)  # its indexes go with it
