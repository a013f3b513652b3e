"""Drafts: why a draft that ended unfinished stopped (storage.lifecycle.StopReason).

Rows that stopped before this revision get the reason their status and error still tell:
cancelled ones were withdrawn, failed ones failed or hit their deadline. Interrupted ones keep
none, since nothing recorded whether a shutdown or a crash stopped them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD / DROP COLUMN, not batch mode, as in 0002: batch mode would rebuild drafts and, with
# foreign keys on, cascade-delete its feedback.


def upgrade() -> None:
    op.add_column("drafts", sa.Column("stop_reason", sa.String(length=16), nullable=True))
    op.execute("UPDATE drafts SET stop_reason = 'member' WHERE status = 'cancelled'")
    op.execute("UPDATE drafts SET stop_reason = CASE WHEN error LIKE 'stopped at its deadline%' "
               "THEN 'deadline' ELSE 'error' END WHERE status = 'failed'")


def downgrade() -> None:
    op.drop_column("drafts", "stop_reason")
