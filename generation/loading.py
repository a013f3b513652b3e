"""Loading a checkpoint on the 4-bit path, on CUDA when present, else the CPU.

Two 4-bit formats: bitsandbytes' NF4, what CUDA uses (and training, whose adapters PEFT builds on
bitsandbytes' layers), and int4 (`generation.int4`: torchao's layout, asymmetric, a scale and
offset per 32 input columns), whose CPU kernel decodes faster than bitsandbytes' CPU path
(`bench/four_bit_kernels.py`). The default, "auto", takes int4 on the CPU and NF4 on CUDA.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.errors import QuantizationUnavailable
from generation.model_source import ModelSource

QUANTIZATIONS: tuple[str, ...] = ("auto", "nf4", "int4", "int8", "none")
# The engine's CPU-only measures (EngineConfig turns each off), as `cpu_measures` names them.
BF16_PREFILL = "bf16 products for long steps"  # generation/cpu_prefill.py
PER_REQUEST_ATTENTION = "attention per request"  # generation/varlen_attention.py


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    quantization: str


def pick_device(requested: str) -> str:
    """'auto' means CUDA when a GPU is visible, else the CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def pick_quantization(requested: str, device: str) -> str:
    """'auto' means int4 on the CPU and NF4 on CUDA; int4 is refused off the CPU."""
    import torch

    on_cpu = torch.device(pick_device(device)).type == "cpu"
    if requested == "auto":
        return "int4" if on_cpu else "nf4"
    if requested == "int4" and not on_cpu:
        raise QuantizationUnavailable(
            "model.quantization int4 (torchao's CPU kernel) runs on the CPU only; use nf4 or auto on CUDA")
    return requested


def cpu_measures(device: str, quantization: str) -> frozenset[str]:
    """The CPU-only measures that a model on `device` takes: none on CUDA or any other accelerator.

    They were tuned and tested on the CPU, against bitsandbytes' CPU kernel and a dense mask; on CUDA
    bitsandbytes' own kernels and SDPA's fused attention run, which they were never measured against.
    """
    import torch

    if torch.device(pick_device(device)).type != "cpu":  # 'cuda:1' is CUDA too
        return frozenset()
    return frozenset({PER_REQUEST_ATTENTION, *([BF16_PREFILL] if quantization == "nf4" else [])})


def load_model(
    source: ModelSource, quantization: str, device: str, *, bf16_prefill: bool = True, compute_dtype: str = "bfloat16",
) -> LoadedModel:
    """Load model and tokenizer; call from the thread that will not run the event loop.

    `bf16_prefill`: on the CPU in NF4, long steps multiply in bf16 (see `generation.cpu_prefill`).
    `compute_dtype`: what the 4-bit layers multiply in (training picks float32 where bf16 is emulated).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)} (got {quantization!r})")
    quantization = pick_quantization(quantization, device)
    device = pick_device(device)
    kwargs: dict[str, Any] = {
        "attn_implementation": "sdpa",  # never a paged one: the batching manager switches itself
        "device_map": device,
        "local_files_only": source.local_files_only,
    }
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
        )
    elif quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif quantization == "int4":
        kwargs["dtype"] = torch.bfloat16  # the kernel's activations; the rest of the model follows
    else:
        kwargs["dtype"] = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(source.location, local_files_only=source.local_files_only)
    model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs).eval()
    if quantization == "int4":
        from generation.int4 import quantize_int4

        quantize_int4(model)
    if bf16_prefill and BF16_PREFILL in cpu_measures(device, quantization):
        from generation.cpu_prefill import speed_up_prefill

        speed_up_prefill(model)
    _return_freed_memory()
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, quantization=quantization)


def native_bf16(device: str) -> bool:
    """bf16 products run in hardware: on CUDA that supports it, on CPUs with AVX512-BF16 or AMX.

    Elsewhere torch emulates them, and a training step of the embedded model took ~7x longer in
    bf16 than in float32 on a 2-core AVX2 EPYC.
    """
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _return_freed_memory() -> None:
    """Quantizing leaves ~0.3 GB of conversion buffers in the allocator; give them back to the OS."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
