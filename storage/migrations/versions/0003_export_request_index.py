"""Exports: an index on drafts by request, so a paginated export never sorts the whole table.

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
    op.create_index("ix_drafts_request", "drafts", [sa.text("coalesce(parent_id, id)"), "id"])


def downgrade() -> None:
    op.drop_index("ix_drafts_request", table_name="drafts")
