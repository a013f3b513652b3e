"""How late the event loop runs: what every coroutine on it would see while something else works."""

from __future__ import annotations

import asyncio
import time


class LoopLag:
    """Samples how late a 10 ms sleep wakes up: the delay every coroutine on the loop would see."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.samples_ms.append((time.perf_counter() - start - self.interval_s) * 1000)
