"""The schema: every draft with its provenance, the feedback members give on it, its
moderation, and each member's choices about training use.

`storage/migrations` creates this schema; a test checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ColumnElement,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    exists,
    func,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.lifecycle import DraftStatus, StopReason  # owned there, importable from here too

BASE_VERSION = "base"  # the configured model without an adapter: every deployment's first version


class VersionState(StrEnum):
    """A trained version is a candidate until served; at most one serves; retired ones serve no more."""

    CANDIDATE = "candidate"
    SERVING = "serving"
    RETIRED = "retired"


class ExperimentState(StrEnum):
    """Running until a moderator stops it or promotes its winner; one runs per task at a time."""

    RUNNING = "running"
    STOPPED = "stopped"
    PROMOTED = "promoted"


class Assignment(StrEnum):
    """How an experiment gives drafts to its variants: each draft drawn anew, or each member kept on one."""

    DRAFT = "draft"
    MEMBER = "member"


class FlagSource(StrEnum):
    MEMBER = "member"
    AUTO = "auto"


class FlagStatus(StrEnum):
    """Open until a moderator decides; upheld flags keep a draft out of every export."""

    OPEN = "open"
    UPHELD = "upheld"
    DISMISSED = "dismissed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: SQLite keeps no offset, so naive values read back are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; storage keeps aware UTC datetimes only")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _str_enum(enum: type[StrEnum]) -> Enum:
    """A plain VARCHAR(16) holding the enum's values, read back as enum members."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    # Fixed constraint names, so migrations can refer to them on every backend.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Draft(Base):
    """One generation request: a row before generation starts, so a crash loses nothing."""

    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("drafts.id", ondelete="SET NULL"), index=True
    )
    # Variants: the drafts one request asked for together share the first one's id here (see VariantPick);
    # a group key, not a foreign key, so adding it needs no table rebuild. None for a draft asked for alone.
    variant_group: Mapped[int | None] = mapped_column(Integer, index=True)
    task: Mapped[str] = mapped_column(String(32))
    inputs: Mapped[dict[str, str]] = mapped_column(JSON)
    system_prompt: Mapped[str] = mapped_column(Text)
    user_prompt: Mapped[str] = mapped_column(Text)
    template_version: Mapped[str] = mapped_column(String(32))
    # The experiment that chose what wrote it, and which of its variants (0010); None outside experiments.
    # A plain key, not a foreign key, as variant_group: adding it needs no table rebuild.
    experiment_id: Mapped[int | None] = mapped_column(Integer, index=True)
    variant: Mapped[str | None] = mapped_column(String(8))
    # The ad platform it was written for, and once finished its fields with their counts (0007).
    platform: Mapped[str] = mapped_column(String(16), default="generic", server_default="generic")
    fields: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    model: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(64), default=BASE_VERSION)  # what wrote it (see ModelVersion)
    quantization: Mapped[str] = mapped_column(String(16))
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[DraftStatus] = mapped_column(
        _str_enum(DraftStatus), default=DraftStatus.QUEUED, index=True
    )
    error: Mapped[str | None] = mapped_column(Text)
    stop_reason: Mapped[StopReason | None] = mapped_column(_str_enum(StopReason))  # see storage.lifecycle
    language: Mapped[str | None] = mapped_column(String(8))  # what it was written in (generation/language.py)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # signals of the finished draft (generation/quality.py)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)  # queued → finished
    ttft_ms: Mapped[int | None] = mapped_column(Integer)  # time to first token
    author_id: Mapped[str] = mapped_column(String(64), index=True)
    guild_id: Mapped[str | None] = mapped_column(String(64))
    channel_id: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64))  # where it was shown, to edit it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when a moderator upholds a flag: the row stays (for the log), out of every export.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by: Mapped[str | None] = mapped_column(String(64))

    # lazy="raise": under asyncio an implicit lazy load cannot work, so say so plainly;
    # load them with selectinload (Repository.get_draft does).
    ratings: Mapped[list[Rating]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise", order_by="Rating.id"
    )
    improvements: Mapped[list[Improvement]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise", order_by="Improvement.id"
    )
    flags: Mapped[list[Flag]] = relationship(
        back_populates="draft",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
        order_by="Flag.id",
    )

    @hybrid_property
    def held(self) -> bool:
        """An open automatic flag holds the draft's text back for a moderator; needs the flags loaded."""
        return any(flag.source == FlagSource.AUTO and flag.status == FlagStatus.OPEN for flag in self.flags)

    @held.inplace.expression
    @classmethod
    def _held_expression(cls) -> ColumnElement[bool]:
        return exists().where(Flag.draft_id == cls.id, Flag.source == FlagSource.AUTO, Flag.status == FlagStatus.OPEN)

    @hybrid_property
    def member_told(self) -> bool:
        """A message shows the draft, so its member saw how it went."""
        return self.message_id is not None

    @member_told.inplace.expression
    @classmethod
    def _member_told_expression(cls) -> ColumnElement[bool]:
        return cls.message_id.is_not(None)


# Exports read finished drafts by request (the original's id, then each regeneration's): with this
# index every page of a keyset-paginated export seeks to where the last one ended, instead of
# sorting or scanning the table.
Index("ix_drafts_request", Draft.status, func.coalesce(Draft.parent_id, Draft.id), Draft.id)


class Rating(Base):
    """A member's 👍 (+1) or 👎 (-1) on a draft: one per member, changeable."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("draft_id", "member_id"),  # also serves lookups by draft_id
        CheckConstraint("value IN (-1, 1)", name="value"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VariantPick(Base):
    """A member's choice of one variant over the others shown with it: one per member per group, changeable.

    `group_id` is the drafts' `variant_group`; the export makes the picked draft the chosen answer of a
    preference pair against each other variant.
    """

    __tablename__ = "variant_picks"
    __table_args__ = (UniqueConstraint("group_id", "member_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(String(64))
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Improvement(Base):
    """A member's better version of a draft: the preferred answer for training."""

    __tablename__ = "improvements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Flag(Base):
    """A report that a draft is unfit, from a member or from the automatic safety checks."""

    __tablename__ = "flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[str | None] = mapped_column(String(64))  # None for automatic flags
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[FlagSource] = mapped_column(_str_enum(FlagSource))
    status: Mapped[FlagStatus] = mapped_column(
        _str_enum(FlagStatus), default=FlagStatus.OPEN, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_by: Mapped[str | None] = mapped_column(String(64))  # the moderator who decided
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)  # the moderator's, not the reporter's

    draft: Mapped[Draft] = relationship(back_populates="flags", lazy="raise")


class ModerationAction(Base):
    """One line of the moderation log: what a moderator did, or was refused, and when.

    `draft_id` has no foreign key: the log outlives the drafts it speaks of.
    """

    __tablename__ = "moderation_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[str | None] = mapped_column(String(64))
    flag_id: Mapped[int | None] = mapped_column(
        ForeignKey("flags.id", ondelete="SET NULL"), index=True
    )
    draft_id: Mapped[int | None] = mapped_column(Integer)
    moderator_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # "uphold", "dismiss", "refused", …
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Moderator(Base):
    """A member seen acting as a moderator in a guild, so the bot knows who is the only one."""

    __tablename__ = "moderators"

    guild_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Consent(Base):
    """A member's choice about training use of what they write; no row means never asked."""

    __tablename__ = "consents"

    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Erasure(Base):
    """The ledger of members who had their data deleted, so later exports leave them out.

    Holds a keyed hash computed by the caller, never the member id itself.
    """

    __tablename__ = "erasures"
    __table_args__ = (UniqueConstraint("member_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_hash: Mapped[str] = mapped_column(String(64))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(Base):
    """An interaction (or any front-end event with an id) the bot has acted on.

    Discord may deliver one interaction twice, and clients retry: the first delivery claims its id
    here, and every later one is dropped, so each has at most one effect. Holds no member id.
    """

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # what was delivered, e.g. "command", "button", "form"
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ModelVersion(Base):
    """A trained adapter for the served model, with everything it came from.

    Registered only once its folder is complete and verified; `adapter_sha256` is the adapter
    file's, so a folder changed since can be told apart.
    """

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    base_model: Mapped[str] = mapped_column(String(255))
    base_sha256: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(Text)
    adapter_sha256: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    source_export: Mapped[dict[str, Any]] = mapped_column(JSON)  # folder, files and their sha256, rows
    libraries: Mapped[dict[str, str]] = mapped_column(JSON)
    wall_time_s: Mapped[float] = mapped_column(Float)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[VersionState] = mapped_column(_str_enum(VersionState), default=VersionState.CANDIDATE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TemplateVersion(Base):
    """A moderator's version of a task's prompt and brand voice, never edited in place.

    Drafts record its `name` in `drafts.template_version`; each task's built-in prompt in the
    catalogue is its first version and has no row.
    """

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(32))
    system_prompt: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(Text)
    # tone words, words to use, words never to use, a sample of house copy (generation/templates.py)
    brand_voice: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskDefault(Base):
    """What a task serves outside experiments, as a history: the latest row per task is current.

    None means the deployment's default: the catalogue's built-in template, the serving model version.
    Promote appends a row; rollback appends the one before it again, so nothing is lost.
    """

    __tablename__ = "task_defaults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(32), index=True)
    template_version: Mapped[str | None] = mapped_column(String(32))
    model_version: Mapped[str | None] = mapped_column(String(64))
    changed_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))  # "promote", "rollback"
    experiment_id: Mapped[int | None] = mapped_column(Integer)  # the experiment promoted, if any
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Experiment(Base):
    """A blind comparison of two or more variants on one task's live drafts."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(32))
    assignment: Mapped[Assignment] = mapped_column(_str_enum(Assignment))
    state: Mapped[ExperimentState] = mapped_column(_str_enum(ExperimentState), default=ExperimentState.RUNNING)
    guild_id: Mapped[str | None] = mapped_column(String(64))  # where it was started, for the log
    started_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    winner: Mapped[str | None] = mapped_column(String(8))  # the variant promoted

    variants: Mapped[list[ExperimentVariant]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin", order_by="ExperimentVariant.label"
    )


# One running experiment per task, kept by the database, not by a check that two moderators could race.
Index("uq_experiments_running_task", Experiment.task, unique=True,
      sqlite_where=Experiment.state == ExperimentState.RUNNING,
      postgresql_where=Experiment.state == ExperimentState.RUNNING)


class ExperimentVariant(Base):
    """One arm of an experiment: the model version and template version it drafts with, and its share."""

    __tablename__ = "experiment_variants"
    __table_args__ = (
        UniqueConstraint("experiment_id", "label"),
        CheckConstraint("share > 0", name="share"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(8))  # "A", "B", … — what members would never see
    model_version: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[str] = mapped_column(String(32))
    share: Mapped[float] = mapped_column(Float)
