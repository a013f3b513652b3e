"""Benchmark: what each of the local engine's CPU measures does for a burst of drafts.

16 drafts arrive at once (unique prompts from bench/engine.py's catalogue set) and the median
time to their first token is taken, over a few bursts per configuration. The configurations add
one measure at a time, from the engine as transformers and bitsandbytes size it by default
(64-token pages, 512-token steps, one masked attention product over the packed batch,
bitsandbytes' fused 4-bit kernel for every step, top-k and top-p by sorting the vocabulary)
to copydesk's defaults; then the weights from bitsandbytes' NF4 to torchao's int4, the worker in
inference mode and, for a draft decoding alone, the faster of SDPA and one-query attention as
timed at start. Prints a Markdown table;
ratios are against the first row of this run.

    .venv/bin/python bench/first_token.py [--drafts 16] [--bursts 3] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bitsandbytes.nn import Linear4bit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/first_token.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.engine import DEFAULT_TOKEN_LIMITS, EngineBackend, build_requests, free_memory, progress  # noqa: E402
from generation import EngineConfig, LocalEngine, resolve_model  # noqa: E402
from generation.cpu_prefill import second_layout_bytes  # noqa: E402
from generation.loading import load_model  # noqa: E402
from generation.model_source import ModelSource  # noqa: E402

BEFORE = EngineConfig(page_size=64, max_batch_tokens=512, warm_system_prompts=False, bf16_prefill=False,
                      per_request_attention=False, top_k_sampling=False, inference_mode=False,
                      one_query_attention=False)
# Each row adds its change to the row before, in NF4 until int4 comes; the last is copydesk's CPU
# default: EngineConfig() on int4 weights.
STEPS: tuple[tuple[str, dict[str, object], str], ...] = (
    ("transformers' and bitsandbytes' own paths, 64-token pages, 512-token steps", {}, "nf4"),
    ("+ bf16 products for long steps", {"bf16_prefill": True}, "nf4"),
    ("+ attention per request", {"per_request_attention": True}, "nf4"),
    ("+ cached system prompts, 16-token pages", {"warm_system_prompts": True, "page_size": 16}, "nf4"),
    ("+ 256-token steps", {"max_batch_tokens": 256}, "nf4"),
    ("+ sampling among the top-k only", {"top_k_sampling": True}, "nf4"),
    ("+ int4 weights (torchao) instead of NF4", {}, "int4"),
    ("+ the worker in inference mode", {"inference_mode": True}, "int4"),
    ("+ a draft decoding alone: SDPA or one-query attention, the faster at start: copydesk's CPU defaults",
     {"one_query_attention": None}, "int4"),
)


@dataclass(frozen=True)
class Burst:
    median_ttft_s: float
    tokens_per_s: float


async def burst(backend: EngineBackend, drafts: int, tag: str) -> Burst:
    requests = build_requests(DEFAULT_TOKEN_LIMITS, drafts, tag)
    start = time.perf_counter()
    results = await asyncio.gather(*(backend.run(request) for request in requests))
    wall = time.perf_counter() - start
    return Burst(statistics.median(r.ttft_s for r in results), sum(r.tokens for r in results) / wall)


async def measure(source: ModelSource, config: EngineConfig, quantization: str, args: argparse.Namespace,
                  tag: str) -> list[Burst]:
    engine = await LocalEngine.start(source, quantization=quantization, device="cpu", config=config)
    backend = EngineBackend(engine)
    try:
        await backend.run(build_requests([8], 1, f"{tag}-warmup")[0])
        return [await burst(backend, args.drafts, f"{tag}-{i}") for i in range(args.bursts)]
    finally:
        await backend.close()


def memory_note(source: ModelSource) -> str:
    """The bf16 path's cost in memory, read off the loaded tensors."""
    loaded = load_model(source, "nf4", "cpu")
    four_bit = sum(m.weight.data.nbytes for m in loaded.model.modules() if isinstance(m, Linear4bit))
    note = (f"Memory: the 4-bit layers' weights take {four_bit / 1e6:.0f} MB; the bf16 path keeps them in a second "
            f"layout with fp32 scales, +{second_layout_bytes(loaded.model) / 1e6:.0f} MB.")
    return note


async def run(args: argparse.Namespace) -> str:
    source = await asyncio.to_thread(resolve_model, "", args.cache_dir.expanduser())
    note = await asyncio.to_thread(memory_note, source)
    free_memory()
    config = replace(BEFORE, max_concurrent=args.drafts)
    rows = []
    for row, (label, change, quantization) in enumerate(STEPS):
        config = replace(config, **change)
        results = await measure(source, config, quantization, args, f"row{row}")
        free_memory()
        ttft = statistics.median(r.median_ttft_s for r in results)
        speed = statistics.mean(r.tokens_per_s for r in results)
        progress(f"{label}: median first token {ttft:.2f} s, {speed:.1f} tokens/s")
        rows.append((label, ttft, speed))
    return render(rows, args) + "\n\n" + note


def render(rows: Sequence[tuple[str, float, float]], args: argparse.Namespace) -> str:
    first_ttft, first_speed = rows[0][1], rows[0][2]
    lines = [
        f"{args.drafts} drafts at once, {args.bursts} bursts per row, unique prompts, token limits "
        f"{'/'.join(map(str, DEFAULT_TOKEN_LIMITS))}; embedded model on {os.cpu_count()} CPU cores, in NF4 until the int4 row.",
        "",
        "| configuration | median first token s | vs first row | tokens/s | vs first row |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {label} | {ttft:.2f} | {ttft / first_ttft:.2f}× | {speed:.1f} | {speed / first_speed:.2f}× |"
        for label, ttft, speed in rows
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=16, help="drafts per burst (default 16)")
    parser.add_argument("--bursts", type=int, default=3, help="bursts per configuration (default 3)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")),
                        help="where the embedded model is converted (default $COPYDESK_CACHE_DIR or ~/.cache/copydesk)")
    args = parser.parse_args(argv)
    if args.drafts < 1 or args.bursts < 1:
        parser.error("--drafts and --bursts must be at least 1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    print(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
