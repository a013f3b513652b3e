"""Wiring: settings in, a ready service out; everything it opened is closed on the way out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from bot.config import Settings
from bot.keys import member_key
from bot.service import DraftService, Limits, Policy
from generation import Engine, EngineConfig, LocalEngine, resolve_model
from generation.openai_engine import OpenAIEngine
from generation.safety import SafetyPolicy
from storage import Repository, open_database

API_KEY_VARIABLE = "COPYDESK_OPENAI_API_KEY"


def policy_from(settings: Settings) -> Policy:
    moderation = settings.moderation
    return Policy(
        max_new_tokens=settings.engine.max_new_tokens,
        rating_threshold=settings.export.rating_threshold,
        safety=SafetyPolicy(blocked_terms=moderation.blocked_terms,
                            detect_personal_data=moderation.detect_personal_data,
                            detect_prompt_leak=moderation.detect_prompt_leak),
        consent_default=settings.privacy.training_consent_default,
        pseudonymize=settings.privacy.pseudonymize,
        member_key=member_key(Path(settings.storage.data_dir).expanduser()),
        limits=Limits(**settings.limits.model_dump()),
        timeout_s=settings.engine.timeout_s,
    )


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

    With `serve_metrics` (the bot, not one-off commands) and a `metrics.port`, Prometheus metrics
    are served on loopback while the service is open.
    """
    database = await open_database(settings.storage.database_url())
    engine: Engine | None = None
    try:
        if with_model:
            engine = await start_engine(settings)
        service = DraftService(Repository(database), engine, policy_from(settings))
        async with AsyncExitStack() as stack:
            if serve_metrics and settings.metrics.port:
                stack.enter_context(service.metrics.serve(settings.metrics.host, settings.metrics.port))
                watcher = asyncio.create_task(service.metrics.watch_loop())
                stack.callback(watcher.cancel)
            yield service
    finally:
        if engine is not None:
            await engine.close()
        await database.close()
