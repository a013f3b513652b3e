"""Use-case-sized database operations; each is one session and one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from storage.database import Database
from storage.errors import (
    DraftNotFound,
    FlagAlreadyResolved,
    FlagNotFound,
    StorageError,
)
from storage.exclusions import Exclusions, count_exclusions
from storage.feedback import FeedbackFilter, FeedbackRecord
from storage.models import (
    Consent,
    Draft,
    DraftStatus,
    Erasure,
    Flag,
    FlagSource,
    FlagStatus,
    Improvement,
    ModerationAction,
    Moderator,
    Rating,
    utcnow,
)
from storage.pseudonyms import member_hash, pseudonym

_ACTIVE = (DraftStatus.QUEUED, DraftStatus.RUNNING)
_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


@dataclass(frozen=True, slots=True)
class Activity:
    counts: dict[str, int]  # draft status → drafts created in the window
    tokens: int  # tokens of the drafts finished in the window


class Repository:
    """The storage use cases the service calls; returned objects are detached and safe to keep."""

    def __init__(self, database: Database) -> None:
        dialect = database.engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise StorageError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
        self._sessions = database.sessions
        self._insert = _UPSERT_INSERTS[dialect]

    # Drafts and their lifecycle: queued → running → done | failed | cancelled | interrupted.

    async def create_draft(
        self,
        *,
        task: str,
        inputs: dict[str, str],
        system_prompt: str,
        user_prompt: str,
        template_version: str,
        model: str,
        quantization: str,
        sampling: dict[str, Any],
        seed: int | None,
        author_id: str,
        guild_id: str | None = None,
        channel_id: str | None = None,
        parent_id: int | None = None,
    ) -> Draft:
        """Record a request as queued, before any generation starts."""
        draft = Draft(
            task=task,
            inputs=inputs,
            system_prompt=system_prompt,
            user_prompt=user_prompt,
            template_version=template_version,
            model=model,
            quantization=quantization,
            sampling=sampling,
            seed=seed,
            author_id=author_id,
            guild_id=guild_id,
            channel_id=channel_id,
            parent_id=parent_id,
            status=DraftStatus.QUEUED,
            output="",
            created_at=utcnow(),
        )
        async with self._sessions.begin() as session:
            session.add(draft)
        return draft

    async def mark_running(self, draft_id: int) -> bool:
        return await self._transition(
            draft_id, (DraftStatus.QUEUED,), status=DraftStatus.RUNNING, started_at=utcnow()
        )

    async def record_progress(self, draft_id: int, output: str) -> bool:
        """Save the output so far, so a crash keeps what was generated."""
        return await self._transition(draft_id, _ACTIVE, output=output)

    async def finish_draft(
        self,
        draft_id: int,
        *,
        output: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: int,
        ttft_ms: int | None,
    ) -> bool:
        return await self._transition(
            draft_id,
            _ACTIVE,
            status=DraftStatus.DONE,
            output=output,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            finished_at=utcnow(),
        )

    async def fail_draft(self, draft_id: int, error: str, output: str | None = None) -> bool:
        """`output=None` keeps the partial output record_progress saved."""
        extra = {} if output is None else {"output": output}
        return await self._transition(
            draft_id, _ACTIVE, status=DraftStatus.FAILED, error=error, finished_at=utcnow(), **extra
        )

    async def cancel_draft(self, draft_id: int, output: str | None = None) -> bool:
        """`output=None` keeps the partial output record_progress saved."""
        extra = {} if output is None else {"output": output}
        return await self._transition(
            draft_id, _ACTIVE, status=DraftStatus.CANCELLED, finished_at=utcnow(), **extra
        )

    async def interrupt_draft(self, draft_id: int, reason: str, output: str | None = None) -> bool:
        """The process is stopping before the draft is finished; `output=None` keeps the partial output."""
        extra = {} if output is None else {"output": output}
        return await self._transition(
            draft_id, _ACTIVE, status=DraftStatus.INTERRUPTED, error=reason, finished_at=utcnow(), **extra
        )

    async def interrupt_unfinished(self, reason: str) -> int:
        """Mark every queued or running draft interrupted: at start, when no process can still be writing them."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Draft)
                .where(Draft.status.in_(_ACTIVE))
                .values(status=DraftStatus.INTERRUPTED, error=reason, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return result.rowcount

    async def unannounced_interruptions(self, since: datetime) -> list[Draft]:
        """Interrupted drafts asked for in a channel that no message shows yet: their members were not told."""
        query = (
            select(Draft)
            .where(Draft.status == DraftStatus.INTERRUPTED, Draft.channel_id.is_not(None),
                   Draft.message_id.is_(None), Draft.finished_at > since)
            .order_by(Draft.id)
        )
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def _transition(
        self, draft_id: int, allowed: Collection[DraftStatus], **values: Any
    ) -> bool:
        """Apply `values` if the draft is in an `allowed` status.

        Returns False, changing nothing, when it is not (e.g. a generation finishing after its
        draft was cancelled): finished drafts stay as they ended.
        """
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Draft)
                .where(Draft.id == draft_id, Draft.status.in_(allowed))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount:
                return True
            await _require_draft(session, draft_id)
            return False

    async def get_draft(self, draft_id: int) -> Draft | None:
        """The draft with its ratings, improvements and flags loaded."""
        async with self._sessions() as session:
            return await session.get(
                Draft,
                draft_id,
                options=[
                    selectinload(Draft.ratings),
                    selectinload(Draft.improvements),
                    selectinload(Draft.flags),
                ],
            )

    async def recent_drafts(self, limit: int = 10, author_id: str | None = None) -> list[Draft]:
        """Newest first; feedback is not loaded (use get_draft for that)."""
        query = select(Draft).order_by(Draft.created_at.desc(), Draft.id.desc()).limit(limit)
        if author_id is not None:
            query = query.where(Draft.author_id == author_id)
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def count_waiting(self, *, since: datetime, author_id: str | None = None) -> int:
        """Queued or running drafts created after `since` (older ones were left by a crash), of one author or all."""
        query = select(func.count()).select_from(Draft).where(Draft.status.in_(_ACTIVE), Draft.created_at > since)
        if author_id is not None:
            query = query.where(Draft.author_id == author_id)
        async with self._sessions() as session:
            return (await session.scalar(query)) or 0

    async def activity(self, since: datetime) -> Activity:
        """What the status view shows: drafts by status among recent ones, and tokens written since `since`."""
        by_status = select(Draft.status, func.count()).where(Draft.created_at > since).group_by(Draft.status)
        written = select(func.coalesce(func.sum(Draft.completion_tokens), 0)).where(
            Draft.status == DraftStatus.DONE, Draft.finished_at > since)
        async with self._sessions() as session:
            counts = {str(status): count for status, count in (await session.execute(by_status)).all()}
            tokens = (await session.scalar(written)) or 0
        return Activity(counts=counts, tokens=int(tokens))

    async def request_times(self, author_id: str, since: datetime) -> list[datetime]:
        """When the author asked for drafts after `since`, oldest first: what a rate limit counts."""
        query = (select(Draft.created_at).where(Draft.author_id == author_id, Draft.created_at > since)
                 .order_by(Draft.created_at))
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def set_message(self, draft_id: int, channel_id: str, message_id: str) -> None:
        """Remember the message that shows the draft, so it can be edited when moderated."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Draft)
                .where(Draft.id == draft_id)
                .values(channel_id=channel_id, message_id=message_id)
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:
                raise DraftNotFound(draft_id)

    async def delete_draft(self, draft_id: int) -> None:
        """Delete a draft; the database deletes its feedback and unlinks its regenerations."""
        async with self._sessions.begin() as session:
            result = await session.execute(delete(Draft).where(Draft.id == draft_id))
            if not result.rowcount:
                raise DraftNotFound(draft_id)

    # Feedback.

    async def rate(self, draft_id: int, member_id: str, value: int) -> Rating:
        """Set a member's rating of a draft, replacing their earlier one.

        One upsert statement, so concurrent clicks cannot create a second row.
        """
        if value not in (1, -1):
            raise ValueError(f"a rating is +1 or -1, not {value!r}")
        now = utcnow()
        insert = self._insert(Rating).values(
            draft_id=draft_id, member_id=member_id, value=value, created_at=now, updated_at=now
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[Rating.draft_id, Rating.member_id],
            set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
        )
        async with self._sessions.begin() as session:
            await _require_draft(session, draft_id)
            rating = await session.scalar(
                upsert.returning(Rating), execution_options={"populate_existing": True}
            )
        assert rating is not None  # RETURNING always yields the inserted or updated row
        return rating

    async def rating_summary(self, draft_id: int) -> tuple[int, int]:
        """(ups, downs) of a draft; (0, 0) for a draft nobody rated or that does not exist."""
        query = select(
            func.count().filter(Rating.value == 1), func.count().filter(Rating.value == -1)
        ).where(Rating.draft_id == draft_id)
        async with self._sessions() as session:
            ups, downs = (await session.execute(query)).one()
        return ups, downs

    async def add_improvement(self, draft_id: int, member_id: str, text: str) -> Improvement:
        improvement = Improvement(
            draft_id=draft_id, member_id=member_id, text=text, created_at=utcnow()
        )
        async with self._sessions.begin() as session:
            await _require_draft(session, draft_id)
            session.add(improvement)
        return improvement

    async def add_flag(
        self,
        draft_id: int,
        reason: str,
        *,
        member_id: str | None = None,
        source: FlagSource | str = FlagSource.MEMBER,
    ) -> Flag:
        """Flag a draft for moderators; automatic flags have no member."""
        flag = Flag(
            draft_id=draft_id,
            member_id=member_id,
            reason=reason,
            source=FlagSource(source),
            status=FlagStatus.OPEN,
            created_at=utcnow(),
        )
        async with self._sessions.begin() as session:
            await _require_draft(session, draft_id)
            session.add(flag)
        return flag

    # Moderation.

    async def resolve_flag(
        self, flag_id: int, *, moderator_id: str, uphold: bool, note: str | None = None
    ) -> Flag:
        """Decide an open flag; upholding it removes its draft. Returns the flag, draft loaded.

        The first decision wins: one conditional UPDATE, so of two moderators deciding at
        once exactly one succeeds and the other gets FlagAlreadyResolved (with who decided,
        how and when). The decision, the draft's removal and the log line are one
        transaction: an acknowledged decision never lacks its log line. Raises FlagNotFound
        for an unknown id.
        """
        now = utcnow()
        status = FlagStatus.UPHELD if uphold else FlagStatus.DISMISSED
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Flag)
                .where(Flag.id == flag_id, Flag.status == FlagStatus.OPEN)
                .values(status=status, resolved_by=moderator_id, resolved_at=now, note=note)
                .execution_options(synchronize_session=False)
            )
            decided = bool(result.rowcount)
            if decided and uphold:
                flagged = select(Flag.draft_id).where(Flag.id == flag_id).scalar_subquery()
                # An earlier upheld flag may have removed the draft already: keep who did.
                await session.execute(
                    update(Draft)
                    .where(Draft.id == flagged, Draft.removed_at.is_(None))
                    .values(removed_at=now, removed_by=moderator_id)
                    .execution_options(synchronize_session=False)
                )
            flag = await _load_flag(session, flag_id)
            if flag is not None and decided:
                session.add(
                    ModerationAction(
                        guild_id=flag.draft.guild_id,
                        flag_id=flag.id,
                        draft_id=flag.draft_id,
                        moderator_id=moderator_id,
                        action="uphold" if uphold else "dismiss",
                        note=note,
                        created_at=now,
                    )
                )
        # Raised after the transaction ends: a rollback would expire the flag they carry.
        if flag is None:
            raise FlagNotFound(flag_id)
        if not decided:
            raise FlagAlreadyResolved(flag)
        return flag

    async def get_flag(self, flag_id: int) -> Flag | None:
        """The flag with its draft loaded."""
        async with self._sessions() as session:
            return await _load_flag(session, flag_id)

    async def open_flags(self, guild_id: str | None = None, limit: int = 25) -> list[Flag]:
        """Flags awaiting a decision, oldest first, each with its draft loaded.

        `guild_id=None` lists every guild's (and the console's).
        """
        query = (
            select(Flag)
            .where(Flag.status == FlagStatus.OPEN)
            .order_by(Flag.created_at, Flag.id)
            .limit(limit)
            .options(selectinload(Flag.draft))
        )
        if guild_id is not None:
            query = query.join(Flag.draft).where(Draft.guild_id == guild_id)
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def log_action(
        self,
        *,
        guild_id: str | None,
        flag_id: int | None,
        draft_id: int | None,
        moderator_id: str,
        action: str,
        note: str | None = None,
    ) -> ModerationAction:
        """Add a line to the moderation log, e.g. a refused attempt; resolve_flag logs its own."""
        entry = ModerationAction(
            guild_id=guild_id,
            flag_id=flag_id,
            draft_id=draft_id,
            moderator_id=moderator_id,
            action=action,
            note=note,
            created_at=utcnow(),
        )
        async with self._sessions.begin() as session:
            session.add(entry)
        return entry

    async def recent_actions(
        self, guild_id: str | None = None, limit: int = 20
    ) -> list[ModerationAction]:
        """The moderation log, newest first; `guild_id=None` for every guild's."""
        query = (
            select(ModerationAction)
            .order_by(ModerationAction.created_at.desc(), ModerationAction.id.desc())
            .limit(limit)
        )
        if guild_id is not None:
            query = query.where(ModerationAction.guild_id == guild_id)
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def note_moderator(self, guild_id: str, member_id: str) -> None:
        """Record that a member acted as a moderator in a guild just now."""
        insert = self._insert(Moderator).values(
            guild_id=guild_id, member_id=member_id, last_seen_at=utcnow()
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[Moderator.guild_id, Moderator.member_id],
            set_={"last_seen_at": insert.excluded.last_seen_at},
        )
        async with self._sessions.begin() as session:
            await session.execute(upsert)

    async def moderator_count(self, guild_id: str, *, since: datetime | None = None) -> int:
        """How many members were seen moderating in the guild (since `since`, if given)."""
        query = select(func.count()).select_from(Moderator).where(Moderator.guild_id == guild_id)
        if since is not None:
            query = query.where(Moderator.last_seen_at >= since)
        async with self._sessions() as session:
            return await session.scalar(query) or 0

    # Privacy.

    async def set_consent(self, member_id: str, granted: bool) -> Consent:
        """Record a member's choice about training use, replacing their earlier one."""
        insert = self._insert(Consent).values(
            member_id=member_id, granted=granted, updated_at=utcnow()
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[Consent.member_id],
            set_={"granted": insert.excluded.granted, "updated_at": insert.excluded.updated_at},
        )
        async with self._sessions.begin() as session:
            consent = await session.scalar(
                upsert.returning(Consent), execution_options={"populate_existing": True}
            )
        assert consent is not None  # RETURNING always yields the inserted or updated row
        return consent

    async def get_consent(self, member_id: str) -> bool | None:
        """The member's choice, or None when they never made one."""
        async with self._sessions() as session:
            return await session.scalar(
                select(Consent.granted).where(Consent.member_id == member_id)
            )

    async def training_allowed(
        self, member_id: str, member_hash: str, *, consent_default: bool
    ) -> bool:
        """Whether exports would use what the member writes: their consent, else the default;
        after an erasure only a consent given since. `member_hash` as for erase_member."""
        async with self._sessions() as session:
            use = await _TrainingUse.load(
                session, [member_id], consent_default, {member_id: member_hash}
            )
        return use.allows(member_id)

    async def member_summary(self, member_id: str) -> dict[str, int]:
        """What is stored of a member: drafts written, ratings given, improvements, flags raised."""
        query = select(
            select(func.count()).where(Draft.author_id == member_id).scalar_subquery(),
            select(func.count()).where(Rating.member_id == member_id).scalar_subquery(),
            select(func.count()).where(Improvement.member_id == member_id).scalar_subquery(),
            select(func.count()).where(Flag.member_id == member_id).scalar_subquery(),
        )
        async with self._sessions() as session:
            drafts, ratings, improvements, flags = (await session.execute(query)).one()
        return {"drafts": drafts, "ratings": ratings, "improvements": improvements, "flags": flags}

    async def erase_member(self, member_id: str, member_hash: str) -> dict[str, int]:
        """Delete everything a member wrote or gave, and enter them in the erasure ledger.

        One transaction. Deleted: the member's ratings, improvements and flags on any draft;
        their drafts, with the regenerations others made of them (those repeat the member's
        inputs) and all feedback on those; their consent and their moderator row (re-created
        the next time they moderate). Kept: the moderation log, and `resolved_by` /
        `removed_by` on others' flags and drafts (records of moderation, not their content).
        `member_hash` is the caller's keyed hash of the id (see storage.pseudonyms); the
        ledger keeps later exports free of the member's new drafts until they consent again.
        Returns how many of the member's rows went, per kind; feedback others gave on the
        deleted drafts is not counted.
        """
        now = utcnow()
        own = aliased(Draft)  # not correlated with the outer DELETE's drafts
        own_drafts = select(own.id).where(own.author_id == member_id)
        ledger = self._insert(Erasure).values(member_hash=member_hash, erased_at=now)
        ledger = ledger.on_conflict_do_update(
            index_elements=[Erasure.member_hash], set_={"erased_at": ledger.excluded.erased_at}
        )
        given = {"ratings": Rating, "improvements": Improvement, "flags": Flag}
        counts: dict[str, int] = {}
        async with self._sessions.begin() as session:
            for kind, model in given.items():
                result = await session.execute(
                    delete(model)
                    .where(model.member_id == member_id)
                    .execution_options(synchronize_session=False)
                )
                counts[kind] = result.rowcount
            result = await session.execute(
                delete(Draft)
                .where(or_(Draft.author_id == member_id, Draft.parent_id.in_(own_drafts)))
                .execution_options(synchronize_session=False)
            )
            counts["drafts"] = result.rowcount
            await session.execute(delete(Consent).where(Consent.member_id == member_id))
            await session.execute(delete(Moderator).where(Moderator.member_id == member_id))
            await session.execute(ledger)
        return {kind: counts[kind] for kind in ("drafts", "ratings", "improvements", "flags")}

    # Exports.

    async def count_feedback(self, filters: FeedbackFilter = FeedbackFilter()) -> int:
        """How many drafts iter_feedback will read with these filters (before the consent rules): a progress bar's total."""
        query = select(func.count()).select_from(Draft).where(*_exportable(filters))
        async with self._sessions() as session:
            return (await session.scalar(query)) or 0

    async def count_exclusions(
        self, filters: FeedbackFilter = FeedbackFilter(), *, consent_default: bool = False,
        pseudonym_key: bytes | None = None,
    ) -> Exclusions:
        """How many drafts each of iter_feedback's rules leaves out (storage.exclusions counts them)."""
        return await count_exclusions(self._sessions, filters, exportable=_exportable, training_use=_TrainingUse.load,
                                      consent_default=consent_default, pseudonym_key=pseudonym_key)

    async def iter_feedback(
        self,
        batch_size: int = 500,
        *,
        filters: FeedbackFilter = FeedbackFilter(),
        consent_default: bool = False,
        pseudonym_key: bytes | None = None,
        pseudonymize: bool = True,
        on_page: Callable[[int], None] | None = None,
    ) -> AsyncIterator[FeedbackRecord]:
        """Finished drafts that may be used for training and match `filters`, `batch_size` at a time.

        Left out: drafts a moderator removed or an open or upheld flag holds back, and drafts
        whose author does not allow training use, nor, for a regeneration, the author of the
        original (who wrote the inputs); improvements are kept only from members who allow
        it. A member allows it by their consent, else by `consent_default`; after an erasure
        only by consenting again. The erasure ledger holds keyed hashes, so once it has
        entries the export needs `pseudonym_key`, the key they were made with (StorageError
        otherwise); with a key and `pseudonymize`, each record's `author` is the author's
        pseudonym, else None. `on_page` is told how many drafts each page read, excluded or not.

        Ordered by request (the original draft, then its regenerations) so that the drafts of
        one request arrive together and exports can pair them while streaming. Keyset
        pagination over the request index with a short session per batch, and ratings,
        consents and ledger entries looked up per batch: memory and the time per batch stay
        flat however large the tables, and no transaction stays open while the caller writes.
        """
        request = func.coalesce(Draft.parent_id, Draft.id)
        query = (
            select(Draft)
            .where(*_exportable(filters))
            .order_by(request, Draft.id)
            .limit(batch_size)
            .options(selectinload(Draft.improvements))
        )
        key = pseudonym_key
        if key is None:
            async with self._sessions() as session:
                if await session.scalar(select(Erasure.id).limit(1)) is not None:
                    raise StorageError(
                        "members have asked for erasure: an export needs the pseudonym key "
                        "to leave them out"
                    )
        last_request, last_id = 0, 0
        while True:
            async with self._sessions() as session:
                # (request, id) > (last_request, last_id), spelled so that SQLite seeks along the index
                page = query.where(request >= last_request, or_(request > last_request, Draft.id > last_id))
                drafts = (await session.scalars(page)).all()
                votes = await _votes(session, [draft.id for draft in drafts])
                originals = await _original_authors(session, drafts)
                members = {d.author_id for d in drafts} | set(originals.values())
                members |= {i.member_id for d in drafts for i in d.improvements}
                hashes = {} if key is None else {m: member_hash(key, m) for m in members}
                use = await _TrainingUse.load(session, members, consent_default, hashes)
            if on_page is not None:
                on_page(len(drafts))
            for draft in drafts:
                original = originals.get(draft.parent_id) if draft.parent_id else None
                if not use.allows(draft.author_id):
                    continue
                if original is not None and not use.allows(original):
                    continue  # a regeneration repeats the original author's inputs
                ups, downs = votes.get(draft.id, (0, 0))
                yield FeedbackRecord.from_draft(
                    draft, ups=ups, downs=downs,
                    author=pseudonym(key, draft.author_id) if key is not None and pseudonymize else None,
                    improvements=[i for i in draft.improvements if use.allows(i.member_id)],
                )
            if len(drafts) < batch_size:
                return
            last_request, last_id = drafts[-1].parent_id or drafts[-1].id, drafts[-1].id


def _exportable(filters: FeedbackFilter) -> list[ColumnElement[bool]]:
    """Finished, not removed, not held back by an open or upheld flag, and within the filters."""
    held_back = exists().where(Flag.draft_id == Draft.id, Flag.status.in_((FlagStatus.OPEN, FlagStatus.UPHELD)))
    return [Draft.status == DraftStatus.DONE, Draft.removed_at.is_(None), ~held_back, *filters.conditions()]


async def _votes(session: AsyncSession, draft_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Draft id → (ups, downs), counted by the database rather than loaded rating by rating."""
    if not draft_ids:
        return {}
    rows = await session.execute(
        select(Rating.draft_id, func.count().filter(Rating.value > 0), func.count().filter(Rating.value < 0))
        .where(Rating.draft_id.in_(draft_ids)).group_by(Rating.draft_id)
    )
    return {draft_id: (ups, downs) for draft_id, ups, downs in rows}


@dataclass(frozen=True, slots=True)
class _TrainingUse:
    """Which of some members allow training use: their consents and ledger entries.

    The one rule, for exports and for what /privacy shows: a member's consent, else the
    default; once in the erasure ledger, only a consent given after the erasure.
    """

    default: bool
    consents: dict[str, tuple[bool, datetime]]  # member id → (granted, updated_at)
    erased: dict[str, datetime]  # member id → erased_at, for members in the ledger

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        members: Collection[str],
        default: bool,
        hashes: Mapping[str, str],  # member id → ledger hash, for those that can be checked
    ) -> _TrainingUse:
        consents: dict[str, tuple[bool, datetime]] = {}
        erased: dict[str, datetime] = {}
        if members:
            rows = await session.execute(
                select(Consent.member_id, Consent.granted, Consent.updated_at).where(
                    Consent.member_id.in_(members)
                )
            )
            consents = {member: (granted, at) for member, granted, at in rows}
        if hashes:
            by_hash = {hashed: member for member, hashed in hashes.items()}
            rows = await session.execute(
                select(Erasure.member_hash, Erasure.erased_at).where(
                    Erasure.member_hash.in_(by_hash)
                )
            )
            erased = {by_hash[hashed]: at for hashed, at in rows}
        return cls(default, consents, erased)

    def allows(self, member_id: str) -> bool:
        granted, updated_at = self.consents.get(member_id, (None, None))
        erased_at = self.erased.get(member_id)
        if erased_at is not None:
            return bool(granted) and updated_at is not None and updated_at > erased_at
        return self.default if granted is None else granted


async def _original_authors(session: AsyncSession, drafts: Sequence[Draft]) -> dict[int, str]:
    """Draft id → author of the originals the regenerations among `drafts` repeat."""
    parents = {draft.parent_id for draft in drafts if draft.parent_id is not None}
    if not parents:
        return {}
    rows = await session.execute(select(Draft.id, Draft.author_id).where(Draft.id.in_(parents)))
    return {draft_id: author for draft_id, author in rows}


async def _load_flag(session: AsyncSession, flag_id: int) -> Flag | None:
    return await session.scalar(
        select(Flag)
        .where(Flag.id == flag_id)
        .options(selectinload(Flag.draft))
        .execution_options(populate_existing=True)
    )


async def _require_draft(session: AsyncSession, draft_id: int) -> None:
    if await session.scalar(select(Draft.id).where(Draft.id == draft_id)) is None:
        raise DraftNotFound(draft_id)
