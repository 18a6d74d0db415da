"""asset_identity: external ids, user metadata, the client's file name and path, and the
log of metadata changes that keeps every search catalogue current.

Revision ID: 0004
Revises: 0003
Create Date: 2027-02-02

Videos ingested before it have none of these (NULL, no metadata rows); nothing is
back-filled: `original_name`/`original_path` were never kept, and `uri` is not the
client's path for uploads.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("external_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("external_key", sa.String(520), nullable=True))
        batch.add_column(sa.Column("original_name", sa.Text(), nullable=True))
        batch.add_column(sa.Column("original_path", sa.Text(), nullable=True))
        batch.create_unique_constraint(op.f("uq_videos_external_key"), ["external_key"])

    op.create_table(
        "video_metadata",
        sa.Column("video_id", ID, nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.String(1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            name=op.f("fk_video_metadata_video_id_videos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("video_id", "key", name=op.f("pk_video_metadata")),
    )
    op.create_index(
        "ix_video_metadata_key_value_video_id", "video_metadata", ["key", "value", "video_id"]
    )

    op.create_table(
        "video_changes",
        sa.Column("seq", ID, nullable=False),
        sa.Column("video_id", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_video_changes")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("video_changes")
    op.drop_index("ix_video_metadata_key_value_video_id", table_name="video_metadata")
    op.drop_table("video_metadata")
    with op.batch_alter_table("videos") as batch:
        batch.drop_constraint(op.f("uq_videos_external_key"), type_="unique")
        batch.drop_column("original_path")
        batch.drop_column("original_name")
        batch.drop_column("external_key")
        batch.drop_column("external_id")
