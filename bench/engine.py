"""Benchmark, in one run: (a) one `model.generate` per request in threads, (b) copydesk's LocalEngine,
(c) `transformers serve` with continuous batching, (d) llama.cpp's `llama-server` on the GGUF file
the embedded model is converted from; (c) and (d) are reached through copydesk's OpenAIEngine.

(a)-(c) get the same model on the same 4-bit path, (d) the same model in its own 4-bit format
(Q4_1); all get the same 16 chat prompts from the task catalogue, the same per-task sampling and
the same per-request token limits. Sampling makes lengths vary, so throughput counts the tokens
actually generated. At each concurrency c, c clients send requests back to back until the
level's requests are done. The result is Markdown tables on stdout (progress goes to stderr);
speed is a ratio against (a) of this run.

Peak memory is each engine's own process's high-water mark of resident memory (VmHWM): (a) and
(b) each run in a fresh process of their own, so neither inherits the other's peak; (c) and (d)
are read from the server process just before it is stopped. (d) is CPU-only: it is skipped on
CUDA and for models other than the embedded one (it needs that GGUF file); the first run builds
`llama-server` into the cache (bench/llama_server.py, about 8 minutes on 2 cores).

    .venv/bin/python bench/engine.py [--quick] [--no-server] [--no-llama-cpp] [--device cuda] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager
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

from bench.llama_server import (  # noqa: E402
    LLAMA_CPP_PYTHON_VERSION,
    BuildFailed,
    build_llama_server,
    llama_server_command,
    run_flags,
)
from generation import (  # noqa: E402
    EngineConfig,
    LocalEngine,
    Prompt,
    Sampling,
    get_task,
    resolve_model,
)
from generation.errors import QuantizationUnavailable  # noqa: E402
from generation.loading import (  # noqa: E402
    QUANTIZATIONS,
    LoadedModel,
    load_model,
    pick_device,
    pick_quantization,
)
from generation.model_source import ModelSource, embedded_gguf  # noqa: E402
from generation.openai_engine import OpenAIEngine  # noqa: E402
from support.loop_lag import LoopLag  # noqa: E402
from support.peak_memory import peak_rss_mb, rss_mb  # noqa: E402
from support.served import (  # noqa: E402
    OFFLINE,
    ServeOptions,
    ServerDidNotStart,
    child_server,
    free_port,
    transformers_serve_command,
)

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
    cells = []
    for row in sorted(rows, key=lambda r: (r.concurrency, r.backend)):
        latencies = [r.latency_s for r in row.results]
        cells.append([
            row.backend, str(row.concurrency), str(len(row.results)), str(row.tokens), f"{row.wall_s:.1f}",
            f"{row.tokens_per_s:.1f}", f"{row.tokens_per_s / baseline_speed[row.concurrency]:.2f}×",
            f"{percentile(latencies, 50):.2f}", f"{percentile(latencies, 95):.2f}", f"{median_ttft(row):.2f}",
        ])
    return markdown_table(["engine", "concurrency", "requests", "tokens", "wall s", "tokens/s", "speedup",
                           "p50 latency s", "p95 latency s", "p50 TTFT s"], cells)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The first column left-aligned (names), the others right-aligned (numbers)."""
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
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
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="auto",
                        help="as copydesk's model.quantization (default auto: int4 on the CPU, nf4 on CUDA)")
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
    parser.add_argument("--no-llama-cpp", dest="llama_cpp", action="store_false",
                        help="skip (d), llama.cpp's server (the first run builds it into the cache, ~8 minutes); "
                        "it is skipped by itself on CUDA and for models other than the embedded one")
    args = parser.parse_args(argv)
    if args.max_new_tokens is None:
        args.max_new_tokens = list(QUICK_TOKEN_LIMITS if args.quick else DEFAULT_TOKEN_LIMITS)
    if args.min_requests is None:
        args.min_requests = 2 if args.quick else 4
    try:
        args.quantization = pick_quantization(args.quantization, args.device)  # named as the drafts would be
    except QuantizationUnavailable as refused:
        parser.error(str(refused))
    if args.server and args.quantization not in SERVER_QUANTIZATION:
        parser.error(f"transformers serve has no {args.quantization} option: add --no-server")
    return args


@dataclass(frozen=True)
class Measured:
    name: str
    rows: list[LevelResult]
    lag_ms: list[float]
    device: str
    worker_threads: int
    peak_rss_mb: float  # of the process the engine ran in, see the module's docstring
    end_rss_mb: float  # of the same process after the last level


async def measure_engine(source: ModelSource, args: argparse.Namespace) -> Measured:
    engine = await EngineBackend.start(source, args.quantization, args.device, max(args.concurrency))
    # Torch's thread count is process-wide for threads yet to start; a fresh thread sees what the worker got.
    worker_threads = await in_fresh_thread(torch.get_num_threads)
    try:
        rows, lag = await measure(engine, args.concurrency, args.max_new_tokens, args.min_requests)
    finally:
        await engine.close()
    return Measured(engine.name, rows, lag, engine.device, worker_threads, peak_rss_mb(), rss_mb())


async def measure_baseline(source: ModelSource, args: argparse.Namespace) -> Measured:
    threads = torch.get_num_threads()  # torch's default: this runs in a fresh process, before any load lowers it
    baseline = await GenerateBaseline.start(source, args.quantization, args.device, max(args.concurrency), threads)
    try:
        rows, lag = await measure(baseline, args.concurrency, args.max_new_tokens, args.min_requests)
    finally:
        await baseline.close()
    return Measured(baseline.name, rows, lag, baseline.device, threads, peak_rss_mb(), rss_mb())


InProcessMeasure = Callable[[ModelSource, argparse.Namespace], Coroutine[Any, Any, Measured]]


async def in_own_process(measure_fn: InProcessMeasure, source: ModelSource, args: argparse.Namespace) -> Measured:
    """Run an in-process engine's measure in a fresh process, so its peak memory is its own."""
    spawn = multiprocessing.get_context("spawn")  # a forked copy of this process would inherit its memory
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, run_measure, measure_fn, source, args)


def run_measure(measure_fn: InProcessMeasure, source: ModelSource, args: argparse.Namespace) -> Measured:
    """The entry point of that fresh process."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    return asyncio.run(measure_fn(source, args))


async def measure_server(
    name: str, server: AbstractContextManager[subprocess.Popen[bytes]], base_url: str, model: str,
    args: argparse.Namespace, worker_threads: int,
) -> Measured:
    """A server in its own process, reached through copydesk's OpenAIEngine; its peak memory is read
    from the kernel before it stops."""
    with server as process:
        engine = await OpenAIEngine.start(base_url, model, timeout_s=600, max_concurrent=max(args.concurrency))
        backend = EngineBackend(engine, name)
        try:
            rows, lag = await measure(backend, args.concurrency, args.max_new_tokens, args.min_requests)
        finally:
            await backend.close()
        peak, end = peak_rss_mb(process.pid), rss_mb(process.pid)
    return Measured(name, rows, lag, "cpu", worker_threads, peak, end)


SERVER_QUANTIZATION = {"nf4": "bnb-4bit", "int8": "bnb-8bit", "none": None}


async def measure_transformers_serve(source: ModelSource, args: argparse.Namespace, folder: Path) -> Measured:
    """(c): sized like the local engine (its pages, its context per request, its step size)."""
    config = EngineConfig(max_concurrent=max(args.concurrency))
    options = ServeOptions(
        num_blocks=config.max_concurrent * config.max_context_tokens // config.page_size, block_size=config.page_size,
        max_batch_tokens=config.max_batch_tokens, quantization=SERVER_QUANTIZATION[args.quantization],
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    server = child_server(transformers_serve_command(source.location, port, options), f"{base_url}/models",
                          folder / "serve.log", "transformers serve", extra_env=OFFLINE)
    return await measure_server(TRANSFORMERS_SERVE_NAME, server, base_url, source.location, args, 0)


async def measure_llama_cpp(source: ModelSource, args: argparse.Namespace, folder: Path, binary: Path) -> Measured:
    """(d): a slot per concurrent draft, each with the local engine's context per request, all cores."""
    threads = len(os.sched_getaffinity(0))
    port = free_port()
    command = llama_server_command(binary, embedded_gguf(), port, slots=max(args.concurrency),
                                   context_per_slot=EngineConfig().max_context_tokens, threads=threads)
    server = child_server(command, f"http://127.0.0.1:{port}/health", folder / "llama-server.log", "llama-server")
    return await measure_server(LLAMA_CPP_NAME, server, f"http://127.0.0.1:{port}/v1", source.name, args, threads)


TRANSFORMERS_SERVE_NAME = "(c) transformers serve"
LLAMA_CPP_NAME = "(d) llama.cpp server"


def llama_cpp_skipped_because(args: argparse.Namespace) -> str | None:
    """Why (d) cannot run here, if it cannot: it is a CPU build, and it needs the embedded model's GGUF file."""
    if not args.llama_cpp:
        return "--no-llama-cpp"
    if pick_device(args.device) != "cpu":
        return "it is a CPU-only peer and this run is on CUDA"
    if args.model:
        return "it runs only the embedded model's GGUF file, and --model names another model"
    return None


async def find_llama_server(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """The `llama-server` binary for (d), built now if absent (before anything is measured, so a
    failed build costs no measurement), or why (d) is skipped."""
    skipped = llama_cpp_skipped_because(args)
    if skipped is not None:
        return None, skipped
    progress("finding llama.cpp's server (built into the cache first if absent, ~8 minutes on 2 cores)…")
    try:
        return await asyncio.to_thread(build_llama_server, args.cache_dir.expanduser()), None
    except BuildFailed as failure:
        return None, str(failure)


async def run_bench(args: argparse.Namespace) -> str:
    """Each engine in turn, one model in memory at a time; returns the report.

    A server that does not come up is noted in the report; the other engines' results are kept.
    """
    source = await asyncio.to_thread(resolve_model, args.model, args.cache_dir.expanduser())
    llama_server, llama_cpp_skipped = await find_llama_server(args)
    notes = [] if llama_cpp_skipped is None else [f"(d) llama.cpp not measured: {llama_cpp_skipped}"]
    progress(f"loading {source.name} ({args.quantization}) for the engine, in a process of its own…")
    measured = [await in_own_process(measure_engine, source, args)]
    progress(f"loading {source.name} ({args.quantization}) for the baseline, in a process of its own…")
    measured.insert(0, await in_own_process(measure_baseline, source, args))
    with tempfile.TemporaryDirectory() as folder:
        servers: list[tuple[str, Callable[[], Coroutine[Any, Any, Measured]]]] = []
        if args.server:
            servers.append((TRANSFORMERS_SERVE_NAME, lambda: measure_transformers_serve(source, args, Path(folder))))
        if llama_server is not None:
            servers.append((LLAMA_CPP_NAME, lambda: measure_llama_cpp(source, args, Path(folder), llama_server)))
        for name, measure_fn in servers:
            progress(f"starting {name}…")
            try:
                measured.append(await measure_fn())
            except ServerDidNotStart as failure:
                notes.append(f"{name} not measured: {failure}")
    for note in notes:
        progress(note)
    return "\n\n".join([render_report(args, source, measured), *notes])


def render_report(args: argparse.Namespace, source: ModelSource, measured: Sequence[Measured]) -> str:
    baseline, engine = measured[0], measured[1]
    header = (
        f"torch {torch.__version__} · transformers {version('transformers')} · "
        f"bitsandbytes {version('bitsandbytes')} · device {describe_device(engine.device)} · "
        f"torch threads: engine worker {engine.worker_threads}, {baseline.worker_threads} per generate thread · "
        f"quantization {args.quantization} · model {source.name}"
    )
    llama_cpp = next((m for m in measured if m.name == LLAMA_CPP_NAME), None)
    if llama_cpp is not None:
        flags = run_flags(slots=max(args.concurrency), threads=llama_cpp.worker_threads)
        header += (f" · llama.cpp from llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} on {embedded_gguf().name} "
                   f"({' '.join(flags)})")
    workload = (
        f"{len(PROMPTS)} catalogue prompts (ad, blog, summary) with each task's sampling; token limits cycle "
        f"{'/'.join(map(str, args.max_new_tokens))}; each level runs max(c, {args.min_requests}) requests, "
        "c at a time; tokens are those actually generated."
    )
    rows = [row for m in measured for row in m.rows]
    sections = [header, workload, render_table(rows, baseline.rows), render_footprint(measured, max(args.concurrency))]
    if llama_cpp is not None:
        sections.append(render_versus(engine, llama_cpp))
    return "\n\n".join(sections)


def render_footprint(measured: Sequence[Measured], top_level: int) -> str:
    """Memory (peak, and after the last level) and the event loop's lag (sampled during the highest level) per engine."""
    return markdown_table(
        ["engine", "peak RSS MB", "RSS at end MB", f"loop lag p50 ms (c={top_level})", f"loop lag p99 ms (c={top_level})",
         "lag samples"],
        [[m.name, f"{m.peak_rss_mb:.0f}", f"{m.end_rss_mb:.0f}", f"{percentile(m.lag_ms, 50):.1f}", f"{percentile(m.lag_ms, 99):.1f}",
          str(len(m.lag_ms))] for m in measured],
    )


def render_versus(engine: Measured, peer: Measured) -> str:
    """copydesk's engine against a peer, level by level: the comparison issue 17's goal is stated in."""
    peer_rows = {row.concurrency: row for row in peer.rows}
    return markdown_table(
        ["concurrent drafts", f"{engine.name} tokens/s", f"{peer.name} tokens/s", "engine ÷ peer",
         "median first token s: engine / peer"],
        [[str(row.concurrency), f"{row.tokens_per_s:.1f}", f"{peer_rows[row.concurrency].tokens_per_s:.1f}",
          f"{row.tokens_per_s / peer_rows[row.concurrency].tokens_per_s:.2f}×",
          f"{median_ttft(row):.2f} / {median_ttft(peer_rows[row.concurrency]):.2f}"] for row in engine.rows],
    )


def median_ttft(row: LevelResult) -> float:
    return percentile([r.ttft_s for r in row.results], 50)


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
