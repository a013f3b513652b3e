"""Use-case-sized database operations; each is one session and one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.database import Database
from storage.errors import DraftNotFound, StorageError
from storage.feedback import FeedbackRecord
from storage.models import (
    Draft,
    DraftStatus,
    Flag,
    FlagSource,
    FlagStatus,
    Improvement,
    Rating,
    utcnow,
)

_ACTIVE = (DraftStatus.QUEUED, DraftStatus.RUNNING)
_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class Repository:
    """The storage use cases the service calls; returned objects are detached and safe to keep."""

    def __init__(self, database: Database) -> None:
        dialect = database.engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise StorageError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
        self._sessions = database.sessions
        self._insert = _UPSERT_INSERTS[dialect]

    # Drafts and their lifecycle: queued → running → done | failed | cancelled.

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

    # Exports.

    async def iter_feedback(self, batch_size: int = 500) -> AsyncIterator[FeedbackRecord]:
        """Finished drafts no moderator concern holds back, `batch_size` at a time.

        Ordered by request (the original draft, then its regenerations) so that the drafts of
        one request arrive together and exports can pair them while streaming. Keyset
        pagination with a short session per batch: memory stays flat however large the table,
        and no transaction stays open while the caller writes the export.
        """
        held_back = exists().where(
            Flag.draft_id == Draft.id, Flag.status.in_((FlagStatus.OPEN, FlagStatus.UPHELD))
        )
        request = func.coalesce(Draft.parent_id, Draft.id)
        query = (
            select(Draft)
            .where(Draft.status == DraftStatus.DONE, ~held_back)
            .order_by(request, Draft.id)
            .limit(batch_size)
            .options(selectinload(Draft.ratings), selectinload(Draft.improvements))
        )
        last_request, last_id = 0, 0
        while True:
            after = or_(request > last_request, and_(request == last_request, Draft.id > last_id))
            async with self._sessions() as session:
                drafts = (await session.scalars(query.where(after))).all()
            for draft in drafts:
                yield FeedbackRecord.from_draft(draft)
            if len(drafts) < batch_size:
                return
            last_request, last_id = drafts[-1].parent_id or drafts[-1].id, drafts[-1].id


async def _require_draft(session: AsyncSession, draft_id: int) -> None:
    if await session.scalar(select(Draft.id).where(Draft.id == draft_id)) is None:
        raise DraftNotFound(draft_id)
