"""The use cases, once, for every front-end: draft, regenerate, rate, improve, flag, list, export.

Moderation and members' privacy live beside them (bot/moderation.py, bot/privacy.py), reached
as `service.moderation` and `service.privacy`.

Front-ends (terminal, CLI, Discord) translate their input into these calls and render what
comes back; no business rule lives in a front-end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from bot.config import (
    DraftingSettings,
    EngineSettings,
    ExperimentSettings,
    ExportSettings,
    LimitSettings,
    ModerationSettings,
    PrivacySettings,
    Settings,
    StatsSettings,
)
from bot.errors import ServiceError
from bot.experiments import Experiments, Route
from bot.metrics import Metrics
from bot.moderation import Moderation
from bot.privacy import Privacy
from bot.stats import DecisionRule
from bot.templates import Templates
from bot.versions import ModelVersions
from generation import (
    TASKS,
    Engine,
    EngineLoad,
    GenerationCancelled,
    GenerationError,
    InputError,
    Prompt,
    Sampling,
    get_task,
)
from generation.catalogue import platform_of
from generation.compliance import Rule, hold_reasons
from generation.compliance import check as compliance_check
from generation.input_text import is_blank, storable
from generation.language import AUTO, DEFAULT_LANGUAGE, choose_language, language_instruction
from generation.platforms import PlatformDraft, fit, get_platform, parse
from generation.quality import quality_signals
from generation.safety import SafetyPolicy, review_reasons
from generation.served_versions import ServedVersions
from storage import (
    BASE_VERSION,
    EXPORT_FORMATS,
    STOPPED_AS,
    Assignment,
    DatasetOptions,
    DatasetSummary,
    DatasetWriter,
    Draft,
    DraftNotFound,
    DraftStatus,
    FeedbackFilter,
    FeedbackRecord,
    Repository,
    RowRules,
    StopReason,
    VersionTally,
)

FEEDBACK_MAX_CHARS = 4000
PROGRESS_SAVE_INTERVAL_S = 1.0
RATE_WINDOW = timedelta(minutes=1)
STATUS_WINDOW = timedelta(hours=1)
EXPORT_BATCH = 500  # records handed to the export's worker thread at a time
STALE_AFTER = timedelta(hours=1)  # a queued or running row this old was left by a crash: it blocks no one
ANNOUNCE_WITHIN = timedelta(days=1)  # interruptions older than this are not announced any more
DELIVERY_MEMORY = timedelta(days=1)  # Discord repeats an interaction within its 15-minute token, if at all
FORGET_EVERY = timedelta(hours=1)  # how often claims older than DELIVERY_MEMORY are dropped
INTERRUPTED_BY_RESTART = "copydesk stopped before this draft was finished; please ask again"


@dataclass(frozen=True)
class Member:
    """Who is acting, and where; ids are strings so any front-end can supply its own."""

    id: str
    guild_id: str | None = None
    channel_id: str | None = None


class LimitReached(ServiceError):
    """Over a limit: the message says which, and when to try again; nothing was stored."""


class ShuttingDown(ServiceError):
    """The process is stopping: no new draft is taken; nothing was stored."""


@dataclass(frozen=True)
class Policy:
    """The deployment's rules: the sections of the settings the use cases read, whole (each key and
    its default lives in bot/config.py only), and the key derived from the data folder."""

    engine: EngineSettings = EngineSettings()
    export: ExportSettings = ExportSettings()
    limits: LimitSettings = LimitSettings()
    moderation: ModerationSettings = ModerationSettings()
    privacy: PrivacySettings = PrivacySettings()
    drafting: DraftingSettings = DraftingSettings()
    stats: StatsSettings = StatsSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    member_key: bytes = b""  # keys pseudonyms and the erasure ledger; never stored with the data

    @classmethod
    def of(cls, settings: Settings, member_key: bytes) -> Policy:
        return cls(engine=settings.engine, export=settings.export, limits=settings.limits,
                   moderation=settings.moderation, privacy=settings.privacy, drafting=settings.drafting,
                   stats=settings.stats, experiments=settings.experiments, member_key=member_key)

    @property
    def safety(self) -> SafetyPolicy:
        return self.moderation.safety_policy()

    @cached_property
    def compliance(self) -> tuple[Rule, ...]:
        """Read once (a server's rules file among them), then checked at every step of every draft."""
        return self.moderation.compliance_rules() if self.moderation.check_compliance else ()

    @property
    def timeout_s(self) -> float:
        """A draft still unfinished after this long is stopped and marked failed."""
        return self.engine.timeout_s


@dataclass(frozen=True)
class DraftProgress:
    """One step of a draft as a front-end may show it: a held draft's text is never handed out."""

    draft_id: int
    text: str
    status: DraftStatus
    completion_tokens: int = 0
    error: str | None = None
    ahead: int = 0  # while queued: drafts in line before this one
    held: bool = False  # an automatic check tripped: the draft waits for a moderator
    flag_id: int | None = None  # the automatic flag, once the draft is done
    quality: dict[str, Any] | None = None  # the finished draft's signals (generation/quality.py)
    fields: PlatformDraft | None = None  # a finished platform draft, cut into its fields and counted


@dataclass(frozen=True)
class Status:
    """The health view: the engine now, if this process runs one, and the last hour from the database."""

    counts: dict[str, int]  # draft status → drafts asked for in the window
    tokens_per_s: float  # over the window, drafts finished in it
    model: str | None  # what this process serves, if it loaded a model
    load: EngineLoad | None  # this process's engine, now
    peak_memory_mb: float  # of this process

    def lines(self) -> list[str]:
        statuses = ("queued", "running", "done", "failed", "cancelled", "interrupted")
        now = (f"{self.load.running} drafts being written, {self.load.waiting} waiting, {self.load.slots} slots"
               if self.load else "no engine in this process")
        return [
            f"model: {self.model or 'not loaded in this process'}",
            f"now: {now}",
            "drafts in the last hour: " + ", ".join(f"{self.counts.get(s, 0)} {s}" for s in statuses),
            f"tokens/s over the last hour: {self.tokens_per_s:.2f}",
            f"peak memory of this process: {self.peak_memory_mb:.0f} MB",
        ]


class DraftService:
    """Front-end-neutral use cases over one engine and one repository."""

    def __init__(
        self, repository: Repository, engine: Engine | ServedVersions | None, policy: Policy = Policy(),
        metrics: Metrics | None = None, versions: ModelVersions | None = None,
    ) -> None:
        """`engine`: one engine (it serves the base model), or the versions this process serves."""
        self._repository = repository
        self._served = (engine if engine is None or isinstance(engine, ServedVersions)
                        else ServedVersions(BASE_VERSION, engine))
        self._policy = policy
        self.metrics = metrics or Metrics()
        if self._served is not None:
            self.metrics.watch_engine(self._served.info, self._served.load)
        self._requests: dict[int, str] = {}  # running draft id → engine request id
        self._admission = asyncio.Lock()
        self._stopping: dict[int, StopReason] = {}  # why a draft is being stopped, where not by its member
        self._closing = False
        self._deliveries_forgotten_at = datetime.min.replace(tzinfo=timezone.utc)  # forget at the first claim
        self.moderation = Moderation(repository)
        self.privacy = Privacy(repository, policy.member_key, consent_default=policy.privacy.training_consent_default)
        self._versions = versions
        self.templates = Templates(repository, self._served, max_new_tokens=policy.engine.max_new_tokens)
        self.experiments = Experiments(repository, self.templates.task_for,
                                       assignment=Assignment(policy.experiments.assignment),
                                       rule=policy.stats.rule(), check_servable=self._check_servable)

    async def _check_servable(self, name: str) -> None:
        if self._versions is not None:
            await self._versions.check_servable(await self._repository.version(name))

    @property
    def versions(self) -> ModelVersions:
        if self._versions is None:
            raise ServiceError("model versions are not available in this process")
        return self._versions

    @property
    def served(self) -> ServedVersions:
        if self._served is None:
            raise ServiceError("no model is loaded in this process")
        return self._served

    @property
    def engine(self) -> Engine:
        """The engine new drafts go to."""
        return self.served.current

    async def create_draft(
        self, member: Member, task_name: str, inputs: Mapping[str, str], *, parent_id: int | None = None,
        language: str = AUTO,
    ) -> Draft:
        """Validate and store the request; the row exists before any token is generated.

        `language`: a code of generation/language.py, or "auto" for the server's setting, else the request's."""
        [draft] = await self._create(member, task_name, inputs, count=1, parent_id=parent_id, language=language)
        return draft

    # --- variants: several drafts for one request, written together, one picked ---

    async def create_variants(
        self, member: Member, task_name: str, inputs: Mapping[str, str], count: int, *, language: str = AUTO
    ) -> list[Draft]:
        """`count` drafts of one request (1 is a plain draft), stored together before any is generated; the
        member's limits count them as one request. Run them with generate_together."""
        return await self._create(member, task_name, inputs, count=get_task(task_name).check_variants(count),
                                  language=language)

    async def generate_together(self, draft_ids: Sequence[int]) -> AsyncGenerator[tuple[DraftProgress, ...], None]:
        """Run queued drafts at once (the engine batches concurrent streams), yielding every draft's latest step
        each time one of them moves. Each draft's row follows its steps as in generate; closing this stops them all."""
        latest = [DraftProgress(draft_id, "", DraftStatus.QUEUED) for draft_id in draft_ids]
        steps: asyncio.Queue[tuple[int, DraftProgress | None]] = asyncio.Queue()

        async def follow(index: int, draft_id: int) -> None:
            try:
                async with aclosing(self.generate(draft_id)) as progress:
                    async for step in progress:
                        steps.put_nowait((index, step))
            finally:
                steps.put_nowait((index, None))  # this one ended, however

        followers = [asyncio.create_task(follow(index, draft_id)) for index, draft_id in enumerate(draft_ids)]
        try:
            running = len(followers)
            while running:
                index, step = await steps.get()
                if step is None:
                    running -= 1
                    continue
                latest[index] = step
                yield tuple(latest)
            for follower in followers:
                follower.result()  # a failure of any, once all ended
        finally:
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    async def pick(self, member: Member, draft_id: int) -> tuple[int, int]:
        """A member prefers this variant over the others shown with it; picking again changes their pick.
        Returns its place among them and how many there are."""
        draft = await self._finished(member, draft_id)
        if draft.variant_group is None:
            raise ServiceError(f"draft #{draft_id} was written alone: there is nothing to pick it over")
        await self._repository.pick_variant(draft_id, member.id)
        variants = [variant.id for variant in await self._repository.variants_of(draft.variant_group)]
        return variants.index(draft_id) + 1, len(variants)

    async def variants_of(self, draft: Draft) -> list[Draft]:
        """The drafts shown together with this one, itself included, in their order; just it if it was alone."""
        return await self._repository.variants_of(draft.variant_group) if draft.variant_group else [draft]

    # --- end of variants ---

    async def _create(
        self, member: Member, task_name: str, inputs: Mapping[str, str], *, count: int, parent_id: int | None = None,
        language: str, sibling_of: tuple[int | None, str | None] = (None, None),
    ) -> list[Draft]:
        task = get_task(task_name)
        task.render(inputs)  # refuses bad input before anything else
        request = " ".join(inputs.get(spec.name) or "" for spec in task.fields if not spec.choices)  # what the member wrote
        written_in = choose_language(language, self._policy.drafting.language, request)
        served = self.served
        info = served.info
        if self._closing:
            raise ShuttingDown("copydesk is restarting and takes no new drafts right now; please ask again in a minute")
        async with self._admission:  # the limits are checked and the row stored as one step
            try:
                await self._admit(member)
            except LimitReached:
                self.metrics.refused()
                raise
            values = task.validate(inputs)
            routes, in_use = await self.experiments.routes(task.name, member.id, served.serving, count=count,
                                                           sibling_of=sibling_of)
            served.keep(in_use)
            fields: dict[str, Any] = dict(
                task=task.name,
                inputs=values,
                platform=platform_of(values),
                model=info.name,
                quantization=info.quantization,
                sampling=task.sampling_for(values).capped(self._policy.engine.max_new_tokens).as_dict(),
                seed=info.seed,
                author_id=member.id,
                guild_id=member.guild_id,
                channel_id=member.channel_id,
                parent_id=parent_id,
                language=written_in,
            )
            apart = [await self._routed(route, task.name, values, written_in) for route in routes]
            if count == 1:
                return [await self._repository.create_draft(**fields, **apart[0])]
            return await self._repository.create_variants(count, apart=apart, **fields)

    async def _routed(self, route: Route, task_name: str, values: Mapping[str, str], written_in: str) -> dict[str, Any]:
        """What a draft takes from its route: the prompt its template version renders, and who writes it."""
        task = await self.experiments.task_for(route, task_name)
        prompt = task.render(values)
        return dict(system_prompt=prompt.system, user_prompt=prompt.user + language_instruction(written_in),
                    template_version=task.template_version_for(values), model_version=route.model_version,
                    experiment_id=route.experiment_id, variant=route.variant)

    async def regenerate(self, member: Member, draft_id: int) -> Draft:
        """A new draft for the same request; it points at the original so exports can compare them. In an
        experiment it goes to another variant, so the member's choice between the two is head-to-head."""
        original = await self._for_member(member, draft_id)
        [draft] = await self._create(member, original.task, original.inputs, count=1,
                                     parent_id=original.parent_id or original.id, language=original.language or AUTO,
                                     sibling_of=(original.experiment_id, original.variant))
        return draft

    async def generate(self, draft_id: int) -> AsyncGenerator[DraftProgress, None]:
        """Run a queued draft, yielding its text as it grows; the row follows every step."""
        draft = await self._existing(draft_id)
        if draft.status != DraftStatus.QUEUED or draft_id in self._requests:
            state = "being written" if draft_id in self._requests else draft.status
            raise ServiceError(f"draft #{draft_id} is {state}, not queued")
        run = _Run(draft)
        saved_at = time.monotonic()
        request_id = self._requests[draft_id] = f"draft-{draft_id}-{uuid.uuid4().hex[:8]}"
        prompt, sampling = Prompt(draft.system_prompt, draft.user_prompt), Sampling(**draft.sampling)
        # A watchdog rather than a timeout around the loop: the loop yields to the front-end, whose
        # own awaits a timeout would interrupt.
        deadline = asyncio.get_running_loop().call_later(self._policy.timeout_s, self._expire, draft_id)
        try:
            async with self.served.using(draft.model_version) as engine, \
                    aclosing(engine.stream(prompt, sampling, request_id, owner=draft.author_id)) as stream:
                async for update in stream:
                    if update.queued_ahead is not None:
                        yield DraftProgress(draft_id, "", DraftStatus.QUEUED, ahead=update.queued_ahead)
                        continue
                    if run.first_token_at is None:
                        run.first_token_at = _now()
                        await self._repository.mark_running(draft_id)
                    run.text, run.tokens, run.prompt_tokens = update.text, update.completion_tokens, update.prompt_tokens
                    # Checked at every step, so held text never reaches a front-end, not even in part.
                    run.reasons = run.reasons or self._hold_reasons(draft, run.text)
                    if time.monotonic() - saved_at >= PROGRESS_SAVE_INTERVAL_S:
                        await self._repository.record_progress(draft_id, run.text)
                        saved_at = time.monotonic()
                    yield run.progress(DraftStatus.RUNNING)
        except GenerationError as ended:  # cancelled, or the engine failed
            yield await self._stop(run, *self._why_stopped(draft_id, ended))
            return
        except BaseException as ended:  # whoever followed it stopped, or our own failure (the database gave out)
            # The row must not stay "running", but the caller must see what happened, not a failure to store it.
            with contextlib.suppress(Exception):
                await self._stop(run, *self._why_stopped(draft_id, ended))
            raise
        finally:
            deadline.cancel()
            self._stopping.pop(draft_id, None)
            del self._requests[draft_id]
        yield await self._finish(run)

    def _why_stopped(self, draft_id: int, ended: BaseException) -> tuple[StopReason, str | None]:
        """How a stream ended early, told as the stop reason and the error the draft keeps."""
        if isinstance(ended, GenerationCancelled):  # cancel(): by its member unless _stopping says why else
            reason = self._stopping.get(draft_id, StopReason.MEMBER)
            errors = {StopReason.SHUTDOWN: INTERRUPTED_BY_RESTART,
                      StopReason.DEADLINE: f"stopped at its deadline of {self._policy.timeout_s:g} s"}
            return reason, errors.get(reason)
        if isinstance(ended, GenerationError):
            return StopReason.ERROR, str(ended)
        if isinstance(ended, (asyncio.CancelledError, GeneratorExit)):
            return StopReason.ABANDONED, None
        return StopReason.ERROR, "stopped by an internal error"

    async def _stop(self, run: _Run, reason: StopReason, error: str | None) -> DraftProgress:
        """Store how the draft stopped, count it once (even if storing fails), and say so as its last step."""
        status = STOPPED_AS[reason]
        try:
            await self._repository.stop_draft(run.draft.id, reason, error=error, output=run.text)
        finally:
            self._count_ended(run, status)
        return run.progress(status, error=error)

    def _hold_reasons(self, draft: Draft, text: str) -> list[str]:
        """Why the automatic checks hold this text for a moderator: safety first, then compliance rules."""
        reasons = review_reasons(text, draft.system_prompt, self._policy.safety)
        matches = compliance_check(text, draft.language or DEFAULT_LANGUAGE, self._policy.compliance)
        return reasons + hold_reasons(matches)

    async def _finish(self, run: _Run) -> DraftProgress:
        """Store the finished draft and count it; a draft the checks held gets its automatic flag, which names
        everything the whole text trips (the steps stopped at the first)."""
        draft = run.draft
        await self._fit_to_platform(run)
        finished_at = _now()
        target = task.target_words if (task := TASKS.get(draft.task)) else 0  # a task since taken out: no target
        quality = quality_signals(run.text, draft.language or DEFAULT_LANGUAGE, target, self._policy.drafting.brand_words)
        await self._repository.finish_draft(
            draft.id,
            output=run.text,
            fields=run.fields.to_json() if run.fields else None,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.tokens,
            latency_ms=_ms(finished_at - draft.created_at),
            ttft_ms=_ms((run.first_token_at or finished_at) - draft.created_at),
            quality=quality,
        )
        self._count_ended(run, DraftStatus.DONE)
        flag_id = None
        if run.reasons:
            run.reasons = self._hold_reasons(draft, run.text) or run.reasons
            flag = await self._repository.add_flag(draft.id, "held automatically: " + "; ".join(run.reasons),
                                                   source="auto")
            flag_id = flag.id
        return run.progress(DraftStatus.DONE, flag_id=flag_id, quality=quality)

    # --- platforms: a draft for an ad platform is cut into its fields, each fitted to its limit ---
    async def _fit_to_platform(self, run: _Run) -> None:
        """Cut a platform draft into its fields, write again those that break their limit
        (generation.platforms.fitting), and check the fields' text like the draft's."""
        draft = run.draft
        if not get_platform(draft.platform).structured:
            return

        async def complete(prompt: Prompt, max_new_tokens: int) -> str | None:
            sampling = Sampling(**{**draft.sampling, "max_new_tokens": max_new_tokens}).capped(
                self._policy.engine.max_new_tokens)
            request_id = f"draft-{draft.id}-field-{uuid.uuid4().hex[:8]}"
            text = None
            try:
                async with self.served.using(draft.model_version) as engine, \
                        aclosing(engine.stream(prompt, sampling, request_id, owner=draft.author_id)) as stream:
                    async for update in stream:
                        text = update.text
            except GenerationError:  # the engine stopped or failed: the field stays as it was, marked
                return None
            return text

        run.fields = await fit(parse(draft.platform, run.text), draft.user_prompt, complete)
        run.text = run.fields.text()
        run.reasons = run.reasons or self._hold_reasons(draft, run.text)
    # --- end platforms ---

    def _count_ended(self, run: _Run, status: DraftStatus) -> None:
        draft = run.draft
        ttft = (run.first_token_at - draft.created_at).total_seconds() if run.first_token_at else None
        self.metrics.draft_ended(draft.task, str(status), run.tokens, ttft, (_now() - draft.created_at).total_seconds())

    def _expire(self, draft_id: int) -> None:
        """The deadline passed: stop the draft, unless the process is already stopping it."""
        self._stopping.setdefault(draft_id, StopReason.DEADLINE)
        self.cancel(draft_id)

    def stop_taking_drafts(self) -> None:
        """From now on create_draft refuses, politely; drafts already taken go on."""
        self._closing = True

    @property
    def drafts_in_progress(self) -> int:
        return len(self._requests)

    def interrupt_all(self) -> None:
        """Stop every queued or running draft; each generate() ends with status interrupted."""
        for draft_id in list(self._requests):
            self._stopping[draft_id] = StopReason.SHUTDOWN  # even over a deadline: the member is told to ask again
            self.cancel(draft_id)

    async def unannounced_interruptions(self) -> list[Draft]:
        """Interrupted drafts whose members were not told yet (the process died before it could)."""
        return await self._repository.unannounced_interruptions(_now() - ANNOUNCE_WITHIN)

    async def first_delivery(self, delivery_id: str, kind: str) -> bool:
        """Whether a front-end event (a Discord interaction) arrives for the first time: a repeat of it
        must have no effect. The first claim of an id wins, also against a concurrent one."""
        now = _now()
        if now - self._deliveries_forgotten_at > FORGET_EVERY:
            self._deliveries_forgotten_at = now
            await self._repository.forget_deliveries(before=now - DELIVERY_MEMORY)
        return await self._repository.claim_delivery(delivery_id, kind)

    async def withdraw(self, member: Member, draft_id: int, *, as_moderator: bool = False) -> None:
        """A member stops their own draft while it waits or streams (and the variants asked for with it); a
        moderator may stop any."""
        draft = await self._for_member(member, draft_id)
        if draft.author_id != member.id and not as_moderator:
            raise ServiceError("only the member who asked for this draft can cancel it")
        stopped = [self.cancel(variant.id) for variant in await self.variants_of(draft)]  # variants stop together
        if not any(stopped):
            raise ServiceError(f"draft #{draft_id} is not being written any more")

    def cancel(self, draft_id: int) -> bool:
        """Stop a queued or running draft; its generate() ends with status cancelled."""
        request_id = self._requests.get(draft_id)
        return request_id is not None and self.served.cancel(request_id)

    async def rate(self, member: Member, draft_id: int, up: bool) -> tuple[int, int]:
        """One rating per member per draft; rating again changes it. Returns (ups, downs)."""
        await self._finished(member, draft_id)
        await self._repository.rate(draft_id, member.id, 1 if up else -1)
        return await self._repository.rating_summary(draft_id)

    async def improve(self, member: Member, draft_id: int, text: str) -> None:
        """Store a member's better version of a draft: the best training example there is."""
        await self._finished(member, draft_id)
        await self._repository.add_improvement(draft_id, member.id, _feedback_text(text, "improved version"))

    async def flag(self, member: Member, draft_id: int, reason: str) -> int:
        """Report a draft to the moderators; returns the flag's id."""
        await self._for_member(member, draft_id)
        flag = await self._repository.add_flag(draft_id, _feedback_text(reason, "reason"), member_id=member.id)
        return flag.id

    async def record_message(self, draft_id: int, channel_id: str, message_id: str) -> None:
        """Remember where a draft was shown, so a moderator's decision can update it there."""
        await self._repository.set_message(draft_id, channel_id, message_id)

    @property
    def decision_rule(self) -> DecisionRule:
        return self._policy.stats.rule()

    async def version_tallies(self, *, task: str | None = None, since: datetime | None = None,
                              guild_id: str | None = None) -> list[VersionTally]:
        """Each model version's drafts and feedback (of one Discord server's, with `guild_id`), counting
        votes as the decision rule says."""
        return await self._repository.version_tallies(task=task, since=since, guild_id=guild_id,
                                                      votes_per_member=self.decision_rule.votes_per_member)

    async def stats_chart(self, title: str, *, task: str | None = None, since: datetime | None = None,
                          guild_id: str | None = None, experiment_id: int | None = None) -> bytes:
        """The stats chart as a PNG, rendered in a worker thread (seconds of matplotlib); with `experiment_id`,
        per variant of that experiment."""
        from bot.charts import stats_chart  # matplotlib: imported by the charts only, not every command

        rule = self.decision_rule
        drafts = await self._repository.draft_votes(task=task, since=since, guild_id=guild_id,
                                                    votes_per_member=rule.votes_per_member, experiment_id=experiment_id)
        return await asyncio.to_thread(stats_chart, drafts, title, rule.win_probability)

    async def status(self) -> Status:
        activity = await self._repository.activity(_now() - STATUS_WINDOW)
        served = self._served
        info = served.info if served is not None else None
        return Status(
            counts=activity.counts,
            tokens_per_s=activity.tokens / STATUS_WINDOW.total_seconds(),
            model=f"{info.name} ({info.quantization}, {info.device}), version {served.serving}"
            if info and served else None,
            load=served.load() if served is not None else None,
            peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )

    async def recent(self, limit: int = 10, member: Member | None = None) -> list[Draft]:
        return await self._repository.recent_drafts(limit, author_id=member.id if member else None)

    async def get(self, draft_id: int) -> Draft:
        return await self._existing(draft_id)

    async def export(
        self,
        folder: Path,
        *,
        formats: tuple[str, ...] = EXPORT_FORMATS,
        filters: FeedbackFilter = FeedbackFilter(),
        rating_threshold: float | None = None,
        min_votes: int | None = None,
        test_fraction: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> DatasetSummary:
        """Write a training dataset into `folder`: one JSON Lines file per format and split, and its card,
        which also says how many drafts each rule left out. `folder` changes only once the dataset is whole.

        Settings left as None take the deployment's. Streams from the database; shaping, duplicate
        checks and file writes run in a worker thread a batch at a time, so the loop stays free.
        `progress` is told how many drafts each page read (of `count_for_export`'s total).
        """
        exports, privacy = self._policy.export, self._policy.privacy
        options = DatasetOptions(
            formats=formats,
            rules=RowRules(threshold=exports.rating_threshold if rating_threshold is None else rating_threshold,
                           min_votes=exports.min_votes if min_votes is None else min_votes),
            test_fraction=exports.test_fraction if test_fraction is None else test_fraction,
        )
        records = self._repository.iter_feedback(
            filters=filters, consent_default=privacy.training_consent_default, pseudonym_key=self._policy.member_key,
            pseudonymize=privacy.pseudonymize, on_page=progress,
        )
        writer = await asyncio.to_thread(DatasetWriter, folder, options, filters)
        batch: list[FeedbackRecord] = []
        try:
            exclusions = await self._repository.count_exclusions(
                filters, consent_default=privacy.training_consent_default, pseudonym_key=self._policy.member_key)
            async for record in records:
                batch.append(record)
                if len(batch) >= EXPORT_BATCH:
                    await asyncio.to_thread(writer.feed, batch)
                    batch = []
            await asyncio.to_thread(writer.feed, batch)
        except BaseException:
            await asyncio.to_thread(writer.abandon)
            raise
        return await asyncio.to_thread(writer.close, exclusions)

    async def count_for_export(self, filters: FeedbackFilter = FeedbackFilter()) -> int:
        """How many drafts an export with these filters reads: the total for a progress bar."""
        return await self._repository.count_feedback(filters)

    async def _admit(self, member: Member) -> None:
        """Refuse at once, saying why and when to try again, what would go over a limit."""
        limits, now = self._policy.limits, _now()
        recent = now - STALE_AFTER
        if limits.waiting and await self._repository.count_waiting(since=recent) >= limits.waiting:
            raise LimitReached(f"copydesk is at capacity ({limits.waiting} drafts waiting); please try again in a minute")
        mine = await self._repository.count_waiting(since=recent, author_id=member.id)
        if limits.waiting_per_member and mine >= limits.waiting_per_member:
            raise LimitReached(f"you already have {mine} drafts waiting; ask again when one of them is done")
        if limits.per_member_per_minute:
            asked = await self._repository.request_times(member.id, now - RATE_WINDOW)
            if len(asked) >= limits.per_member_per_minute:
                wait = RATE_WINDOW - (now - asked[-limits.per_member_per_minute])
                raise LimitReached(f"you asked for {len(asked)} drafts in the last minute; "
                                   f"please try again in {max(1, math.ceil(wait.total_seconds()))} s")

    async def _existing(self, draft_id: int) -> Draft:
        draft = await self._repository.get_draft(draft_id)
        if draft is None:
            raise DraftNotFound(draft_id)
        return draft

    async def _for_member(self, member: Member, draft_id: int) -> Draft:
        """A draft the member may act on: another server's drafts do not exist for them, removed ones are closed."""
        draft = await self._existing(draft_id)
        if member.guild_id and draft.guild_id and draft.guild_id != member.guild_id:
            raise DraftNotFound(draft_id)
        if draft.removed_at is not None:
            raise ServiceError(f"draft #{draft_id} was removed by a moderator")
        return draft

    async def _finished(self, member: Member, draft_id: int) -> Draft:
        draft = await self._for_member(member, draft_id)
        if draft.status != DraftStatus.DONE:
            raise ServiceError(f"draft #{draft_id} is {draft.status}; only finished drafts can be rated or improved")
        return draft


@dataclass
class _Run:
    """What one generation of a draft has produced so far."""

    draft: Draft
    text: str = ""
    tokens: int = 0
    prompt_tokens: int = 0
    first_token_at: datetime | None = None
    reasons: list[str] = field(default_factory=list)  # why the safety checks hold it, once they do
    fields: PlatformDraft | None = None  # a platform draft's fields, once it is finished

    def progress(self, status: DraftStatus, *, error: str | None = None, flag_id: int | None = None,
                 quality: dict[str, Any] | None = None) -> DraftProgress:
        """This step as a front-end may show it: a held draft's text is never handed out."""
        held = bool(self.reasons)
        return DraftProgress(self.draft.id, "" if held else self.text, status, self.tokens, error=error, held=held,
                             flag_id=flag_id, quality=quality, fields=None if held else self.fields)


def _feedback_text(text: str, what: str) -> str:
    text = storable(text).strip()
    if is_blank(text):
        raise InputError(f"the {what} is empty")
    if len(text) > FEEDBACK_MAX_CHARS:
        raise InputError(f"the {what} is {len(text)} characters long; at most {FEEDBACK_MAX_CHARS} are kept")
    return text


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)
