"""video_content_box: the picture inside letterbox / frame borders that ingest embedded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

NULL for videos ingested before it: search then detects the borders again when it needs
them (services/search/moments.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("content_box", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("content_box")
