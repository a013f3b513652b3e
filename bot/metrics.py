"""Prometheus metrics: what the bot is doing now and has done, for dashboards and alerts.

Each service owns its own registry (no module-level globals), so tests and tools can run
several. `serve` exposes it over HTTP on a loopback address only: the metrics name models,
tasks and load, which is nobody's business outside the host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, start_http_server

from bot.errors import ServiceError
from generation import EngineLoad, ModelInfo

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
LOOP_LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_LAG_INTERVAL_S = 0.1


class Metrics:
    """Counters and histograms the service updates, gauges read from the engine when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # resident memory, CPU seconds, open files
        self._model = Info("copydesk_model", "The model this process serves", registry=self.registry)
        self._drafts = Counter("copydesk_drafts", "Drafts that ended, by task and final status",
                               ["task", "status"], registry=self.registry)
        self._tokens = Counter("copydesk_generated_tokens", "Tokens written into drafts", registry=self.registry)
        self._refusals = Counter("copydesk_refusals", "Requests refused at once for a limit", registry=self.registry)
        self._ttft = Histogram("copydesk_time_to_first_token_seconds", "From a draft's request to its first token",
                               ["task"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self._duration = Histogram("copydesk_draft_duration_seconds", "From a draft's request to its end",
                                   ["task"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self._loop_lag = Histogram("copydesk_event_loop_lag_seconds", "How late the event loop wakes a sleeping task",
                                   buckets=LOOP_LAG_BUCKETS_S, registry=self.registry)
        self._running = Gauge("copydesk_running_drafts", "Drafts being written now", registry=self.registry)
        self._waiting = Gauge("copydesk_queue_depth", "Drafts waiting for a slot of the engine", registry=self.registry)
        self._slots = Gauge("copydesk_engine_slots", "Drafts the engine writes at once at most", registry=self.registry)

    def watch_engine(self, info: ModelInfo, load: Callable[[], EngineLoad]) -> None:
        """Gauges read the engine's load when scraped, so they are never stale."""
        self._model.info({"name": info.name, "quantization": info.quantization, "device": info.device})
        self._running.set_function(lambda: load().running)
        self._waiting.set_function(lambda: load().waiting)
        self._slots.set_function(lambda: load().slots)

    def draft_ended(self, task: str, status: str, tokens: int, ttft_s: float | None, duration_s: float) -> None:
        self._drafts.labels(task=task, status=status).inc()
        self._tokens.inc(tokens)
        if ttft_s is not None:
            self._ttft.labels(task=task).observe(ttft_s)
        self._duration.labels(task=task).observe(duration_s)

    def refused(self) -> None:
        self._refusals.inc()

    async def watch_loop(self, interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
        """Runs until cancelled: the lag of the loop it runs on is what Discord's heartbeat would see."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(interval_s)
            self._loop_lag.observe(max(0.0, time.perf_counter() - start - interval_s))

    @contextmanager
    def serve(self, host: str, port: int) -> Iterator[int]:
        """Serve /metrics on a loopback address for the duration; yields the bound port (0 picks a free one)."""
        if not is_loopback(host):
            raise ServiceError(f"metrics are served on a loopback address only (got {host!r})")
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise ServiceError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        try:
            yield server.server_port
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
