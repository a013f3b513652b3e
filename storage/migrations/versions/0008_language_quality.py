"""Drafts: the language a draft is written in, and the quality signals of the finished draft.

Rows from before this revision keep none of either: nothing recorded them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD / DROP COLUMN, not batch mode, as in 0002: batch mode would rebuild drafts and, with
# foreign keys on, cascade-delete its feedback.


def upgrade() -> None:
    op.add_column("drafts", sa.Column("language", sa.String(length=8), nullable=True))
    op.add_column("drafts", sa.Column("quality", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("drafts", "quality")
    op.drop_column("drafts", "language")
