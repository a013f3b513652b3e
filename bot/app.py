"""Wiring: settings in, a ready service out; everything it opened is closed on the way out."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

from bot.config import Settings
from bot.keys import member_key
from bot.service import INTERRUPTED_BY_RESTART, DraftService, Policy
from generation import Engine, EngineConfig, LocalEngine, resolve_model
from generation.openai_engine import OpenAIEngine
from storage import Repository, open_database

API_KEY_VARIABLE = "COPYDESK_OPENAI_API_KEY"
log = logging.getLogger("copydesk")


async def start_engine(settings: Settings) -> Engine:
    """The local model in a worker thread, or a model server over HTTP (`engine.kind`)."""
    engine = settings.engine
    if engine.kind == "openai":
        return await OpenAIEngine.start(
            engine.base_url, settings.model.name, api_key=os.environ.get(API_KEY_VARIABLE),
            timeout_s=engine.timeout_s, max_concurrent=engine.max_concurrent,
        )
    source = await asyncio.to_thread(
        resolve_model, settings.model.name, settings.model.cache_path(), allow_download=settings.model.allow_download,
    )
    return await LocalEngine.start(
        source,
        quantization=settings.model.quantization,
        device=settings.model.device,
        config=EngineConfig(max_concurrent=engine.max_concurrent, max_context_tokens=engine.max_context_tokens,
                            seed=engine.seed),
    )


@asynccontextmanager
async def open_service(
    settings: Settings, *, with_model: bool = True, serve_metrics: bool = False,
) -> AsyncIterator[DraftService]:
    """Open the database first (fast to fail), then load the model unless only stored data is needed.

    A process that writes drafts claims the database, so that a second one is refused, and marks
    the drafts a dead predecessor left unfinished as interrupted. With `serve_metrics` (the bot,
    not one-off commands) and a `metrics.port`, Prometheus metrics are served on loopback while
    the service is open. All is closed in reverse order.
    """
    async with AsyncExitStack() as opened:
        database = await open_database(settings.storage.database_url())
        opened.push_async_callback(database.close)
        repository = Repository(database)
        engine: Engine | None = None
        if with_model:
            started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            await opened.enter_async_context(database.claim(f"copydesk process {os.getpid()} (started {started})"))
            if interrupted := await repository.interrupt_unfinished(INTERRUPTED_BY_RESTART):
                log.warning("%d draft(s) a previous run left unfinished are marked interrupted", interrupted)
            engine = await start_engine(settings)
            opened.push_async_callback(engine.close)
        policy = Policy.of(settings, member_key(Path(settings.storage.data_dir).expanduser()))
        service = DraftService(repository, engine, policy)
        if serve_metrics and settings.metrics.port:
            opened.enter_context(service.metrics.serve(settings.metrics.host, settings.metrics.port))
            watcher = asyncio.create_task(service.metrics.watch_loop())
            opened.callback(watcher.cancel)
        yield service
