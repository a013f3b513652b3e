"""Variants: the drafts one request asked for together, and each member's pick among them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD / DROP COLUMN, not batch mode, as in 0002: batch mode would rebuild drafts and, with
# foreign keys on, cascade-delete its feedback.


def upgrade() -> None:
    op.add_column("drafts", sa.Column("variant_group", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_drafts_variant_group"), "drafts", ["variant_group"])
    op.create_table(
        "variant_picks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["drafts.id"], name=op.f("fk_variant_picks_group_id_drafts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["draft_id"], ["drafts.id"], name=op.f("fk_variant_picks_draft_id_drafts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variant_picks")),
        sa.UniqueConstraint("group_id", "member_id", name=op.f("uq_variant_picks_group_id_member_id")),
    )
    op.create_index(op.f("ix_variant_picks_draft_id"), "variant_picks", ["draft_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_variant_picks_draft_id"), table_name="variant_picks")
    op.drop_table("variant_picks")
    op.drop_index(op.f("ix_drafts_variant_group"), table_name="drafts")
    op.drop_column("drafts", "variant_group")
