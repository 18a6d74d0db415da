"""store_identity: one row holding a random id of this database.

Revision ID: 0002
Revises: 0001
Create Date: 2027-01-12

The row itself is made the first time it is asked for (`services.store.identity`), not
here, so that a database emptied table by table gets a new id like a new database.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("database_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_store_identity_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_identity")),
    )


def downgrade() -> None:
    op.drop_table("store_identity")
