"""Why drafts were left out of an export: how many drafts each rule kept out, so that an empty or small
export says why (training use is opt-in: without consents, a first export has no rows).

Each draft is counted once, under the first rule it fails, in the order of `Reason`: first the
export's filters (its server, when it has one, is the scope: drafts of other servers are not
counted at all), then the rules the repository's export read applies (the rules themselves are
passed in from there, so they have one home): unfinished, removed by a moderator, awaiting review
(an open flag, or an upheld one), then its author's training use (erased, or no consent), or for
a regeneration the original author's, whose inputs it repeats.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.database import Sessions
from storage.feedback import FeedbackFilter
from storage.models import Draft, DraftStatus
from storage.pseudonyms import member_hash

MEMBERS_PER_QUERY = 500


class Reason(StrEnum):
    OUTSIDE_FILTERS = "outside the filters"
    UNFINISHED = "unfinished"
    REMOVED = "removed by a moderator"
    AWAITING_REVIEW = "awaiting review"
    ERASED = "erased"
    NO_CONSENT = "no consent"


EXPLANATIONS = {
    Reason.OUTSIDE_FILTERS: "created outside the dates, tasks, models or template versions asked for",
    Reason.UNFINISHED: "queued, running, failed, cancelled or interrupted",
    Reason.REMOVED: "a moderator upheld a flag on them",
    Reason.AWAITING_REVIEW: "an open flag (a member's, or the automatic checks') holds them back",
    Reason.ERASED: "their author asked for erasure and has not allowed training use since",
    Reason.NO_CONSENT: "their author has not allowed training use (it is opt-in)",
}


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Drafts left out, by reason (in `Reason` order, every reason present)."""

    counts: Mapping[Reason, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        """One line for a terminal or a chat message."""
        if not self.total:
            return "left out: no draft"
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.counts.items() if count)
        return f"left out: {self.total} draft{'' if self.total == 1 else 's'} ({reasons})"


class TrainingUse(Protocol):
    @property
    def erased(self) -> Mapping[str, object]: ...  # members in the erasure ledger

    def allows(self, member_id: str) -> bool: ...


LoadTrainingUse = Callable[[AsyncSession, Collection[str], bool, Mapping[str, str]], Awaitable[TrainingUse]]


async def count_exclusions(
    sessions: Sessions,
    filters: FeedbackFilter,
    *,
    exportable: Callable[[FeedbackFilter], list[ColumnElement[bool]]],
    training_use: LoadTrainingUse,
    consent_default: bool,
    pseudonym_key: bytes | None,
) -> Exclusions:
    """Count, in one read session, the drafts `exportable(filters)` and the training-use rule leave out.

    `exportable` and `training_use` are the repository's own rules; `pseudonym_key` makes the
    erasure ledger checkable (without it, erased members count as not consenting, if at all).
    """
    within = filters.conditions()
    finished = [*within, Draft.status == DraftStatus.DONE]
    kept = [*finished, Draft.removed_at.is_(None)]
    read = exportable(filters)
    async with sessions() as session:
        sizes = [await _count(session, conditions) for conditions in
                 (FeedbackFilter(guild_id=filters.guild_id).conditions(), within, finished, kept, read)]
        refused = await _refused(session, read, training_use, consent_default, pseudonym_key)
    scope, inside, done, not_removed, readable = sizes
    counts = {
        Reason.OUTSIDE_FILTERS: scope - inside,
        Reason.UNFINISHED: inside - done,
        Reason.REMOVED: done - not_removed,
        Reason.AWAITING_REVIEW: not_removed - readable,
        Reason.ERASED: refused.get(Reason.ERASED, 0),
        Reason.NO_CONSENT: refused.get(Reason.NO_CONSENT, 0),
    }
    return Exclusions(counts)


async def _count(session: AsyncSession, conditions: Iterable[ColumnElement[bool]]) -> int:
    return (await session.scalar(select(func.count()).select_from(Draft).where(*conditions))) or 0


async def _refused(
    session: AsyncSession, read: list[ColumnElement[bool]], training_use: LoadTrainingUse, consent_default: bool,
    pseudonym_key: bytes | None,
) -> dict[Reason, int]:
    """Of the drafts the export reads, those whose author (or original author) does not allow training use."""
    original = aliased(Draft)
    by_authors = (
        select(Draft.author_id, original.author_id, func.count())
        .outerjoin(original, original.id == Draft.parent_id)
        .where(*read)
        .group_by(Draft.author_id, original.author_id)
    )
    pairs = [(author, original_author, count) for author, original_author, count in await session.execute(by_authors)]
    members = sorted({author for author, _, _ in pairs} | {author for _, author, _ in pairs if author is not None})
    verdicts: dict[str, Reason | None] = {}
    for start in range(0, len(members), MEMBERS_PER_QUERY):
        chunk = members[start:start + MEMBERS_PER_QUERY]
        hashes = {} if pseudonym_key is None else {member: member_hash(pseudonym_key, member) for member in chunk}
        use = await training_use(session, chunk, consent_default, hashes)
        verdicts |= {member: None if use.allows(member) else Reason.ERASED if member in use.erased
                     else Reason.NO_CONSENT for member in chunk}
    refused: dict[Reason, int] = {}
    for author, original_author, count in pairs:
        reason = verdicts[author] or (verdicts[original_author] if original_author is not None else None)
        if reason is not None:
            refused[reason] = refused.get(reason, 0) + count
    return refused
