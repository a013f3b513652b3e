"""A 7B-class model with random weights, built from its config on a machine that reaches no model hub.

Mistral-7B's dimensions (32 layers of 4096, grouped-query attention with 8 key-value heads, an MLP of
14336) on the Llama architecture, with the embedded model's tokenizer (49,152 tokens rather than
Mistral's 32,000: 7.4 B parameters). Saved in bf16 to local disk, for copydesk's own NF4 path to
load like any checkpoint. With random weights the end-of-text token comes about once in 49,152
draws, so every draft runs to its token limit: speed is what is measured, not text. `--size tiny`
builds the same thing small, so the whole of bench/gpu.sh can be rehearsed on a CPU.

    python bench/gpu_model.py TOKENIZER_DIR [--size 7b|tiny] [--device cuda]

Prints the model's folder (the first parent in PARENTS with room enough) on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedModel
from transformers.utils import logging as transformers_logging

SIZES: dict[str, dict[str, Any]] = {
    "7b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 8, "max_position_embeddings": 32768},
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 4096},
}
# RAM-backed first (14.8 GB written and read back at memory speed), then disk.
PARENTS = (Path("/dev/shm"), Path(tempfile.gettempdir()), Path("/var/tmp"))


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expand_tokenizer(carried: Path, folder: Path) -> None:
    """The carried tokenizer files, its gzipped vocabulary expanded."""
    for path in carried.iterdir():
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as packed, (folder / path.stem).open("wb") as plain:
                shutil.copyfileobj(packed, plain)
        else:
            shutil.copy2(path, folder / path.name)


def build(tokenizer: Any, size: str, device: str) -> PreTrainedModel:
    config = LlamaConfig(
        **SIZES[size], vocab_size=len(tokenizer), tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 1e6, "rope_type": "default"},
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds, on the CPU minutes
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def roomy_parent(needed_bytes: int) -> Path:
    for parent in PARENTS:
        if parent.is_dir() and os.access(parent, os.W_OK) and shutil.disk_usage(parent).free > needed_bytes * 1.1:
            return parent
    free = ", ".join(f"{parent} {shutil.disk_usage(parent).free / 1e9:.1f} GB" for parent in PARENTS if parent.is_dir())
    raise SystemExit(f"no room for the model's {needed_bytes / 1e9:.1f} GB (free: {free})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizer", type=Path, help="the carried tokenizer folder (.gpu-carry/tokenizer)")
    parser.add_argument("--size", choices=sorted(SIZES), default="7b")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where the random weights are drawn")
    args = parser.parse_args()
    transformers_logging.disable_progress_bar()  # one line per phase in the log
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as expanded:
        expand_tokenizer(args.tokenizer, Path(expanded))
        tokenizer = AutoTokenizer.from_pretrained(expanded, local_files_only=True)
    model = build(tokenizer, args.size, args.device)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    parameters = sum(p.numel() for p in model.parameters())
    progress(f"built {parameters / 1e9:.2f} B parameters ({weight_bytes / 1e9:.1f} GB in bf16) "
             f"in {time.perf_counter() - started:.0f} s")
    parent = roomy_parent(weight_bytes)
    target = parent / f"copydesk-random-{args.size}"
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=parent))  # same filesystem: the rename is whole
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"saved to {target} in {time.perf_counter() - started:.0f} s in all")
    print(target)


if __name__ == "__main__":
    main()
