"""Benchmark: what `torch.compile` would give one draft, measured on plain `generate`, not the engine.

The embedded model through copydesk's own loading path (int4 on the CPU by default) decodes one
catalogue prompt greedily with a static cache, eager and then with the model's forward compiled
(inductor, static shapes). This is the lead for a one-draft path in the engine: at one draft most
of a step is Python between operators (`bench/profile_step.py`), which compiling removes. The
engine itself is not compiled: its batching manager changes the batch's shape at every step.

    .venv/bin/python bench/compiled_decode.py [--new-tokens 64] [--quantization auto] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/compiled_decode.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.engine import describe_device, progress  # noqa: E402
from bench.four_bit_kernels import greedy  # noqa: E402
from generation import get_task, resolve_model  # noqa: E402
from generation.loading import load_model, pick_quantization  # noqa: E402

RUNS = 2


def tokens_per_s(model: Any, prompt: torch.Tensor, new_tokens: int, pad_token_id: int) -> float:
    return new_tokens / greedy(model, prompt, new_tokens, pad_token_id, cache_implementation="static").seconds


def main(argv: Sequence[str] | None = None) -> None:
    from transformers.utils import logging as transformers_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64, help="greedy tokens per run (default 64)")
    parser.add_argument("--quantization", choices=("auto", "int4", "nf4", "none"), default="auto")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("COPYDESK_CACHE_DIR", "~/.cache/copydesk")))
    args = parser.parse_args(argv)
    transformers_logging.disable_progress_bar()
    quantization = pick_quantization(args.quantization, "cpu")
    source = resolve_model("", args.cache_dir.expanduser())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # load single-threaded, as the engine does
    loaded = load_model(source, quantization, "cpu")
    torch.set_num_threads(threads)
    tokenizer, model = loaded.tokenizer, loaded.model
    request = get_task("ad").render({"product": "a rain jacket", "audience": "cyclists"})
    prompt = torch.tensor([tokenizer.apply_chat_template(request.messages(), add_generation_prompt=True, tokenize=True,
                                                         return_dict=False)])
    pad = tokenizer.eos_token_id
    progress("eager…")
    tokens_per_s(model, prompt, 8, pad)  # first call: allocations, the static cache
    eager = max(tokens_per_s(model, prompt, args.new_tokens, pad) for _ in range(RUNS))
    progress("compiling the forward (minutes on 2 cores)…")
    model.forward = torch.compile(model.forward, dynamic=False)
    start = time.perf_counter()
    tokens_per_s(model, prompt, 8, pad)
    compile_s = time.perf_counter() - start
    compiled = max(tokens_per_s(model, prompt, args.new_tokens, pad) for _ in range(RUNS))
    print(f"torch {torch.__version__} · device {describe_device('cpu')} · torch threads {threads} · "
          f"{source.name} in {quantization}; one prompt, {args.new_tokens} greedy tokens, static cache, best of {RUNS}\n")
    print("| forward | tokens/s at 1 draft | ratio to eager | first call s |\n| --- | ---: | ---: | ---: |")
    print(f"| eager | {eager:.1f} | 1.00× | |")
    print(f"| torch.compile (inductor) | {compiled:.1f} | {compiled / eager:.2f}× | {compile_s:.0f} |")


if __name__ == "__main__":
    main()
