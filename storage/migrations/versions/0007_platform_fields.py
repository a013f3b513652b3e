"""Drafts: the ad platform a draft is written for, and its fields with their counts once finished.

Rows from before this revision are generic drafts, free-form text without fields.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD / DROP COLUMN, not batch mode, as in 0002 and 0004: batch mode would rebuild drafts and,
# with foreign keys on, cascade-delete its feedback.


def upgrade() -> None:
    op.add_column("drafts", sa.Column("platform", sa.String(length=16), server_default="generic", nullable=False))
    op.add_column("drafts", sa.Column("fields", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("drafts", "fields")
    op.drop_column("drafts", "platform")
