"""A draft's rows: created queued, then moved along its lifecycle, shown in a message, deleted."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from storage.errors import DraftNotFound
from storage.models import Draft, DraftStatus, utcnow
from storage.repository.base import RepositoryBase, require_draft, rowcount

ACTIVE = (DraftStatus.QUEUED, DraftStatus.RUNNING)


class DraftsRepository(RepositoryBase):
    """Drafts and their lifecycle: queued → running → done | failed | cancelled | interrupted."""

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
        return await self._transition(draft_id, ACTIVE, output=output)

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
            ACTIVE,
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
            draft_id, ACTIVE, status=DraftStatus.FAILED, error=error, finished_at=utcnow(), **extra
        )

    async def cancel_draft(self, draft_id: int, output: str | None = None) -> bool:
        """`output=None` keeps the partial output record_progress saved."""
        extra = {} if output is None else {"output": output}
        return await self._transition(
            draft_id, ACTIVE, status=DraftStatus.CANCELLED, finished_at=utcnow(), **extra
        )

    async def interrupt_draft(self, draft_id: int, reason: str, output: str | None = None) -> bool:
        """The process is stopping before the draft is finished; `output=None` keeps the partial output."""
        extra = {} if output is None else {"output": output}
        return await self._transition(
            draft_id, ACTIVE, status=DraftStatus.INTERRUPTED, error=reason, finished_at=utcnow(), **extra
        )

    async def interrupt_unfinished(self, reason: str) -> int:
        """Mark every queued or running draft interrupted: at start, when no process can still be writing them."""
        async with self._sessions.begin() as session:
            return await rowcount(
                session,
                update(Draft)
                .where(Draft.status.in_(ACTIVE))
                .values(status=DraftStatus.INTERRUPTED, error=reason, finished_at=utcnow())
                .execution_options(synchronize_session=False),
            )

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
            changed = await rowcount(
                session,
                update(Draft)
                .where(Draft.id == draft_id, Draft.status.in_(allowed))
                .values(**values)
                .execution_options(synchronize_session=False),
            )
            if changed:
                return True
            await require_draft(session, draft_id)
            return False


    async def set_message(self, draft_id: int, channel_id: str, message_id: str) -> None:
        """Remember the message that shows the draft, so it can be edited when moderated."""
        async with self._sessions.begin() as session:
            changed = await rowcount(
                session,
                update(Draft)
                .where(Draft.id == draft_id)
                .values(channel_id=channel_id, message_id=message_id)
                .execution_options(synchronize_session=False),
            )
            if not changed:
                raise DraftNotFound(draft_id)

    async def delete_draft(self, draft_id: int) -> None:
        """Delete a draft; the database deletes its feedback and unlinks its regenerations."""
        async with self._sessions.begin() as session:
            if not await rowcount(session, delete(Draft).where(Draft.id == draft_id)):
                raise DraftNotFound(draft_id)

