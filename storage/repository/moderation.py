"""Moderation: deciding flags, the moderation log, and who moderates where."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.errors import FlagAlreadyResolved, FlagNotFound
from storage.models import Draft, Flag, FlagStatus, ModerationAction, Moderator, utcnow
from storage.repository.base import RepositoryBase, rowcount


class ModerationRepository(RepositoryBase):
    """Flags are decided once; every decision and every refusal leaves a log line."""

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
            decided = bool(await rowcount(
                session,
                update(Flag)
                .where(Flag.id == flag_id, Flag.status == FlagStatus.OPEN)
                .values(status=status, resolved_by=moderator_id, resolved_at=now, note=note)
                .execution_options(synchronize_session=False),
            ))
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


async def _load_flag(session: AsyncSession, flag_id: int) -> Flag | None:
    return await session.scalar(
        select(Flag)
        .where(Flag.id == flag_id)
        .options(selectinload(Flag.draft))
        .execution_options(populate_existing=True)
    )


