"""Wiring: settings in, a ready service out; everything it opened is closed on the way out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Settings
from bot.service import DraftService
from generation import EngineConfig, LocalEngine, resolve_model
from storage import Repository, open_database


@asynccontextmanager
async def open_service(settings: Settings, *, with_model: bool = True) -> AsyncIterator[DraftService]:
    """Open the database first (fast to fail), then load the model unless only stored data is needed."""
    database = await open_database(settings.storage.database_url())
    engine: LocalEngine | None = None
    try:
        if with_model:
            source = await asyncio.to_thread(
                resolve_model, settings.model.name, settings.model.cache_path(),
                allow_download=settings.model.allow_download,
            )
            engine = await LocalEngine.start(
                source,
                quantization=settings.model.quantization,
                device=settings.model.device,
                config=EngineConfig(
                    max_concurrent=settings.engine.max_concurrent,
                    max_context_tokens=settings.engine.max_context_tokens,
                    seed=settings.engine.seed,
                ),
            )
        yield DraftService(
            Repository(database), engine,
            max_new_tokens=settings.engine.max_new_tokens,
            rating_threshold=settings.export.rating_threshold,
        )
    finally:
        if engine is not None:
            await engine.close()
        await database.close()
