"""Feedback members give on a draft: ratings, better versions, flags."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.models import Flag, FlagSource, FlagStatus, Improvement, Rating, utcnow
from storage.repository.base import RepositoryBase, require_draft


class FeedbackRepository(RepositoryBase):
    """Each write checks that the draft exists, so feedback never points at nothing."""

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
            await require_draft(session, draft_id)
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
            await require_draft(session, draft_id)
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
            await require_draft(session, draft_id)
            session.add(flag)
        return flag

