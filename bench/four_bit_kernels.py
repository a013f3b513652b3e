"""Benchmark: bitsandbytes' CPU NF4 product against torchao's int4 CPU kernel, for this model.

Both as copydesk loads them (`generation.loading`):

- NF4: `Linear4bit` layers calling bitsandbytes (on CPUs with AVX-512 BF16 a fused kernel for
  decoding steps; elsewhere it dequantizes the weight and multiplies in bf16 at every call); the
  output head stays a dense fp32 product, tied to the input embeddings;
- int4: every linear layer, the head too, in torchao's int4 CPU layout (asymmetric, a scale and
  offset per 32 input columns, packed once for `_weight_int4pack_mm_for_cpu`), called by
  `generation.int4.Int4Linear`; the rest of the model in bf16.

Prints three tables: each linear shape of the model at 1 and 16 rows (median time per product,
input and output casts included); the whole model decoding greedily (tokens/s); quality against
the fp32 model (teacher-forced on fp32's greedy continuation: mean KL, top-1 agreement, largest
logit difference; and how many greedy tokens match fp32's before the first difference).

Mind the model's origin when reading the quality table: the embedded model's fp32 weights are
dequantized from its Q4_1 GGUF file (asymmetric, groups of 32), so int4 with groups of 32 lands on
almost the same grid for the decoder's layers, while NF4 rounds to another grid. A model trained
in bf16 would not favour int4 this way.

    .venv/bin/python bench/four_bit_kernels.py [--new-tokens 48] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/four_bit_kernels.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.engine import build_requests, describe_device, progress  # noqa: E402
from generation import resolve_model  # noqa: E402
from generation.int4 import GROUP_SIZE, Int4Linear  # noqa: E402
from generation.loading import LoadedModel, load_model  # noqa: E402

ROWS = (1, 16)
PROMPTS = 3


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # first call: allocations, lazy setup
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def render_shapes(nf4: nn.Module, int4: nn.Module, fp32: nn.Module, repeats: int) -> str:
    """One row per distinct linear shape (the first layer with it), at each row count; each path
    gets its own model's activations (fp32 for NF4, bf16 for int4)."""
    seen: dict[tuple[int, int], str] = {}
    for name, module in int4.named_modules():
        if isinstance(module, Int4Linear):
            seen.setdefault((module.out_features, module.in_features), name)
    lines = ["| layer (out × in) | rows | NF4 path µs | int4 µs | NF4 path ÷ int4 "
             "| error vs fp32 (max abs ÷ max abs output): NF4 path / int4 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for (out_features, in_features), name in seen.items():
        layers = [model.get_submodule(name) for model in (nf4, int4)]
        exact_layer = fp32.get_submodule(name)
        for rows in ROWS:
            x = torch.randn(1, rows, in_features)
            inputs = [x, x.to(torch.bfloat16)]
            with torch.inference_mode():
                exact = exact_layer(x)
                nf4_s, int4_s = (median_s(lambda: layer(inp), repeats) for layer, inp in zip(layers, inputs))
                errors = [((layer(inp).float() - exact).abs().max() / exact.abs().max()).item()
                          for layer, inp in zip(layers, inputs)]
            head = " (NF4 path: dense fp32)" if name == "lm_head" else ""
            lines.append(
                f"| {name.split('.')[-1]}{head} ({out_features} × {in_features}) | {rows} | {nf4_s * 1e6:.0f} "
                f"| {int4_s * 1e6:.0f} | {nf4_s / int4_s:.2f}× | {errors[0]:.1%} / {errors[1]:.1%} |"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class Greedy:
    tokens: torch.Tensor  # the new tokens only
    seconds: float


def greedy(model: Any, prompt: torch.Tensor, new_tokens: int, pad_token_id: int,
           cache_implementation: str | None = None) -> Greedy:
    """`model` is any causal LM with `generate` (typed loosely: GenerationMixin is not in its static type)."""
    with torch.inference_mode():
        start = time.perf_counter()
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_token_id,
                                cache_implementation=cache_implementation)
        return Greedy(output[0, prompt.shape[1]:], time.perf_counter() - start)


def matching_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    differ = (a != b).nonzero()
    return int(differ[0]) if len(differ) else len(a)


def logits_against(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float, float]:
    """Mean KL(reference ‖ other) per position, top-1 agreement, largest absolute logit difference."""
    kl = torch.nn.functional.kl_div(other.log_softmax(-1), reference.log_softmax(-1), log_target=True,
                                    reduction="none").sum(-1).mean()
    agree = (reference.argmax(-1) == other.argmax(-1)).float().mean()
    return kl.item(), agree.item(), (reference - other).abs().max().item()


def render_whole_model(models: dict[str, PreTrainedModel], loaded: LoadedModel, new_tokens: int) -> tuple[str, str]:
    """Decode speed and quality against fp32 over a few catalogue prompts; returns both tables."""
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [
        torch.tensor([tokenizer.apply_chat_template(r.prompt.messages(), add_generation_prompt=True, tokenize=True,
                                                    return_dict=False)])
        for r in build_requests([new_tokens], PROMPTS, "kernels")
    ]
    runs = {name: [greedy(model, p, new_tokens, pad) for p in prompts] for name, model in models.items()}
    speed = ["| model | greedy tokens/s at 1 draft | ratio to fp32 |", "| --- | ---: | ---: |"]
    fp32_speed = len(prompts) * new_tokens / sum(g.seconds for g in runs["fp32"])
    for name, greedies in runs.items():
        tokens_per_s = len(prompts) * new_tokens / sum(g.seconds for g in greedies)
        speed.append(f"| {name} | {tokens_per_s:.1f} | {tokens_per_s / fp32_speed:.2f}× |")
    quality = ["| model | mean KL vs fp32 (nats/token) | top-1 agreement | max abs logit diff "
               "| greedy tokens equal to fp32's before the first difference | start of its greedy text (prompt 1) |",
               "| --- | ---: | ---: | ---: | --- | --- |"]
    with torch.inference_mode():
        sequences = [torch.cat([p[0], g.tokens]).unsqueeze(0) for p, g in zip(prompts, runs["fp32"])]
        reference = [models["fp32"](s).logits[0, p.shape[1] - 1:-1].float() for s, p in zip(sequences, prompts)]
        for name, model in models.items():
            measures = [logits_against(ref, model(s).logits[0, p.shape[1] - 1:-1].float())
                        for ref, s, p in zip(reference, sequences, prompts)]
            prefixes = [matching_prefix(g.tokens, f.tokens) for g, f in zip(runs[name], runs["fp32"])]
            text = tokenizer.decode(runs[name][0].tokens[:24], skip_special_tokens=True).replace("\n", " ").replace("|", "/")
            quality.append(
                f"| {name} | {statistics.mean(m[0] for m in measures):.4f} "
                f"| {statistics.mean(m[1] for m in measures):.1%} | {max(m[2] for m in measures):.2f} "
                f"| {', '.join(f'{n}/{new_tokens}' for n in prefixes)} | {text}… |"
            )
    return "\n".join(speed), "\n".join(quality)


def main(argv: Sequence[str] | None = None) -> None:
    from transformers.utils import logging as transformers_logging

    parser = argparse.ArgumentParser(description="bitsandbytes NF4 against torchao's int4 CPU kernel, speed and quality.")
    parser.add_argument("--new-tokens", type=int, default=48, help="greedy tokens per prompt (default 48)")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per layer shape (default 50)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")))
    args = parser.parse_args(argv)
    transformers_logging.disable_progress_bar()
    source = resolve_model("", args.cache_dir.expanduser())
    progress("loading the embedded model in fp32 and through copydesk's NF4 and int4 paths…")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # load single-threaded, as the engine does (see DESIGN's pitfalls)
    fp32 = load_model(source, "none", "cpu")
    nf4 = load_model(source, "nf4", "cpu")
    int4 = load_model(source, "int4", "cpu")
    torch.set_num_threads(threads)
    progress("timing each linear shape…")
    shapes = render_shapes(nf4.model, int4.model, fp32.model, args.repeats)
    progress("greedy decoding and logits against fp32…")
    speed, quality = render_whole_model({"fp32": fp32.model, "NF4 (bitsandbytes)": nf4.model,
                                         f"int4 (torchao's layout, groups of {GROUP_SIZE})": int4.model}, fp32, args.new_tokens)
    header = (f"torch {torch.__version__} · device {describe_device('cpu')} · torch threads {threads} · "
              f"{source.name}; {PROMPTS} catalogue prompts, {args.new_tokens} greedy tokens each")
    print("\n\n".join([header, shapes, speed, quality]))


if __name__ == "__main__":
    main()
