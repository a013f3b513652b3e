"""Moderation and privacy: where drafts were shown, flag decisions, the moderation log,
moderators seen, consents, and the erasure ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD / DROP COLUMN, not batch mode, on purpose: SQLite (3.35+) does both in place,
# while batch mode would rebuild drafts, and with foreign keys on, dropping the old drafts
# table would cascade-delete every rating, improvement and flag.


def upgrade() -> None:
    op.add_column("drafts", sa.Column("message_id", sa.String(length=64), nullable=True))
    op.add_column("drafts", sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("drafts", sa.Column("removed_by", sa.String(length=64), nullable=True))

    op.add_column("flags", sa.Column("resolved_by", sa.String(length=64), nullable=True))
    op.add_column("flags", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("flags", sa.Column("note", sa.Text(), nullable=True))

    op.create_table(
        "moderation_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("guild_id", sa.String(length=64), nullable=True),
        sa.Column("flag_id", sa.Integer(), nullable=True),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("moderator_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["flag_id"],
            ["flags.id"],
            name=op.f("fk_moderation_actions_flag_id_flags"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_actions")),
    )
    op.create_index(op.f("ix_moderation_actions_flag_id"), "moderation_actions", ["flag_id"])
    op.create_index(
        op.f("ix_moderation_actions_created_at"), "moderation_actions", ["created_at"]
    )

    op.create_table(
        "moderators",
        sa.Column("guild_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "member_id", name=op.f("pk_moderators")),
    )

    op.create_table(
        "consents",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_consents")),
    )

    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_hash", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
        sa.UniqueConstraint("member_hash", name=op.f("uq_erasures_member_hash")),
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_table("consents")
    op.drop_table("moderators")
    op.drop_table("moderation_actions")
    for column in ("note", "resolved_at", "resolved_by"):
        op.drop_column("flags", column)
    for column in ("removed_by", "removed_at", "message_id"):
        op.drop_column("drafts", column)
