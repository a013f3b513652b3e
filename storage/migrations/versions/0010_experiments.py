"""Experiments: template versions, what each task serves, and blind experiments between variants.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD / DROP COLUMN on drafts, not batch mode, as in 0002: batch mode would rebuild drafts and,
# with foreign keys on, cascade-delete its feedback.


def upgrade() -> None:
    op.add_column("drafts", sa.Column("experiment_id", sa.Integer(), nullable=True))
    op.add_column("drafts", sa.Column("variant", sa.String(length=8), nullable=True))
    op.create_index(op.f("ix_drafts_experiment_id"), "drafts", ["experiment_id"])
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("brand_voice", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_versions")),
        sa.UniqueConstraint("name", name=op.f("uq_template_versions_name")),
    )
    op.create_index(op.f("ix_template_versions_task"), "template_versions", ["task"])
    op.create_table(
        "task_defaults",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("template_version", sa.String(length=32), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_defaults")),
    )
    op.create_index(op.f("ix_task_defaults_task"), "task_defaults", ["task"])
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("assignment", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("guild_id", sa.String(length=64), nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("winner", sa.String(length=8), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
    )
    op.create_index("uq_experiments_running_task", "experiments", ["task"], unique=True,
                    sqlite_where=sa.text("state = 'running'"), postgresql_where=sa.text("state = 'running'"))
    op.create_table(
        "experiment_variants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("template_version", sa.String(length=32), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.CheckConstraint("share > 0", name=op.f("ck_experiment_variants_share")),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_experiment_variants_experiment_id_experiments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_variants")),
        sa.UniqueConstraint("experiment_id", "label", name=op.f("uq_experiment_variants_experiment_id_label")),
    )


def downgrade() -> None:
    op.drop_table("experiment_variants")
    op.drop_index("uq_experiments_running_task", table_name="experiments")
    op.drop_table("experiments")
    op.drop_index(op.f("ix_task_defaults_task"), table_name="task_defaults")
    op.drop_table("task_defaults")
    op.drop_index(op.f("ix_template_versions_task"), table_name="template_versions")
    op.drop_table("template_versions")
    op.drop_index(op.f("ix_drafts_experiment_id"), table_name="drafts")
    op.drop_column("drafts", "variant")
    op.drop_column("drafts", "experiment_id")
