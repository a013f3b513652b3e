"""Template versions as use cases: preview a new version of a task's prompt, save it, list, show, use it.

A version is checked (generation/templates.py) before it is previewed and again before it is stored,
and is never edited after: a change is the next version. The catalogue's built-in prompt is each
task's first version. A preview waits, unsaved, for PREVIEW_KEEP under a token, so a front-end can
offer a Save button that stores exactly what the moderator saw (a restart forgets it).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.errors import ServiceError
from generation import TASKS, EngineConfig, LocalEngine, Prompt, Task, get_task
from generation.served_versions import ServedVersions
from generation.templates import (
    BrandVoice,
    PromptTemplate,
    apply,
    builtin,
    estimate_tokens,
    sample_request,
    version_name,
)
from generation.templates import check as check_version
from storage import Repository, TemplateVersion

PREVIEW_KEEP_S = 15 * 60.0  # as long as Discord lets a moderator act on the preview's message
PREVIEWS_KEPT = 100  # unsaved previews held at once; the oldest go first
FIRST_STORED = 2  # the built-in prompt is version 1
EXPIRES = "what is not saved waits 15 minutes, and a restart forgets it"
T = TypeVar("T")


@dataclass(frozen=True)
class Preview:
    """What a version makes of the sample request; `token` saves it (see Templates.save_preview)."""

    token: str
    version: PromptTemplate  # named `<task>-preview`: the name is chosen when it is saved
    inputs: dict[str, str]
    prompt: Prompt
    text: str


class Expiring(Generic[T]):
    """Values kept for PREVIEW_KEEP_S under a token hard to guess, at most PREVIEWS_KEPT at once (oldest go first)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, T]] = {}

    def put(self, value: T, token: str | None = None) -> str:
        self._forget_old()
        while len(self._items) >= PREVIEWS_KEPT:
            del self._items[next(iter(self._items))]
        token = token or new_token()
        self._items[token] = (time.monotonic(), value)
        return token

    def get(self, token: str) -> T | None:
        self._forget_old()
        kept = self._items.get(token)
        return None if kept is None else kept[1]

    def pop(self, token: str) -> T | None:
        found = self.get(token)
        self._items.pop(token, None)
        return found

    def _forget_old(self) -> None:
        now = time.monotonic()
        for token in [token for token, (when, _) in self._items.items() if now - when > PREVIEW_KEEP_S]:
            del self._items[token]


def new_token() -> str:
    return secrets.token_urlsafe(12)


class Templates:
    """Preview, save, list and show template versions, and the task a draft of a version renders with."""

    def __init__(self, repository: Repository, served: ServedVersions | None, *,
                 max_new_tokens: int | None = None) -> None:
        self._repository = repository
        self._served = served
        self._max_new_tokens = max_new_tokens  # the deployment's cap, which drafts get too
        self._previews: Expiring[Preview] = Expiring()
        self._saved: Expiring[str] = Expiring()  # preview token → the name it was saved as
        self._unsaved: Expiring[tuple[str, dict[str, str]]] = Expiring()  # a form's texts, to edit them again

    async def preview(self, task_name: str, system_prompt: str, template: str, brand_voice: BrandVoice, *,
                      by: str, inputs: Mapping[str, str] | None = None) -> Preview:
        """Check the version, render it on `inputs` (the task's sample request by default) and write one draft
        with the engine; nothing is stored."""
        task = get_task(task_name)
        version = await self.check(task_name, system_prompt, template, brand_voice)
        applied = apply(task, version)
        values = applied.validate(inputs if inputs is not None else sample_request(task))
        prompt = applied.render(values)
        text = await self._write(prompt, applied, values, by)
        preview = Preview(new_token(), version, values, prompt, text)
        self._previews.put(preview, preview.token)
        return preview

    async def save(self, task_name: str, system_prompt: str, template: str, brand_voice: BrandVoice, *,
                   by: str, guild_id: str | None = None) -> PromptTemplate:
        """Check and store the task's next version, logged in the moderation log."""
        task = get_task(task_name)
        await self.check(task_name, system_prompt, template, brand_voice)
        row = await self._repository.create_template_version(
            task=task.name, name_for=lambda stored: version_name(task.name, FIRST_STORED + stored),
            system_prompt=system_prompt, template=template, brand_voice=brand_voice.as_dict(), created_by=by)
        await self._repository.log_action(guild_id=guild_id, flag_id=None, draft_id=None, moderator_id=by,
                                          action="template-version", note=row.name)
        return _version(row)

    async def save_preview(self, token: str, *, by: str, guild_id: str | None = None) -> PromptTemplate:
        """Store the version a preview showed; saving it again answers with the name it was saved as."""
        if (name := self._saved.get(token)) is not None:
            raise ServiceError(f"this preview was saved already, as {name}")
        preview = self._previews.pop(token)
        if preview is None:
            raise ServiceError(f"this preview has expired ({EXPIRES}); please write the version again")
        version = preview.version
        saved = await self.save(version.task, version.system_prompt, version.template, version.brand_voice,
                                by=by, guild_id=guild_id)
        self._saved.put(saved.name, token)
        return saved

    def keep_unsaved(self, task_name: str, texts: Mapping[str, str]) -> str:
        """Keep what a moderator wrote, refused or previewed, so a front-end can let them edit it again."""
        return self._unsaved.put((get_task(task_name).name, dict(texts)))

    def unsaved(self, token: str) -> tuple[str, dict[str, str]]:
        """The task and texts `keep_unsaved` kept under `token`."""
        kept = self._unsaved.get(token)
        if kept is None:
            raise ServiceError(f"what you wrote has expired ({EXPIRES}); please start again")
        return kept

    async def list(self, task_name: str | None = None) -> list[PromptTemplate]:
        """Each task's versions, the built-in first, oldest to newest."""
        tasks = [get_task(task_name)] if task_name else list(TASKS.values())
        stored = await self._repository.template_versions(task_name)
        return [version for task in tasks
                for version in (builtin(task), *(_version(row) for row in stored if row.task == task.name))]

    async def show(self, name: str) -> PromptTemplate:
        for task in TASKS.values():
            if task.template_version == name:
                return builtin(task)
        row = await self._repository.template_version(name)
        if row is None:
            raise ServiceError(f"there is no template version named {name!r} (`/templates list` or "
                               "`copydesk templates list` shows them)")
        return _version(row)

    async def task_for(self, task_name: str, template_version: str) -> Task:
        """The task as `template_version` renders it: the catalogue's own for its built-in name."""
        task = get_task(task_name)
        version = await self.show(template_version)
        if version.task != task.name:
            raise ServiceError(f"template version {template_version!r} belongs to the {version.task} task, "
                               f"not to {task.name}")
        return task if version.name == task.template_version else apply(task, version)

    async def check(self, task_name: str, system_prompt: str, template: str,
                    brand_voice: BrandVoice) -> PromptTemplate:
        """The version, unsaved (named `<task>-preview`), if a draft of it cannot fail on its placeholders or
        its length; else InputError with the reason. Milliseconds (off the loop: the tokenizer counts), so a
        front-end may check before it acknowledges."""
        task = get_task(task_name)
        version = PromptTemplate(f"{task.name}-preview", task.name, system_prompt, template, brand_voice)
        engine = self._served.current if self._served is not None else None
        if isinstance(engine, LocalEngine):
            await asyncio.to_thread(check_version, task, version, context_tokens=engine.context_tokens,
                                    count_tokens=engine.count_tokens)
        else:  # served over HTTP, or no engine in this process: an estimate that errs high
            check_version(task, version, context_tokens=EngineConfig.max_context_tokens, count_tokens=estimate_tokens)
        return version

    async def _write(self, prompt: Prompt, task: Task, values: Mapping[str, str], by: str) -> str:
        if self._served is None:
            raise ServiceError("no model is loaded in this process, so nothing can be previewed")
        sampling = task.sampling_for(values).capped(self._max_new_tokens)
        text = ""
        async for update in self._served.current.stream(prompt, sampling, f"template-preview-{uuid.uuid4().hex}",
                                                        owner=by):
            text = update.text
        return text.strip()


def _version(row: TemplateVersion) -> PromptTemplate:
    return PromptTemplate(row.name, row.task, row.system_prompt, row.template, BrandVoice.from_dict(row.brand_voice))
