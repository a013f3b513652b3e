"""What the team made of each model version's drafts, or each experiment variant's: the counts behind
`copydesk stats`."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Subquery, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Draft, DraftStatus, Flag, Improvement, Rating
from storage.repository.base import RepositoryBase


@dataclass(frozen=True, slots=True)
class VersionTally:
    """One model version's finished drafts (removed ones left out) and the feedback on them; in an
    experiment, one variant's."""

    version: str  # the model version, or in an experiment the variant's label
    drafts: int
    rated: int  # drafts with at least one counted vote
    up: int  # 👍 votes counted (see `votes_per_member`)
    down: int
    improvements: int
    flags: int
    median_ttft_ms: float | None
    median_completion_tokens: float | None


@dataclass(frozen=True, slots=True)
class DraftVotes:
    created_at: datetime
    version: str
    task: str
    up: int  # counted 👍 votes
    down: int


class VersionStatsRepository(RepositoryBase):
    async def version_tallies(self, *, task: str | None = None, since: datetime | None = None,
                              guild_id: str | None = None, votes_per_member: int = 0,
                              experiment_id: int | None = None) -> list[VersionTally]:
        """Per version (per variant, with `experiment_id`), oldest first by its first draft. With
        `votes_per_member` > 0 only each member's first that many votes on a version count, so that one
        member's flood of votes cannot decide alone."""
        conditions, key = _selected(task, since, guild_id, experiment_id)
        votes = _counted_votes(conditions, key, votes_per_member)
        async with self._sessions() as session:
            drafts = await session.execute(
                select(key, Draft.ttft_ms, Draft.completion_tokens).where(*conditions).order_by(Draft.id))
            vote_rows = await session.execute(
                select(votes.c.key, func.count(func.distinct(votes.c.draft_id)),
                       func.count().filter(votes.c.value > 0), func.count().filter(votes.c.value < 0))
                .group_by(votes.c.key))
            improved = await _per_version(session, Improvement, conditions, key)
            flagged = await _per_version(session, Flag, conditions, key)
        per_version: dict[str, list[tuple[int | None, int | None]]] = {}  # in order of each version's first draft
        for version, ttft_ms, tokens in drafts:
            per_version.setdefault(version, []).append((ttft_ms, tokens))
        rated = {version: (count, up, down) for version, count, up, down in vote_rows}
        tallies = []
        for version, rows in per_version.items():
            count, up, down = rated.get(version, (0, 0, 0))
            tallies.append(VersionTally(
                version=version, drafts=len(rows), rated=count, up=up, down=down,
                improvements=improved.get(version, 0), flags=flagged.get(version, 0),
                median_ttft_ms=_median([ttft for ttft, _ in rows]),
                median_completion_tokens=_median([tokens for _, tokens in rows])))
        return tallies

    async def draft_votes(self, *, task: str | None = None, since: datetime | None = None,
                          guild_id: str | None = None, votes_per_member: int = 0,
                          experiment_id: int | None = None) -> list[DraftVotes]:
        """Each selected draft with its counted votes, oldest first: what the charts draw over time."""
        conditions, key = _selected(task, since, guild_id, experiment_id)
        votes = _counted_votes(conditions, key, votes_per_member)
        per_draft = (select(votes.c.draft_id, func.count().filter(votes.c.value > 0).label("up"),
                            func.count().filter(votes.c.value < 0).label("down"))
                     .group_by(votes.c.draft_id).subquery())
        async with self._sessions() as session:
            rows = await session.execute(
                select(Draft.created_at, key, Draft.task, func.coalesce(per_draft.c.up, 0),
                       func.coalesce(per_draft.c.down, 0))
                .outerjoin(per_draft, per_draft.c.draft_id == Draft.id).where(*conditions).order_by(Draft.id))
            return [DraftVotes(*row) for row in rows]


def _selected(task: str | None, since: datetime | None, guild_id: str | None,
              experiment_id: int | None) -> tuple[list[ColumnElement[bool]], ColumnElement[str]]:
    """Finished drafts a moderator has not removed, of `task` (else every task), created since `since`,
    made in the Discord server `guild_id` (else anywhere), of experiment `experiment_id` (else any); and
    what they are told apart by: the model version, or in an experiment the variant."""
    conditions: list[ColumnElement[bool]] = [Draft.status == DraftStatus.DONE, Draft.removed_at.is_(None)]
    key: ColumnElement[str] = Draft.model_version.expression
    if experiment_id is not None:
        conditions += [Draft.experiment_id == experiment_id, Draft.variant.is_not(None)]
        key = func.coalesce(Draft.variant, "")
    if task is not None:
        conditions.append(Draft.task == task)
    if since is not None:
        conditions.append(Draft.created_at >= since)
    if guild_id is not None:
        conditions.append(Draft.guild_id == guild_id)
    return conditions, key


def _counted_votes(conditions: list[ColumnElement[bool]], key: ColumnElement[str], votes_per_member: int) -> Subquery:
    """The votes on the selected drafts that count: with `votes_per_member` > 0, each member's first that many
    per version (per `key`)."""
    numbered = (
        select(key.label("key"), Rating.draft_id, Rating.value,
               func.row_number().over(partition_by=(key, Rating.member_id),
                                      order_by=Rating.id).label("nth"))
        .join(Rating, Rating.draft_id == Draft.id).where(*conditions).subquery()
    )
    counted = select(numbered).where(numbered.c.nth <= votes_per_member) if votes_per_member > 0 else select(numbered)
    return counted.subquery()


def _median(values: list[int | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


async def _per_version(session: AsyncSession, feedback: type[Improvement | Flag],
                       conditions: list[ColumnElement[bool]], key: ColumnElement[str]) -> dict[str, int]:
    """How many `feedback` rows each version's (each `key`'s) selected drafts have."""
    counts = await session.execute(select(key, func.count()).select_from(feedback)
                                   .join(Draft, Draft.id == feedback.draft_id).where(*conditions)
                                   .group_by(key))
    return {version: count for version, count in counts}
