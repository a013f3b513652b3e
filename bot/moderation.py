"""Moderators' use cases: the open queue, decisions on flags (first one wins), and the audit log.

Who is a moderator is a front-end's question (Discord roles and permissions); the rules about
what a moderator may do, and the log of what they did, live here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.errors import ServiceError
from storage import (
    Flag,
    FlagAlreadyResolved,
    FlagNotFound,
    ModerationAction,
    Repository,
)

if TYPE_CHECKING:
    from bot.service import Member


class ModerationError(ServiceError):
    """A moderator's action that is refused, with the reason to show them."""


class Moderation:
    def __init__(self, repository: Repository) -> None:
        self._repository = repository

    async def seen(self, moderator: Member) -> None:
        """Count this member among the server's moderators (a check just confirmed they are one)."""
        if moderator.guild_id:
            await self._repository.note_moderator(moderator.guild_id, moderator.id)

    async def queue(self, guild_id: str | None, limit: int = 25) -> list[Flag]:
        """Open flags, oldest first."""
        return await self._repository.open_flags(guild_id, limit=limit)

    async def flag(self, flag_id: int) -> Flag:
        flag = await self._repository.get_flag(flag_id)
        if flag is None:
            raise FlagNotFound(flag_id)
        return flag

    async def decide(self, moderator: Member, flag_id: int, *, uphold: bool, note: str | None = None) -> Flag:
        """Uphold (the draft is removed everywhere) or dismiss a flag; the first decision wins."""
        flag = await self.flag(flag_id)
        if moderator.guild_id and flag.draft.guild_id and flag.draft.guild_id != moderator.guild_id:
            raise ModerationError(f"flag #{flag_id} belongs to another server")
        if flag.draft.author_id == moderator.id and await self._moderators(moderator) > 1:
            await self._refused(moderator, flag, "own draft")
            raise ModerationError(f"flag #{flag_id} is about your own draft; another moderator will decide it")
        try:
            return await self._repository.resolve_flag(flag_id, moderator_id=moderator.id, uphold=uphold, note=note)
        except FlagAlreadyResolved as already:
            await self._refused(moderator, flag, f"already {already.status}")
            raise ModerationError(
                f"flag #{flag_id} was already {already.status} by <@{already.resolved_by}>"
            ) from None

    async def log(self, guild_id: str | None, limit: int = 20) -> list[ModerationAction]:
        return await self._repository.recent_actions(guild_id, limit=limit)

    async def _moderators(self, moderator: Member) -> int:
        return await self._repository.moderator_count(moderator.guild_id) if moderator.guild_id else 1

    async def _refused(self, moderator: Member, flag: Flag, why: str) -> None:
        await self._repository.log_action(guild_id=moderator.guild_id, flag_id=flag.id, draft_id=flag.draft_id,
                                          moderator_id=moderator.id, action="refused", note=why)
