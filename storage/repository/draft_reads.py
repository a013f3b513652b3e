"""What the service reads about drafts: one with its feedback, recent ones, and counts for limits and status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from storage.lifecycle import ACTIVE
from storage.models import Draft, DraftStatus
from storage.repository.base import RepositoryBase

# What a member asked for at once: a draft alone, or the variants of one request together.
_request = func.coalesce(Draft.variant_group, Draft.id)


@dataclass(frozen=True, slots=True)
class Activity:
    counts: dict[str, int]  # draft status → drafts created in the window
    tokens: int  # tokens of the drafts finished in the window


class DraftReadsRepository(RepositoryBase):
    """Reads of drafts; returned objects are detached and safe to keep."""

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
        """Requests with queued or running drafts created after `since` (older ones were left by a crash), of one
        author or all. Variants asked for together are one request, as the member asked once."""
        query = select(func.count(func.distinct(_request))).where(Draft.status.in_(ACTIVE), Draft.created_at > since)
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
        """When the author asked for drafts after `since`, oldest first: what a rate limit counts (variants
        asked for together once)."""
        asked = func.min(Draft.created_at)
        query = (select(asked).where(Draft.author_id == author_id, Draft.created_at > since)
                 .group_by(_request).order_by(asked))
        async with self._sessions() as session:
            return list(await session.scalars(query))

