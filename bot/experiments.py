"""Experiments as use cases: which variant writes each new draft, and what a task serves outside them.

A moderator starts an experiment on one task between two to four variants (a model version, a
template version, or both), each with a share. Every new draft of the task is given a variant —
drawn per draft, or kept per member — and members are not told which. Regenerate goes to another
variant, so the team's choices between siblings are head-to-head. Promote makes the winner the
task's default and ends the experiment; rollback restores the default before it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.errors import ServiceError
from bot.stats import DecisionRule, version_table
from generation import Task, get_task
from storage import (
    BASE_VERSION,
    Arm,
    Assignment,
    Choice,
    Experiment,
    ExperimentState,
    ExperimentVariant,
    Repository,
    StorageError,
    TaskDefault,
    VersionNotFound,
    VersionState,
    VersionTally,
)

LABELS = "ABCD"  # a variant's name in the stats; members never see it
MAX_ARMS = len(LABELS)
SPEC_HELP = "model=NAME,template=NAME,share=N (each part optional; left out: what the task serves now, share 1)"

TaskFor = Callable[[str, str], Awaitable[Task]]  # (task, template version) → the task that renders with it


@dataclass(frozen=True)
class Route:
    """What writes a new draft: the model version, the template version, and the experiment's variant if any."""

    model_version: str
    template_version: str
    experiment_id: int | None = None
    variant: str | None = None


@dataclass(frozen=True)
class VariantSpec:
    """A variant as a moderator writes it; None parts are filled with what the task serves now."""

    model_version: str | None = None
    template_version: str | None = None
    share: float = 1.0

    @classmethod
    def parse(cls, text: str) -> VariantSpec:
        parts: dict[str, str] = {}
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            key, equals, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not equals or key not in ("model", "template", "share") or not value or key in parts:
                raise ServiceError(f"cannot read the variant {text!r}; write it as {SPEC_HELP}")
            parts[key] = value
        if not parts:
            raise ServiceError(f"a variant is empty; write it as {SPEC_HELP}")
        try:
            share = float(parts.get("share", "1"))
        except ValueError:
            share = float("nan")
        if not 0 < share < 1000:  # also refuses nan
            raise ServiceError(f"a variant's share is a number above 0, e.g. share=2 (got {parts['share']!r})")
        return cls(parts.get("model"), parts.get("template"), share)


@dataclass(frozen=True)
class ExperimentReport:
    """An experiment with what the team made of each variant so far."""

    experiment: Experiment
    tallies: list[VersionTally]
    head_to_head: dict[str, tuple[int, int]]  # label → (wins, losses)
    verdict: str
    winner: str | None  # the variant the rule declares best, if any

    def heading(self) -> list[str]:
        return experiment_heading(self.experiment)

    def table(self, rule: DecisionRule) -> list[str]:
        """The heading, then per variant its figures with the head-to-head wins, the rule and the verdict."""
        return [*self.heading(), "", *version_table(self.tallies, rule, self.head_to_head, self.verdict)]


def experiment_heading(experiment: Experiment) -> list[str]:
    """What the experiment compares, and how far it has got: the lines above its table."""
    ended = "" if experiment.state == ExperimentState.RUNNING else (
        f", {experiment.state} {experiment.ended_at:%Y-%m-%d %H:%M}"
        + (f" (winner {experiment.winner})" if experiment.winner else ""))
    return [f"experiment #{experiment.id} on {experiment.task}: started {experiment.started_at:%Y-%m-%d %H:%M} UTC"
            f"{ended}, assignment per {experiment.assignment}",
            *(_arm_line(arm) for arm in experiment.variants)]


def draw(arms: Sequence[ExperimentVariant], point: float) -> ExperimentVariant:
    """The variant whose slice of [0, 1), sliced by shares in label order, holds `point`."""
    total = sum(arm.share for arm in arms)
    reached = 0.0
    for arm in arms:
        reached += arm.share / total
        if point < reached:
            return arm
    return arms[-1]  # point within rounding of 1


def member_point(experiment_id: int, member_id: str) -> float:
    """A member's fixed place in [0, 1) for one experiment: sticky assignment without a table, and a
    different place in the next experiment."""
    digest = hashlib.sha256(f"{experiment_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def head_to_head(choices: Sequence[Choice], labels: Sequence[str]) -> dict[str, tuple[int, int]]:
    wins = {label: [0, 0] for label in labels}
    for choice in choices:
        if choice.winner in wins and choice.loser in wins:
            wins[choice.winner][0] += 1
            wins[choice.loser][1] += 1
    return {label: (won, lost) for label, (won, lost) in wins.items()}


class Experiments:
    """Start, follow, stop and promote experiments; route each new draft to what should write it."""

    def __init__(self, repository: Repository, task_for: TaskFor, *, assignment: Assignment = Assignment.DRAFT,
                 rule: DecisionRule = DecisionRule(), rng: random.Random | None = None,
                 check_servable: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._repository = repository
        self._task_for = task_for
        self._assignment = assignment
        self._rule = rule
        self._rng = rng or random.Random()
        self._check_servable = check_servable

    # --- routing: called for every new draft ---

    async def routes(self, task: str, member_id: str, serving: str, *, count: int = 1,
                     sibling_of: tuple[int | None, str | None] = (None, None)) -> tuple[list[Route], set[str]]:
        """Who writes each of `count` new drafts of `task`, and every model version routing may use (to keep
        their engines open). `serving`: the deployment's serving model version. `sibling_of`: the experiment
        and variant of the draft this one regenerates; it goes to another variant of that experiment."""
        running, defaults = await self._repository.routing()
        in_use = {default.model_version for default in defaults.values() if default.model_version}
        in_use |= {arm.model_version for experiment in running for arm in experiment.variants}
        experiment = next((experiment for experiment in running if experiment.task == task), None)
        if experiment is None:
            default = self._default_route(task, defaults.get(task), serving)
            return [default] * count, in_use | {default.model_version}
        arms = list(experiment.variants)
        experiment_id, variant = sibling_of
        if experiment_id == experiment.id and len(arms) > 1:
            arms = [arm for arm in arms if arm.label != variant] or arms
            first = draw(arms, self._rng.random())
        elif experiment.assignment == Assignment.MEMBER:
            first = draw(arms, member_point(experiment.id, member_id))
        else:
            first = draw(arms, self._rng.random())
        # Variants of one request go to every arm in turn, so a member's pick among them is head-to-head too.
        order = arms[arms.index(first):] + arms[:arms.index(first)]
        chosen = [order[index % len(order)] for index in range(count)]
        return [Route(arm.model_version, arm.template_version, experiment.id, arm.label) for arm in chosen], in_use

    async def task_for(self, route: Route, task: str) -> Task:
        return await self._task_for(task, route.template_version)

    def _default_route(self, task: str, default: TaskDefault | None, serving: str) -> Route:
        builtin = get_task(task).template_version
        if default is None:
            return Route(serving, builtin)
        return Route(default.model_version or serving, default.template_version or builtin)

    # --- the moderators' commands ---

    async def start(self, task: str, specs: Sequence[VariantSpec], *, by: str,
                    assignment: Assignment | None = None, guild_id: str | None = None) -> Experiment:
        task = get_task(task).name
        if not 2 <= len(specs) <= MAX_ARMS:
            raise ServiceError(f"an experiment compares 2 to {MAX_ARMS} variants (got {len(specs)})")
        current = await self.serves(task)
        arms = []
        for label, spec in zip(LABELS, specs, strict=False):
            model = spec.model_version or current.model_version
            template = spec.template_version or current.template_version
            await self._check_model(model)
            await self._task_for(task, template)  # refuses a template version that is not this task's
            arms.append(Arm(label, model, template, spec.share))
        if len({(arm.model_version, arm.template_version) for arm in arms}) < len(arms):
            raise ServiceError("two variants are the same model version with the same template version; "
                               "an experiment compares different ones")
        try:
            experiment = await self._repository.start_experiment(
                task, arms, assignment=assignment or self._assignment, started_by=by, guild_id=guild_id)
        except StorageError as error:
            raise ServiceError(str(error)) from None
        await self._log(experiment, "start-experiment", by, ", ".join(_arm_line(arm) for arm in experiment.variants))
        return experiment

    async def report(self, task: str, experiment_id: int | None = None) -> ExperimentReport:
        experiment = await self._find(task, experiment_id)
        tallies = await self._repository.version_tallies(experiment_id=experiment.id,
                                                         votes_per_member=self._rule.votes_per_member)
        order = {arm.label: index for index, arm in enumerate(experiment.variants)}
        tallies.sort(key=lambda tally: order.get(tally.version, len(order)))
        labels = [arm.label for arm in experiment.variants]
        wins = head_to_head(await self._repository.experiment_choices(experiment.id), labels)
        counted = {tally.version: (tally.up, tally.down) for tally in tallies}
        votes = [(label, *counted.get(label, (0, 0))) for label in labels]
        return ExperimentReport(experiment, tallies, wins, *self._rule.decide(votes))

    async def stop(self, task: str, *, by: str) -> Experiment:
        experiment = await self._running(task)
        await self._end(experiment, ExperimentState.STOPPED, by)
        await self._log(experiment, "stop-experiment", by, f"#{experiment.id}")
        return await self._repository.experiment(experiment.id)

    async def promote(self, task: str, label: str | None = None, *, by: str) -> ExperimentVariant:
        """Make `label` (else the rule's winner) what the task serves, and end the experiment."""
        experiment = await self._running(task)
        if label is None:
            report = await self.report(task, experiment.id)
            if report.winner is None:
                raise ServiceError(f"the rule names no winner yet ({report.verdict}); name the variant to promote, "
                                   "e.g. `promote B`, if the team has decided otherwise")
            label = report.winner
        arm = next((arm for arm in experiment.variants if arm.label == label.upper()), None)
        if arm is None:
            raise ServiceError(f"experiment #{experiment.id} has no variant {label!r}; its variants are "
                               f"{', '.join(variant.label for variant in experiment.variants)}")
        await self._check_model(arm.model_version)
        await self._end(experiment, ExperimentState.PROMOTED, by, winner=arm.label,
                        default=TaskDefault(task=experiment.task, template_version=arm.template_version,
                                            model_version=arm.model_version, changed_by=by, reason="promote",
                                            experiment_id=experiment.id))
        await self._log(experiment, "promote-experiment", by, f"#{experiment.id} {_arm_line(arm)}")
        return arm

    async def rollback(self, task: str, *, by: str, guild_id: str | None = None) -> Route:
        """Restore the task's default from before its latest change; once more undoes the rollback."""
        task = get_task(task).name
        latest = await self._repository.task_defaults(task)
        if not latest:
            raise ServiceError(f"{task!r} serves what it always served; there is nothing to roll back")
        if await self._repository.running_experiment(task) is not None:
            raise ServiceError(f"an experiment runs on {task!r}; stop it before rolling back")
        previous = latest[1] if len(latest) > 1 else None
        template = previous.template_version if previous else None
        model = previous.model_version if previous else None
        if model:
            await self._check_model(model)
        await self._repository.set_task_default(TaskDefault(task=task, template_version=template, model_version=model,
                                                            changed_by=by, reason="rollback"))
        await self._repository.log_action(guild_id=guild_id, flag_id=None, draft_id=None, moderator_id=by,
                                          action="rollback-task", note=f"{task}: {model or 'serving model'}, "
                                                                       f"{template or 'built-in template'}")
        return await self.serves(task)

    async def serves(self, task: str) -> Route:
        """What new drafts of `task` use outside an experiment (the serving model version as the database
        records it)."""
        task = get_task(task).name
        return self._default_route(task, await self._current_default(task), await self._repository.serving_version())

    async def list(self, task: str | None = None) -> list[Experiment]:
        return await self._repository.experiments(get_task(task).name if task else None)

    # --- helpers ---

    async def _current_default(self, task: str) -> TaskDefault | None:
        latest = await self._repository.task_defaults(task, limit=1)
        return latest[0] if latest else None

    async def _find(self, task: str, experiment_id: int | None) -> Experiment:
        if experiment_id is not None:
            return await self._repository.experiment(experiment_id)
        task = get_task(task).name
        experiment = await self._repository.running_experiment(task)
        if experiment is None:
            ended = await self._repository.experiments(task)
            if not ended:
                raise ServiceError(f"no experiment has run on {task!r}; a moderator starts one with "
                                   "`/experiment start`")
            experiment = ended[0]
        return experiment

    async def _running(self, task: str) -> Experiment:
        task = get_task(task).name
        experiment = await self._repository.running_experiment(task)
        if experiment is None:
            raise ServiceError(f"no experiment runs on {task!r}")
        return experiment

    async def _end(self, experiment: Experiment, state: ExperimentState, by: str, *, winner: str | None = None,
                   default: TaskDefault | None = None) -> None:
        try:
            await self._repository.end_experiment(experiment.id, state=state, by=by, winner=winner, default=default)
        except StorageError as error:
            raise ServiceError(str(error)) from None

    async def _check_model(self, name: str) -> None:
        if name == BASE_VERSION:
            return
        try:
            version = await self._repository.version(name)
        except VersionNotFound:
            raise ServiceError(f"there is no model version named {name!r} (`copydesk models list` shows them)") from None
        if version.state == VersionState.RETIRED:
            raise ServiceError(f"model version {name!r} is retired; it writes no new drafts")
        if self._check_servable is not None:
            await self._check_servable(name)

    async def _log(self, experiment: Experiment, action: str, by: str, note: str) -> None:
        await self._repository.log_action(guild_id=experiment.guild_id, flag_id=None, draft_id=None,
                                          moderator_id=by, action=action, note=f"{experiment.task}: {note}")


def _arm_line(arm: ExperimentVariant | Arm) -> str:
    return f"{arm.label} = model {arm.model_version}, template {arm.template_version}, share {arm.share:g}"
