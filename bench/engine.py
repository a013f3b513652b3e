"""Benchmark, in one run: (a) one `model.generate` per request in threads, (b) copydesk's LocalEngine,
(c) `transformers serve` with continuous batching, reached through copydesk's OpenAIEngine.

All get the same model on the same 4-bit path, the same 16 chat prompts from the task catalogue,
the same per-task sampling and the same per-request token limits. Sampling makes lengths vary,
so throughput counts the tokens actually generated. At each concurrency c, c clients send
requests back to back until the level's requests are done. The result is a Markdown table on
stdout (progress goes to stderr); speed is a ratio against (a) of this run.

    .venv/bin/python bench/engine.py [--quick] [--no-server] [--device cuda] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from transformers import GenerationConfig
from transformers.generation.streamers import BaseStreamer

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/engine.py` from anywhere
    sys.path.insert(0, str(ROOT))

from generation import (  # noqa: E402
    EngineConfig,
    LocalEngine,
    Prompt,
    Sampling,
    get_task,
    resolve_model,
)
from generation.loading import QUANTIZATIONS, LoadedModel, load_model  # noqa: E402
from generation.model_source import ModelSource  # noqa: E402
from generation.openai_engine import OpenAIEngine  # noqa: E402
from support.loop_lag import LoopLag  # noqa: E402
from support.served import ServeOptions, transformers_serve  # noqa: E402

T = TypeVar("T")

DEFAULT_TOKEN_LIMITS = (48, 64, 96, 128)
QUICK_TOKEN_LIMITS = (16, 24, 32, 48)
WARMUP_TOKENS = 8

ARTICLE = (
    "The city council voted on Tuesday to turn the old freight yard into a public park. The plan keeps "
    "the historic water tower, adds a playground and a community garden, and plants four hundred trees. "
    "Construction starts next spring and should take two years. The cost, 12 million, is shared between "
    "the city and a regional fund. Some residents asked for more parking; the council promised a study."
)
RELEASE_NOTES = (
    "Version 3.2 of the app adds offline mode, so notes can be written without a connection and sync "
    "later. Search is twice as fast. Dark mode now follows the system setting. A bug that sometimes "
    "duplicated attachments is fixed. Support for the oldest phones ends with this release."
)
STUDY = (
    "Researchers followed 1,200 office workers for a year. Those who took a ten-minute walk after lunch "
    "reported better afternoon focus and slept slightly longer. The effect was small but consistent, and "
    "it did not depend on age. The authors caution that the workers chose whether to walk themselves."
)

PROMPTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("ad", {"product": "a reusable steel water bottle", "audience": "hikers", "tone": "bold"}),
    ("blog", {"topic": "starting a vegetable garden on a balcony", "audience": "city dwellers"}),
    ("summary", {"text": ARTICLE}),
    ("ad", {"product": "a noise-cancelling headset", "audience": "remote workers", "tone": "professional"}),
    ("blog", {"topic": "why sleep matters for learning", "tone": "professional", "audience": "students"}),
    ("summary", {"text": RELEASE_NOTES, "style": "bullets"}),
    ("ad", {"product": "handmade dark chocolate", "audience": "gift shoppers", "tone": "luxurious"}),
    ("blog", {"topic": "five easy weeknight dinners", "tone": "playful"}),
    ("summary", {"text": STUDY}),
    ("ad", {"product": "a bike repair workshop", "audience": "students on a budget", "tone": "playful"}),
    ("blog", {"topic": "how small teams can run better meetings", "audience": "team leads"}),
    ("summary", {"text": ARTICLE, "style": "bullets"}),
    ("ad", {"product": "a language-learning app", "audience": "busy parents"}),
    ("blog", {"topic": "the history of the bicycle", "tone": "bold", "length": "medium"}),
    ("summary", {"text": RELEASE_NOTES}),
    ("ad", {"product": "an electric cargo bike", "audience": "families in the city", "tone": "friendly"}),
)


@dataclass(frozen=True)
class BenchRequest:
    request_id: str
    prompt: Prompt
    sampling: Sampling


@dataclass(frozen=True)
class RequestResult:
    tokens: int
    latency_s: float
    ttft_s: float


@dataclass(frozen=True)
class LevelResult:
    backend: str
    concurrency: int
    results: tuple[RequestResult, ...]
    wall_s: float

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


class Backend(Protocol):
    name: str

    async def run(self, request: BenchRequest) -> RequestResult: ...

    async def close(self) -> None: ...


class TokenClock(BaseStreamer):
    """A `generate` streamer that notes when the first new token arrives and counts new tokens.

    `generate` hands a streamer the prompt first, then each new token; TextIteratorStreamer
    would only report at word boundaries, which blurs time to first token.
    """

    def __init__(self) -> None:
        self.first_token_at: float | None = None
        self.tokens = 0
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.tokens += value.numel()

    def end(self) -> None:
        """Nothing to flush: only counts and the first token's time are kept."""


class GenerateBaseline:
    """One `model.generate` per request, each in its own thread, all on one shared model."""

    name = "(a) generate per request"

    def __init__(self, loaded: LoadedModel, executor: ThreadPoolExecutor) -> None:
        self._loaded = loaded
        self._executor = executor
        self.device = loaded.device

    @classmethod
    async def start(
        cls, source: ModelSource, quantization: str, device: str, workers: int, threads: int,
    ) -> GenerateBaseline:
        """Load with one torch thread (an idle OpenMP team would spin beside the generate threads),
        then give each generate thread torch's default count, which the load lowered process-wide."""
        loaded = await in_fresh_thread(load_single_threaded, source, quantization, device)
        executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="generate", initializer=torch.set_num_threads, initargs=(threads,),
        )
        return cls(loaded, executor)

    async def run(self, request: BenchRequest) -> RequestResult:
        clock = TokenClock()
        start = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._generate, request, clock)
        end = time.perf_counter()
        first = clock.first_token_at if clock.first_token_at is not None else end
        return RequestResult(tokens=clock.tokens, latency_s=end - start, ttft_s=first - start)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _generate(self, request: BenchRequest, clock: TokenClock) -> None:
        tokenizer = self._loaded.tokenizer
        inputs = tokenizer.apply_chat_template(
            request.prompt.messages(), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
        ).to(self._loaded.model.device)
        sampling = request.sampling
        config = GenerationConfig(
            do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            max_new_tokens=sampling.max_new_tokens, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
        with torch.inference_mode():
            self._loaded.model.generate(**inputs, generation_config=config, streamer=clock)


class EngineBackend:
    """copydesk's LocalEngine: one worker thread, continuous batching; or any Engine, named."""

    name = "(b) copydesk engine"

    def __init__(self, engine: LocalEngine | OpenAIEngine, name: str | None = None) -> None:
        self._engine = engine
        self.device = engine.info.device
        self.name = name or self.name

    @classmethod
    async def start(cls, source: ModelSource, quantization: str, device: str, max_concurrent: int) -> EngineBackend:
        engine = await LocalEngine.start(
            source, quantization=quantization, device=device, config=EngineConfig(max_concurrent=max_concurrent),
        )
        return cls(engine)

    async def run(self, request: BenchRequest) -> RequestResult:
        start = time.perf_counter()
        first: float | None = None
        tokens = 0
        async for update in self._engine.stream(request.prompt, request.sampling, request.request_id):
            if first is None and update.completion_tokens:
                first = time.perf_counter()
            tokens = update.completion_tokens
        end = time.perf_counter()
        return RequestResult(tokens=tokens, latency_s=end - start, ttft_s=(end if first is None else first) - start)

    async def close(self) -> None:
        await self._engine.close()


def load_single_threaded(source: ModelSource, quantization: str, device: str) -> LoadedModel:
    torch.set_num_threads(1)
    return load_model(source, quantization, device)


async def in_fresh_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run in a thread of its own, so its torch thread setting stays out of any shared pool."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


# The field each task's template puts first after its fixed words; marking it makes every prompt unique.
UNIQUE_FIELD = {"ad": "product", "blog": "topic", "summary": "text"}


def build_requests(token_limits: Sequence[int], count: int, tag: str) -> list[BenchRequest]:
    """The catalogue's prompts with each task's sampling, token limits cycled over the requests.

    Each request's main field starts with its own id, so no two prompts share more than their
    task's fixed words: repeats would let the engine's prefix cache skip work real traffic does.
    """
    requests = []
    pairs = itertools.islice(zip(itertools.cycle(PROMPTS), itertools.cycle(token_limits)), count)
    for i, ((task_name, inputs), limit) in enumerate(pairs):
        task = get_task(task_name)
        field = UNIQUE_FIELD[task_name]
        unique = {**inputs, field: f"[{tag}-{i}] {inputs[field]}"}
        requests.append(BenchRequest(
            request_id=f"bench-{tag}-{i}", prompt=task.render(unique),
            sampling=replace(task.sampling, max_new_tokens=limit),
        ))
    return requests


async def run_level(backend: Backend, requests: Sequence[BenchRequest], concurrency: int) -> LevelResult:
    """c clients, each sending its next request as soon as its last one finished."""
    queue = list(requests)
    results: list[RequestResult] = []

    async def client() -> None:
        while queue:
            results.append(await backend.run(queue.pop(0)))

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return LevelResult(backend=backend.name, concurrency=concurrency, results=tuple(results), wall_s=wall)


async def measure(
    backend: Backend, levels: Sequence[int], token_limits: Sequence[int], min_requests: int,
) -> tuple[list[LevelResult], list[float]]:
    """All levels on one backend after a short warm-up (first-call setup is not what we compare);
    returns the rows and the loop lag sampled during the last (highest) level."""
    await backend.run(build_requests([WARMUP_TOKENS], 1, "warmup")[0])
    rows = []
    for c in levels:
        requests = build_requests(token_limits, max(c, min_requests), f"c{c}")
        async with LoopLag() as lag:
            row = await run_level(backend, requests, c)
        progress(f"{backend.name}: c={c} {row.tokens} tokens in {row.wall_s:.1f} s ({row.tokens_per_s:.1f} tokens/s)")
        rows.append(row)
    return rows, lag.samples_ms


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def render_table(rows: Sequence[LevelResult], baseline_rows: Sequence[LevelResult]) -> str:
    baseline_speed = {row.concurrency: row.tokens_per_s for row in baseline_rows}
    lines = [
        "| engine | concurrency | requests | tokens | wall s | tokens/s | speedup | p50 latency s | p95 latency s "
        "| p50 TTFT s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in sorted(rows, key=lambda r: (r.concurrency, r.backend)):
        latencies = [r.latency_s for r in row.results]
        speedup = row.tokens_per_s / baseline_speed[row.concurrency]
        lines.append(
            f"| {row.backend} | {row.concurrency} | {len(row.results)} | {row.tokens} | {row.wall_s:.1f} "
            f"| {row.tokens_per_s:.1f} | {speedup:.2f}× | {percentile(latencies, 50):.2f} "
            f"| {percentile(latencies, 95):.2f} | {percentile([r.ttft_s for r in row.results], 50):.2f} |"
        )
    return "\n".join(lines)


def describe_device(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores)"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def parse_levels(text: str) -> list[int]:
    levels = sorted({int(part) for part in text.split(",") if part.strip()})
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("concurrency must be positive integers, e.g. 1,4,8,16")
    return levels


def parse_limits(text: str) -> list[int]:
    limits = [int(part) for part in text.split(",") if part.strip()]
    if not limits or min(limits) < 1:
        raise argparse.ArgumentTypeError("token limits must be positive integers, e.g. 48,64,96,128")
    return limits


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Tokens/s, latency and time to first token of copydesk's engine against one `generate` "
        "per request, at several concurrency levels; prints a Markdown table.",
    )
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="nf4")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--concurrency", type=parse_levels, default=parse_levels("1,4,8,16"),
                        help="comma-separated concurrency levels (default 1,4,8,16)")
    parser.add_argument("--max-new-tokens", type=parse_limits, default=None,
                        help="per-request token limits, cycled over the requests "
                        f"(default {','.join(map(str, DEFAULT_TOKEN_LIMITS))}; "
                        f"--quick: {','.join(map(str, QUICK_TOKEN_LIMITS))})")
    parser.add_argument("--min-requests", type=int, default=None,
                        help="requests per level at least, run c at a time (default 4; --quick: 2)")
    parser.add_argument("--model", default="", help="model id or folder (default: the embedded model)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")),
                        help="where the embedded model is converted (default $COPYDESK_CACHE_DIR or ~/.cache/copydesk)")
    parser.add_argument("--quick", action="store_true", help="shorter token limits and fewer requests per level")
    parser.add_argument("--no-server", dest="server", action="store_false",
                        help="skip (c), `transformers serve` (it needs the dev extra: fastapi, uvicorn, openai)")
    args = parser.parse_args(argv)
    if args.max_new_tokens is None:
        args.max_new_tokens = list(QUICK_TOKEN_LIMITS if args.quick else DEFAULT_TOKEN_LIMITS)
    if args.min_requests is None:
        args.min_requests = 2 if args.quick else 4
    return args


@dataclass(frozen=True)
class Measured:
    name: str
    rows: list[LevelResult]
    lag_ms: list[float]
    device: str
    worker_threads: int


async def measure_engine(source: ModelSource, args: argparse.Namespace) -> Measured:
    engine = await EngineBackend.start(source, args.quantization, args.device, max(args.concurrency))
    # Torch's thread count is process-wide for threads yet to start; a fresh thread sees what the worker got.
    worker_threads = await in_fresh_thread(torch.get_num_threads)
    try:
        rows, lag = await measure(engine, args.concurrency, args.max_new_tokens, args.min_requests)
    finally:
        await engine.close()
    return Measured(engine.name, rows, lag, engine.device, worker_threads)


async def measure_baseline(source: ModelSource, args: argparse.Namespace, threads: int) -> Measured:
    baseline = await GenerateBaseline.start(source, args.quantization, args.device, max(args.concurrency), threads)
    try:
        rows, lag = await measure(baseline, args.concurrency, args.max_new_tokens, args.min_requests)
    finally:
        await baseline.close()
    return Measured(baseline.name, rows, lag, baseline.device, threads)


SERVER_QUANTIZATION = {"nf4": "bnb-4bit", "int8": "bnb-8bit", "none": None}


async def measure_server(source: ModelSource, args: argparse.Namespace) -> Measured:
    """(c): the server in its own process, sized like the local engine (pages of 64 tokens, 2048 per request)."""
    config = EngineConfig(max_concurrent=max(args.concurrency))
    options = ServeOptions(
        num_blocks=config.max_concurrent * config.max_context_tokens // config.page_size, block_size=config.page_size,
        max_batch_tokens=config.max_batch_tokens, quantization=SERVER_QUANTIZATION[args.quantization],
    )
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "serve.log"
        with transformers_serve(source.location, log, options) as base_url:
            engine = await OpenAIEngine.start(base_url, source.location, timeout_s=600,
                                              max_concurrent=config.max_concurrent)
            server = EngineBackend(engine, "(c) transformers serve")
            try:
                rows, lag = await measure(server, args.concurrency, args.max_new_tokens, args.min_requests)
            finally:
                await server.close()
    return Measured(server.name, rows, lag, "cpu", 0)


async def run_bench(args: argparse.Namespace) -> str:
    """Engine first, then the baseline, one model in memory at a time; returns the report."""
    default_threads = torch.get_num_threads()  # read before any load lowers it process-wide
    source = await asyncio.to_thread(resolve_model, args.model, args.cache_dir.expanduser())
    progress(f"loading {source.name} ({args.quantization}) for the engine…")
    engine = await measure_engine(source, args)
    free_memory()
    progress(f"loading {source.name} ({args.quantization}) for the baseline…")
    baseline = await measure_baseline(source, args, default_threads)
    free_memory()
    measured = [baseline, engine]
    if args.server:
        progress(f"starting transformers serve for {source.name} ({args.quantization})…")
        measured.append(await measure_server(source, args))
    return render_report(args, source, measured)


def render_report(args: argparse.Namespace, source: ModelSource, measured: Sequence[Measured]) -> str:
    baseline, engine = measured[0], measured[1]
    header = (
        f"torch {torch.__version__} · transformers {version('transformers')} · "
        f"bitsandbytes {version('bitsandbytes')} · device {describe_device(engine.device)} · "
        f"torch threads: engine worker {engine.worker_threads}, {baseline.worker_threads} per generate thread · "
        f"quantization {args.quantization} · model {source.name}"
    )
    workload = (
        f"{len(PROMPTS)} catalogue prompts (ad, blog, summary) with each task's sampling; token limits cycle "
        f"{'/'.join(map(str, args.max_new_tokens))}; each level runs max(c, {args.min_requests}) requests, "
        "c at a time; tokens are those actually generated."
    )
    lag = "\n".join(
        f"Event-loop lag at concurrency {max(args.concurrency)}, {m.name} (overshoot of 10 ms sleeps): "
        f"p50 {percentile(m.lag_ms, 50):.1f} ms, p99 {percentile(m.lag_ms, 99):.1f} ms ({len(m.lag_ms)} samples)"
        for m in measured
    )
    rows = [row for m in measured for row in m.rows]
    return "\n\n".join([header, workload, render_table(rows, baseline.rows), lag])


def main(argv: Sequence[str] | None = None) -> None:
    from transformers.utils import logging as transformers_logging

    args = parse_args(argv)
    transformers_logging.disable_progress_bar()  # keep stderr to one line per level
    started = time.perf_counter()
    report = asyncio.run(run_bench(args))
    print(report)
    progress(f"bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
