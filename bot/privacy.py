"""Members' data: what is stored about them, consent to training use, and erasure on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage import Repository, member_hash

if TYPE_CHECKING:
    from bot.service import Member


@dataclass(frozen=True)
class PrivacySummary:
    stored: dict[str, int]  # kind → count: drafts, ratings, improvements, flags
    training_use: bool  # whether their drafts may be exported for training now
    chosen: bool  # False while the server's default applies


class Privacy:
    def __init__(self, repository: Repository, member_key: bytes, *, consent_default: bool) -> None:
        self._repository = repository
        self._member_key = member_key
        self._consent_default = consent_default

    async def summary(self, member: Member) -> PrivacySummary:
        allowed = await self._repository.training_allowed(
            member.id, member_hash(self._member_key, member.id), consent_default=self._consent_default)
        return PrivacySummary(
            stored=await self._repository.member_summary(member.id),
            training_use=allowed,
            chosen=await self._repository.get_consent(member.id) is not None,
        )

    async def set_training_use(self, member: Member, allowed: bool) -> None:
        await self._repository.set_consent(member.id, allowed)

    async def erase(self, member: Member) -> dict[str, int]:
        """Delete everything the member wrote or rated; a keyed hash in the ledger keeps them out of exports."""
        return await self._repository.erase_member(member.id, member_hash(self._member_key, member.id))
