"""A draft's rows: created queued, then moved along its lifecycle, shown in a message, deleted."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Update, delete, select, update

from storage.errors import DraftNotFound
from storage.lifecycle import ACTIVE, STOPPED_AS, DraftStatus, StopReason, check, sources
from storage.models import BASE_VERSION, Draft, utcnow
from storage.repository.base import RepositoryBase, require_draft, rowcount


class DraftsRepository(RepositoryBase):
    """Drafts and their lifecycle; every status change goes through storage.lifecycle's table."""

    async def create_draft(
        self,
        *,
        task: str,
        inputs: dict[str, str],
        system_prompt: str,
        user_prompt: str,
        template_version: str,
        platform: str = "generic",
        model: str,
        quantization: str,
        sampling: dict[str, Any],
        seed: int | None,
        author_id: str,
        guild_id: str | None = None,
        channel_id: str | None = None,
        parent_id: int | None = None,
        model_version: str = BASE_VERSION,
        language: str | None = None,
        experiment_id: int | None = None,
        variant: str | None = None,
    ) -> Draft:
        """Record a request as queued, before any generation starts."""
        draft = Draft(
            task=task,
            inputs=inputs,
            system_prompt=system_prompt,
            user_prompt=user_prompt,
            template_version=template_version,
            platform=platform,
            model=model,
            model_version=model_version,
            quantization=quantization,
            sampling=sampling,
            seed=seed,
            author_id=author_id,
            guild_id=guild_id,
            channel_id=channel_id,
            parent_id=parent_id,
            language=language,
            experiment_id=experiment_id,
            variant=variant,
            status=DraftStatus.QUEUED,
            output="",
            created_at=utcnow(),
        )
        async with self._sessions.begin() as session:
            session.add(draft)
        return draft

    async def mark_running(self, draft_id: int) -> bool:
        return await self._move(draft_id, DraftStatus.RUNNING, started_at=utcnow())

    async def record_progress(self, draft_id: int, output: str) -> bool:
        """Save the output so far, so a crash keeps what was generated; False once the draft ended."""
        async with self._sessions.begin() as session:
            if await rowcount(session, _update(draft_id, ACTIVE, output=output)):
                return True
            await require_draft(session, draft_id)
            return False

    async def finish_draft(
        self,
        draft_id: int,
        *,
        output: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: int,
        ttft_ms: int | None,
        quality: dict[str, Any] | None = None,
        fields: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Store the finished draft; a platform draft with its fields (generation.platforms' JSON)."""
        return await self._move(
            draft_id,
            DraftStatus.DONE,
            output=output,
            fields=fields,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            quality=quality,
            finished_at=utcnow(),
        )

    async def stop_draft(
        self, draft_id: int, reason: StopReason, *, error: str | None = None, output: str | None = None
    ) -> bool:
        """End an unfinished draft in the status its stop reason calls for (storage.lifecycle.STOPPED_AS).

        `output=None` keeps the partial output record_progress saved.
        """
        extra = {} if output is None else {"output": output}
        return await self._move(draft_id, STOPPED_AS[reason], **_stopped(reason, error), **extra)

    async def fail_draft(self, draft_id: int, error: str, output: str | None = None) -> bool:
        """The engine or copydesk failed; `output=None` keeps the partial output."""
        return await self.stop_draft(draft_id, StopReason.ERROR, error=error, output=output)

    async def cancel_draft(self, draft_id: int, output: str | None = None) -> bool:
        """Its member withdrew it; `output=None` keeps the partial output."""
        return await self.stop_draft(draft_id, StopReason.MEMBER, output=output)

    async def interrupt_draft(self, draft_id: int, reason: str, output: str | None = None) -> bool:
        """The process is stopping before the draft is finished; `output=None` keeps the partial output."""
        return await self.stop_draft(draft_id, StopReason.SHUTDOWN, error=reason, output=output)

    async def interrupt_unfinished(self, reason: str) -> int:
        """Mark every queued or running draft interrupted by a crash: at start, when no process can still be
        writing them."""
        wanted = STOPPED_AS[StopReason.CRASH]
        async with self._sessions.begin() as session:
            return await rowcount(
                session,
                update(Draft)
                .where(Draft.status.in_(sources(wanted)))
                .values(status=wanted, **_stopped(StopReason.CRASH, reason))
                .execution_options(synchronize_session=False),
            )

    async def unannounced_interruptions(self, since: datetime) -> list[Draft]:
        """Interrupted drafts asked for in a channel that no message shows yet: their members were not told."""
        query = (
            select(Draft)
            .where(Draft.status == DraftStatus.INTERRUPTED, Draft.channel_id.is_not(None),
                   ~Draft.member_told, Draft.finished_at > since)
            .order_by(Draft.id)
        )
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def _move(self, draft_id: int, wanted: DraftStatus, **values: Any) -> bool:
        """Change the draft's status to `wanted`, with `values`, where the lifecycle table allows it.

        One conditional UPDATE, so of two racing changes one wins. When the draft is not in a status
        the table moves to `wanted` from, nothing changes and storage.lifecycle.check says what
        follows: False for a draft that already ended (e.g. a generation finishing after its draft
        was cancelled: it stays as it ended), IllegalTransition otherwise.
        """
        async with self._sessions.begin() as session:
            if await rowcount(session, _update(draft_id, sources(wanted), status=wanted, **values)):
                return True
            current = await session.scalar(select(Draft.status).where(Draft.id == draft_id))
        if current is None:
            raise DraftNotFound(draft_id)
        return check(draft_id, current, wanted)

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


def _update(draft_id: int, allowed: Collection[DraftStatus], **values: Any) -> Update:
    """Set `values` on the draft if its status is one of `allowed`."""
    return (
        update(Draft)
        .where(Draft.id == draft_id, Draft.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _stopped(reason: StopReason, error: str | None) -> dict[str, Any]:
    """What every stopped draft records: why, the error if any, and when."""
    return {"stop_reason": reason, "error": error, "finished_at": utcnow()}
