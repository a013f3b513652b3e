"""Exports: an index on finished drafts by request, so each page of an export seeks instead of scanning.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_drafts_request", "drafts", ["status", sa.text("coalesce(parent_id, id)"), "id"])


def downgrade() -> None:
    op.drop_index("ix_drafts_request", table_name="drafts")
