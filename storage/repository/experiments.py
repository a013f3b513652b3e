"""Experiments and what each task serves: started, followed, stopped, promoted, rolled back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from storage.errors import StorageError
from storage.models import (
    Assignment,
    Draft,
    Experiment,
    ExperimentState,
    ExperimentVariant,
    Rating,
    TaskDefault,
    VariantPick,
    utcnow,
)
from storage.repository.base import RepositoryBase


class ExperimentNotFound(StorageError):
    def __init__(self, experiment_id: int) -> None:
        super().__init__(f"there is no experiment #{experiment_id} (`copydesk experiment list` shows them)")
        self.experiment_id = experiment_id


@dataclass(frozen=True, slots=True)
class Arm:
    """What one variant of an experiment drafts with, before it is stored."""

    label: str
    model_version: str
    template_version: str
    share: float


@dataclass(frozen=True, slots=True)
class Choice:
    """One member's verdict between two drafts of one request written by different variants."""

    winner: str  # the variant label preferred
    loser: str


class ExperimentsRepository(RepositoryBase):
    async def start_experiment(self, task: str, arms: Sequence[Arm], *, assignment: Assignment, started_by: str,
                               guild_id: str | None) -> Experiment:
        """One running experiment per task: the database's unique index refuses a second, even in a race."""
        try:
            async with self._sessions.begin() as session:
                experiment = Experiment(task=task, assignment=assignment, state=ExperimentState.RUNNING,
                                        started_by=started_by, guild_id=guild_id, started_at=utcnow(),
                                        variants=[ExperimentVariant(label=arm.label, model_version=arm.model_version,
                                                                    template_version=arm.template_version,
                                                                    share=arm.share) for arm in arms])
                session.add(experiment)
        except IntegrityError:
            raise StorageError(f"an experiment already runs on {task!r}; stop or promote it first") from None
        return await self.experiment(experiment.id)

    async def experiment(self, experiment_id: int) -> Experiment:
        async with self._sessions() as session:
            experiment = await session.get(Experiment, experiment_id)
        if experiment is None:
            raise ExperimentNotFound(experiment_id)
        return experiment

    async def running_experiment(self, task: str) -> Experiment | None:
        async with self._sessions() as session:
            return await session.scalar(select(Experiment).where(Experiment.task == task,
                                                                 Experiment.state == ExperimentState.RUNNING))

    async def experiments(self, task: str | None = None) -> list[Experiment]:
        """Newest first."""
        statement = select(Experiment).order_by(Experiment.id.desc())
        if task is not None:
            statement = statement.where(Experiment.task == task)
        async with self._sessions() as session:
            return list(await session.scalars(statement))

    async def end_experiment(self, experiment_id: int, *, state: ExperimentState, by: str,
                             winner: str | None = None, default: TaskDefault | None = None) -> None:
        """Stop a running experiment; a promotion writes the task's new default in the same transaction."""
        async with self._sessions.begin() as session:
            ended = await session.execute(
                update(Experiment).where(Experiment.id == experiment_id, Experiment.state == ExperimentState.RUNNING)
                .values(state=state, ended_by=by, ended_at=utcnow(), winner=winner).returning(Experiment.id))
            if ended.scalar() is None:
                raise StorageError(f"experiment #{experiment_id} is not running (it was stopped or promoted already)")
            if default is not None:
                session.add(default)

    async def routing(self) -> tuple[list[Experiment], dict[str, TaskDefault]]:
        """What decides who writes new drafts: the running experiments, and each task's current default."""
        latest = select(func.max(TaskDefault.id)).group_by(TaskDefault.task).scalar_subquery()
        async with self._sessions() as session:
            running = list(await session.scalars(select(Experiment).where(Experiment.state == ExperimentState.RUNNING)))
            defaults = await session.scalars(select(TaskDefault).where(TaskDefault.id.in_(latest)))
            return running, {default.task: default for default in defaults}

    async def task_defaults(self, task: str, limit: int = 2) -> list[TaskDefault]:
        """The task's latest defaults, newest first: the first is current, the next is what rollback restores."""
        async with self._sessions() as session:
            return list(await session.scalars(select(TaskDefault).where(TaskDefault.task == task)
                                              .order_by(TaskDefault.id.desc()).limit(limit)))

    async def set_task_default(self, default: TaskDefault) -> None:
        async with self._sessions.begin() as session:
            session.add(default)

    async def experiment_choices(self, experiment_id: int) -> list[Choice]:
        """Head-to-head: within each request, a member's 👍 on one variant's draft and 👎 on another's, and a
        member's pick of one variant over each other variant shown beside it."""
        async with self._sessions() as session:
            votes = await session.execute(
                select(func.coalesce(Draft.parent_id, Draft.id), Rating.member_id, Draft.variant, Rating.value)
                .join(Rating, Rating.draft_id == Draft.id)
                .where(Draft.experiment_id == experiment_id, Draft.variant.is_not(None), Draft.removed_at.is_(None)))
            picked = Draft.__table__.alias("picked")
            shown = Draft.__table__.alias("shown")
            picks = await session.execute(
                select(picked.c.variant, shown.c.variant)
                .select_from(VariantPick)
                .join(picked, picked.c.id == VariantPick.draft_id)
                .join(shown, shown.c.variant_group == VariantPick.group_id)
                .where(picked.c.experiment_id == experiment_id, shown.c.id != picked.c.id,
                       shown.c.variant != picked.c.variant, shown.c.removed_at.is_(None),
                       picked.c.removed_at.is_(None)))
        by_member: dict[tuple[int, str], dict[int, set[str]]] = {}
        for request, member, variant, value in votes:
            if variant is not None:
                by_member.setdefault((request, member), {1: set(), -1: set()})[value].add(variant)
        choices = [Choice(winner, loser) for sides in by_member.values()
                   for winner in sorted(sides[1]) for loser in sorted(sides[-1]) if winner != loser]
        return choices + [Choice(winner, loser) for winner, loser in picks]
