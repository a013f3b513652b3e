"""Wiring: settings in, a ready service out; everything it opened is closed on the way out."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

from bot.config import Settings
from bot.keys import member_key
from bot.service import INTERRUPTED_BY_RESTART, DraftService, Policy
from bot.versions import ModelVersions
from generation import Engine, EngineConfig, LocalEngine, ModelSource, resolve_model
from generation.openai_engine import OpenAIEngine
from generation.served_versions import ServedVersions
from generation.training.version_folder import MERGED
from storage import BASE_VERSION, Repository, open_database

API_KEY_VARIABLE = "COPYDESK_OPENAI_API_KEY"
log = logging.getLogger("copydesk")


def base_model(settings: Settings) -> ModelSource:
    """The configured model, which every version is an adapter of; blocks (converts the embedded one once)."""
    return resolve_model(settings.model.name, settings.model.cache_path(), allow_download=settings.model.allow_download)


async def start_engine(settings: Settings, version: str = BASE_VERSION, folder: Path | None = None) -> Engine:
    """The local model in a worker thread, or a model server over HTTP (`engine.kind`).

    A trained version is served locally from its merged checkpoint (`folder`); over HTTP by its
    name, which the server maps to the adapter (vLLM: `--lora-modules NAME=FOLDER/adapter`).
    """
    engine = settings.engine
    if engine.kind == "openai":
        return await OpenAIEngine.start(
            engine.base_url, settings.model.name if version == BASE_VERSION else version,
            api_key=os.environ.get(API_KEY_VARIABLE), timeout_s=engine.timeout_s, max_concurrent=engine.max_concurrent,
        )
    source = await asyncio.to_thread(base_model, settings)
    if folder is not None:
        source = ModelSource(str(folder / MERGED), source.name)
    return await LocalEngine.start(
        source,
        quantization=settings.model.quantization,
        device=settings.model.device,
        config=EngineConfig(max_concurrent=engine.max_concurrent, max_context_tokens=engine.max_context_tokens,
                            seed=engine.seed),
    )


@asynccontextmanager
async def open_service(
    settings: Settings, *, with_model: bool = True, as_bot: bool = False,
) -> AsyncIterator[DraftService]:
    """Open the database first (fast to fail), then load the model unless only stored data is needed.

    A process that writes drafts claims the database, so that a second one is refused, and marks
    the drafts a dead predecessor left unfinished as interrupted. With `as_bot` (the bot,
    not one-off commands) it follows the model version `copydesk models serve` chooses, and with a
    `metrics.port` serves Prometheus metrics on loopback while the service is open. All is closed
    in reverse order.
    """
    async with AsyncExitStack() as opened:
        database = await open_database(settings.storage.database_url())
        opened.push_async_callback(database.close)
        repository = Repository(database)
        served: ServedVersions | None = None
        # `in_use` is true while a bot serves the database, in another process or in this one (its
        # engine keeps its cores): training then takes half of them.
        versions_with = functools.partial(
            ModelVersions, repository, settings.training.versions_dir(settings.storage.data_dir),
            lambda: base_model(settings), device=settings.model.device, bot_running=database.in_use,
            defaults=settings.training)
        versions = versions_with()
        if with_model:
            started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            await opened.enter_async_context(database.claim(f"copydesk process {os.getpid()} (started {started})"))
            if interrupted := await repository.interrupt_unfinished(INTERRUPTED_BY_RESTART):
                log.warning("%d draft(s) a previous run left unfinished are marked interrupted", interrupted)
            served = await _serve_versions(settings, repository, versions)
            opened.push_async_callback(served.close)
            versions = versions_with(served=served)
        policy = Policy.of(settings, member_key(Path(settings.storage.data_dir).expanduser()))
        service = DraftService(repository, served, policy, versions=versions)
        if as_bot and settings.metrics.port:
            opened.enter_context(service.metrics.serve(settings.metrics.host, settings.metrics.port))
            watcher = asyncio.create_task(service.metrics.watch_loop())
            opened.callback(watcher.cancel)
        if served is not None and as_bot:  # follow `copydesk models serve` from other processes
            follower = asyncio.create_task(versions.follow(settings.training.version_check_s))
            opened.callback(follower.cancel)
        yield service


async def _serve_versions(settings: Settings, repository: Repository, versions: ModelVersions) -> ServedVersions:
    """Engines per version, starting with the one the database says serves (the base if it cannot be opened)."""

    async def open_version(name: str) -> Engine:
        if name == BASE_VERSION:
            return await start_engine(settings)
        version = await versions.show(name)
        await versions.check_servable(version)
        return await start_engine(settings, name, Path(version.folder))

    wanted = await repository.serving_version()
    try:
        first = await open_version(wanted)
    except Exception as error:  # noqa: BLE001 - the bot still serves, on the base model, and says why
        if wanted == BASE_VERSION:
            raise
        log.error("cannot serve model version %s (%s); serving the base model instead", wanted, error)
        wanted, first = BASE_VERSION, await start_engine(settings)
    return ServedVersions(wanted, first, open_version)
