"""Profile: where one decoding step of copydesk's engine spends its time, at 1 and at 16 drafts.

The engine (copydesk's defaults, the embedded model in int4, or `--quantization nf4`) is given the drafts at once; once
every draft is past its prompt and none waits, a few steps are timed, then a few more run under
torch.profiler. Each operator's own time goes to the innermost part of the step it ran in:

- 4-bit products: the decoder's 4-bit layers, bitsandbytes' `Linear4bit` (NF4) or copydesk's
  `Int4Linear` (int4) (their kernels, casts and Python);
- attention: the rest of each layer's attention block (RoPE, the paged cache, the attention product);
- lm_head: the product over the vocabulary (full precision in NF4, int4 in int4);
- rest of the model: embeddings, norms, the MLP's activation, residual sums, module Python;
- sampling: logits to fp32, the per-request warpers, the draw;
- engine: batch preparation, the update and delivery of outputs, and the glue of the step;

with, for each part, how much of it was copies (`copy_`, `to`, `clone`, `contiguous`, ...).
Prints one Markdown table per batch size. Takes about a minute on an idle machine; it is not the
engine bench. The profiler starts in the engine's worker thread, which makes torch's profiler
backend print one harmless "External init callback must run in same thread" line.

    .venv/bin/python bench/profile_step.py [--drafts 1,16] [--steps 5] [--quantization int4] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from bitsandbytes.nn import Linear4bit
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile, record_function
from transformers import PreTrainedModel
from transformers.generation.continuous_batching.requests import RequestStatus

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/profile_step.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.engine import build_requests, describe_device, in_fresh_thread, parse_levels, progress  # noqa: E402
from generation import EngineConfig, LocalEngine, resolve_model  # noqa: E402
from generation.errors import GenerationCancelled  # noqa: E402
from generation.int4 import Int4Linear  # noqa: E402
from generation.loading import pick_quantization  # noqa: E402

TIMED_STEPS = 3  # unprofiled, to show what the profiler's own overhead adds
MAX_NEW_TOKENS = 400  # long enough that the drafts are still decoding when the profiled steps are done
PART = "part: "  # prefix of the profiler labels this script adds, so they cannot clash with torch's
STEP = PART + "engine: step glue"
PARTS = (
    "4-bit products", "attention", "lm_head", "rest of the model", "sampling",
    "engine: batch preparation", "engine: update and delivery", "engine: step glue",
)
COPY_OPS = frozenset({
    "aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::index_copy_",
    "aten::index_put_", "aten::_index_put_impl_", "aten::cat", "aten::stack",
})


def label(owner: Any, name: str, part: str) -> None:
    """Make `owner.name` (on this instance only) run under the profiler label of `part`."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def labelled(*args: Any, **kwargs: Any) -> Any:
        with record_function(PART + part):
            return original(*args, **kwargs)

    setattr(owner, name, labelled)


def label_model(model: PreTrainedModel) -> None:
    label(model, "forward", "rest of the model")
    head = model.get_output_embeddings()
    label(head, "forward", "lm_head")
    for module in model.modules():
        if module is head:
            continue
        if isinstance(module, (Linear4bit, Int4Linear)):
            label(module, "forward", "4-bit products")
        elif module.__class__.__name__.endswith("Attention"):
            label(module, "forward", "attention")


@dataclass
class StepProfile:
    """Filled by the worker thread for one batch size; the main thread waits on `done`."""

    drafts: int
    steps: int
    timed_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    events: list[FunctionEvent] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    profiler: profile | None = None


class StepProfiler:
    """Wraps the batching manager's loop body: pure decoding steps are timed, then profiled."""

    def __init__(self, manager: Any) -> None:
        self.current: StepProfile | None = None
        processor = manager.batch_processor
        self._scheduler = processor.scheduler
        label(processor, "prepare_next_batch", "engine: batch preparation")
        label(processor, "update_batch", "engine: update and delivery")
        # Everything after the model's forward: logits to fp32, the warpers, the draw.
        label(processor.model_runner, "_forward_process_and_sample", "sampling")
        label_model(manager.model)
        self._body: Callable[..., bool] = manager._generation_loop_body
        manager._generation_loop_body = self._loop_body

    def _decoding_only(self) -> int:
        """The batch size if every request is decoding and none waits, else 0."""
        active = list(self._scheduler.active_requests.values())
        if self._scheduler.waiting_requests or not active:
            return 0
        return len(active) if all(state.status == RequestStatus.DECODING for state in active) else 0

    def _loop_body(self, *args: Any, **kwargs: Any) -> bool:
        current = self.current
        batch = self._decoding_only() if current is not None and not current.done.is_set() else 0
        if current is None or not batch:
            return self._body(*args, **kwargs)
        if len(current.timed_ms) < TIMED_STEPS:
            start = time.perf_counter()
            result = self._body(*args, **kwargs)
            current.timed_ms.append((time.perf_counter() - start) * 1000)
            return result
        if current.profiler is None:
            current.profiler = profile(activities=[ProfilerActivity.CPU])
            current.profiler.__enter__()
        with record_function(STEP):
            result = self._body(*args, **kwargs)
        current.batch_sizes.append(batch)
        if len(current.batch_sizes) == current.steps:
            current.profiler.__exit__(None, None, None)
            current.events = list(current.profiler.events())
            current.done.set()
        return result


@dataclass(frozen=True)
class Share:
    self_us: float = 0.0
    copies_us: float = 0.0
    ops_us: dict[str, float] = field(default_factory=dict)


def attribute(events: Sequence[FunctionEvent]) -> dict[str, Share]:
    """Each event's own time to the innermost part label above it, counting only what ran inside a step."""
    totals: dict[str, float] = defaultdict(float)
    copies: dict[str, float] = defaultdict(float)
    ops: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in events:
        part, in_step = None, False
        node: FunctionEvent | None = event
        while node is not None:
            if node.name.startswith(PART):
                part = part or node.name.removeprefix(PART)
                in_step = in_step or node.name == STEP
            node = node.cpu_parent
        if part is None or not in_step:
            continue
        own = float(event.self_cpu_time_total)
        totals[part] += own
        op = "Python (between ops)" if event.name.startswith(PART) else event.name
        ops[part][op] += own
        if event.name in COPY_OPS:
            copies[part] += own
    return {part: Share(totals[part], copies[part], dict(ops[part])) for part in PARTS}


def render(result: StepProfile, top_ops: int = 3) -> str:
    shares = attribute(result.events)
    steps = len(result.batch_sizes)
    step_ms = sum(share.self_us for share in shares.values()) / 1000 / steps
    sizes = sorted(set(result.batch_sizes))
    batch = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    lines = [
        f"{result.drafts} draft(s), decoding (batch of {batch}): one step takes {statistics.median(result.timed_ms):.1f} ms "
        f"unprofiled (median of {len(result.timed_ms)}), {step_ms:.1f} ms under the profiler (mean of {steps}).",
        "",
        "| part of the step | ms per step | share | of which copies, ms | main operators (ms per step) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for part, share in shares.items():
        main = sorted(share.ops_us.items(), key=lambda item: -item[1])[:top_ops]
        lines.append(
            f"| {part} | {share.self_us / 1000 / steps:.2f} | {share.self_us / 1000 / steps / step_ms:.0%} "
            f"| {share.copies_us / 1000 / steps:.2f} | "
            + ", ".join(f"{op} {us / 1000 / steps:.2f}" for op, us in main) + " |"
        )
    return "\n".join(lines)


async def profile_drafts(engine: LocalEngine, profiler: StepProfiler, drafts: int, steps: int) -> StepProfile:
    """Start `drafts` drafts at once, wait for the profiled steps, then cancel them."""
    result = profiler.current = StepProfile(drafts=drafts, steps=steps)
    requests = [replace(r, sampling=replace(r.sampling, max_new_tokens=MAX_NEW_TOKENS))
                for r in build_requests([MAX_NEW_TOKENS], drafts, f"profile{drafts}")]

    async def drain(stream: Any) -> None:
        try:
            async for _ in stream:
                pass
        except GenerationCancelled:
            pass

    tasks = [asyncio.create_task(drain(engine.stream(r.prompt, r.sampling, r.request_id)))
             for r in requests]
    finished = await asyncio.to_thread(result.done.wait, 600)
    for request in requests:
        engine.cancel(request.request_id)
    await asyncio.gather(*tasks)
    if not finished:
        raise SystemExit(f"error: the {drafts} draft(s) never all reached decoding together; nothing to profile")
    return result


async def run(args: argparse.Namespace) -> str:
    source = await asyncio.to_thread(resolve_model, args.model, args.cache_dir.expanduser())
    quantization = pick_quantization(args.quantization, "cpu")
    progress(f"loading {source.name} ({quantization}) into copydesk's engine…")
    engine = await LocalEngine.start(source, quantization=quantization, device="cpu",
                                     config=EngineConfig(max_concurrent=max(args.drafts)))
    try:
        profiler = StepProfiler(engine._manager)
        worker_threads = await in_fresh_thread(torch.get_num_threads)  # what the worker got, see bench/engine.py
        tables = []
        for drafts in args.drafts:
            progress(f"profiling a decoding step at {drafts} draft(s)…")
            tables.append(render(await profile_drafts(engine, profiler, drafts, args.steps)))
    finally:
        await engine.close()
    header = (f"torch {torch.__version__} · device {describe_device('cpu')} · {source.name} in {quantization} · "
              f"copydesk's EngineConfig defaults (max_concurrent {max(args.drafts)}) · "
              f"torch threads in the worker: {worker_threads}")
    return "\n\n".join([header, *tables])


def main(argv: Sequence[str] | None = None) -> None:
    from transformers.utils import logging as transformers_logging

    parser = argparse.ArgumentParser(description="Split one decoding step of copydesk's engine into its parts.")
    parser.add_argument("--drafts", type=parse_levels, default=parse_levels("1,16"),
                        help="batch sizes to profile, comma-separated (default 1,16)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps per batch size (default 5)")
    parser.add_argument("--quantization", choices=("auto", "int4", "nf4"), default="auto",
                        help="the 4-bit weights to profile (default auto: int4, copydesk's CPU default)")
    parser.add_argument("--model", default="", help="model id or folder (default: the embedded model)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")))
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    transformers_logging.disable_progress_bar()
    print(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
