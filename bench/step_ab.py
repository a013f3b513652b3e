"""Benchmark: the engine's decoding-step measures, switched step by step inside one engine.

On a shared machine, runs one after another drift apart by more than these measures change
(the same step measured 28 and 38 ms a minute apart). So one engine, with copydesk's defaults
otherwise, takes turns step by step: (1) neither the worker's inference mode nor one-query
attention, (2) inference mode, (3) both: the defaults where one-query attention timed faster
at the engine's start, as the table's head says. Drift then falls on every
configuration alike. Prints the median step time of each, with its ratio to the first.

The manager's loop is started outside inference mode and each step enters it or not; the
attention function is switched by name, which transformers looks up at every forward pass.

    .venv/bin/python bench/step_ab.py [--drafts 1] [--requests 4] [--max-new-tokens 200] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/step_ab.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.engine import EngineBackend, build_requests, progress  # noqa: E402
from generation import EngineConfig, LocalEngine, resolve_model, varlen_attention  # noqa: E402
from generation.varlen_attention import OneQueryTiming  # noqa: E402

# (label, inference mode, attention implementation)
TURNS = (
    ("neither", False, varlen_attention.NAME),
    ("+ the worker in inference mode", True, varlen_attention.NAME),
    ("+ one-query attention for a draft decoding alone", True, varlen_attention.NAME_ONE_QUERY),
)


class TakingTurns:
    """Wraps the manager's loop body: each step runs in the next configuration and is timed."""

    def __init__(self, engine: LocalEngine) -> None:
        manager = engine._manager
        self._body = manager._generation_loop_body
        self._config = manager.model.config
        self._turns = itertools.cycle(TURNS)
        self.step_ms: dict[str, list[float]] = {label: [] for label, _, _ in TURNS}
        self.timing = False
        manager._generation_loop_body = self._step

    def _step(self, *args: Any, **kwargs: Any) -> bool:
        if not self.timing:
            return self._body(*args, **kwargs)
        label, inference, attention = next(self._turns)
        self._config._attn_implementation = attention
        start = time.perf_counter()
        with torch.inference_mode(inference):
            result = self._body(*args, **kwargs)
        self.step_ms[label].append((time.perf_counter() - start) * 1000)
        return result


async def run(args: argparse.Namespace) -> str:
    source = await asyncio.to_thread(resolve_model, "", args.cache_dir.expanduser())
    engine = await LocalEngine.start(
        source, quantization="int4", device="cpu", config=EngineConfig(max_concurrent=args.drafts, inference_mode=False)
    )
    turns = TakingTurns(engine)
    backend = EngineBackend(engine)
    try:
        await backend.run(build_requests([8], 1, "warmup")[0])
        queue = build_requests([args.max_new_tokens], args.requests * args.drafts, "ab")
        turns.timing = True

        async def client() -> None:
            while queue:
                await backend.run(queue.pop(0))

        await asyncio.gather(*(client() for _ in range(args.drafts)))
    finally:
        await backend.close()
    for label, times in turns.step_ms.items():
        progress(f"{label}: {len(times)} steps, median {statistics.median(times):.1f} ms")
    return render(turns.step_ms, engine.one_query_timing, args)


def render(step_ms: dict[str, list[float]], timing: OneQueryTiming | None, args: argparse.Namespace) -> str:
    first = statistics.median(next(iter(step_ms.values())))
    lines = [
        f"{args.drafts} draft(s) at a time, {args.requests * args.drafts} requests of up to {args.max_new_tokens} tokens, "
        f"the embedded model in int4 on {os.cpu_count()} CPU cores; configurations take turns step by step.",
    ]
    if timing is not None:
        lines.append(
            f"At start the engine timed one layer of a draft decoding alone over {timing.keys} keys: SDPA "
            f"{timing.sdpa_us:.0f} µs, one-query attention {timing.one_query_us:.0f} µs; by default it takes "
            f"{'one-query attention' if timing.one_query_faster else 'SDPA'}."
        )
    lines += [
        "",
        "| configuration | steps | median step ms | vs first row |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, times in step_ms.items():
        median = statistics.median(times)
        lines.append(f"| {label} | {len(times)} | {median:.1f} | {median / first:.2f}× |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=1, help="drafts decoding at a time (default 1)")
    parser.add_argument("--requests", type=int, default=4, help="requests per draft slot (default 4)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="token limit per request (default 200)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")),
        help="where the embedded model is converted (default $COPYDESK_CACHE_DIR or ~/.cache/copydesk)",
    )
    args = parser.parse_args(argv)
    if min(args.drafts, args.requests, args.max_new_tokens) < 1:
        parser.error("--drafts, --requests and --max-new-tokens must be at least 1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    print(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
