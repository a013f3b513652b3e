"""The model versions one process serves: an engine per version, and the one new drafts go to.

Switching is a pointer move: new drafts go to the new version at once, while drafts that started
on the old one stream on to their end from its engine, which is closed once it has nothing left
to write. A version's engine is opened on first use (a queued draft of a version no longer
current opens it again), so two versions can serve side by side — an experiment needs that — in
the memory of two engines (each its own model and cache; the embedded model's is ~0.2 GB).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from generation.engine import Engine, ModelInfo
from generation.slots import EngineLoad

IDLE_CHECK_S = 0.5  # how often an engine that serves no version any more is checked for drafts left

OpenEngine = Callable[[str], Awaitable[Engine]]


class ServedVersions:
    """Engines by version name; `serving` is where new drafts go."""

    def __init__(self, serving: str, engine: Engine, open_engine: OpenEngine | None = None) -> None:
        self.serving = serving
        self._engines: dict[str, Engine] = {serving: engine}
        self._open = open_engine
        self._opening: dict[str, asyncio.Lock] = {}
        self._in_use: dict[str, int] = {}
        self._kept: set[str] = set()
        self._closers: set[asyncio.Task[None]] = set()

    @property
    def current(self) -> Engine:
        return self._engines[self.serving]

    @property
    def info(self) -> ModelInfo:
        return self.current.info

    def loaded(self) -> list[str]:
        return list(self._engines)

    async def engine(self, version: str) -> Engine:
        """The engine for `version`, opened if this process has none for it yet."""
        if version in self._engines:
            return self._engines[version]
        if self._open is None:
            raise LookupError(f"model version {version!r} is not served by this process")
        async with self._opening.setdefault(version, asyncio.Lock()):
            if version not in self._engines:
                self._engines[version] = await self._open(version)
        return self._engines[version]

    @contextlib.asynccontextmanager
    async def using(self, version: str) -> AsyncIterator[Engine]:
        """Hold `version`'s engine for one draft, so it is not closed under it."""
        engine = await self.engine(version)
        self._in_use[version] = self._in_use.get(version, 0) + 1
        try:
            yield engine
        finally:
            self._in_use[version] -= 1
            self._close_if_unused()

    async def serve(self, version: str) -> None:
        """Send new drafts to `version` (opened first, so a failure to open changes nothing)."""
        await self.engine(version)
        self.serving = version
        self._close_if_unused()

    def keep(self, versions: set[str]) -> None:
        """Keep these versions' engines open once opened, though they serve no new drafts by default: an
        experiment or a task's own default drafts with them, and reopening a model per draft takes seconds."""
        self._kept = set(versions)
        self._close_if_unused()

    def cancel(self, request_id: str) -> bool:
        return any(engine.cancel(request_id) for engine in list(self._engines.values()))

    def load(self) -> EngineLoad:
        return self.current.load()

    async def close(self) -> None:
        for task in list(self._closers):
            task.cancel()
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.close()

    def _close_if_unused(self) -> None:
        for version in [name for name in self._engines if name != self.serving and name not in self._kept
                        and not self._in_use.get(name)]:
            engine = self._engines.pop(version)
            task = asyncio.get_running_loop().create_task(engine.close())
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)
