"""Prompt processing at bf16 matrix speed for bitsandbytes 4-bit layers on the CPU.

On CPUs with AVX512-BF16, bitsandbytes repacks each 4-bit weight for a fused kernel that is
fast for the few rows of a decoding step but slow for the hundreds of rows of a prompt
(~300 tokens/s for the embedded model on 2 cores). For a step with many rows it is ~3x faster
to expand the weight to bf16 with bitsandbytes' own dequantize kernel and let torch's matmul
(oneDNN, AMX where present) do the product. That kernel reads bitsandbytes' original layout,
so each layer keeps its 4-bit weight in that layout too: half a byte more per weight.
`bench/prefill.py` measures both paths.
"""

from __future__ import annotations

from typing import cast

import torch
from bitsandbytes.functional import QuantState, dequantize_4bit, dequantize_blockwise
from bitsandbytes.nn import Linear4bit

MIN_ROWS = 32  # below this the fused kernel wins (measured crossover: 24-32 rows on 2 cores)


class PrefillLinear4bit(Linear4bit):
    """A Linear4bit that multiplies steps of at least `min_rows` rows as bf16."""

    original_weight: torch.Tensor
    original_state: QuantState
    min_rows: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // x.shape[-1] < self.min_rows or self.training or x.requires_grad:
            return super().forward(x)
        weight = dequantize_4bit(self.original_weight, self.original_state)
        bias = None if self.bias is None else self.bias.to(weight.dtype)
        return torch.nn.functional.linear(x.to(weight.dtype), weight, bias).to(x.dtype)


def speed_up_prefill(model: torch.nn.Module, min_rows: int = MIN_ROWS) -> None:
    """Give every 4-bit layer that bitsandbytes will repack a bf16 path for long steps.

    Call right after loading, before the first forward pass repacks the weights.
    """
    for module in model.modules():
        if not isinstance(module, Linear4bit) or type(module) is not Linear4bit \
                or not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        state: QuantState | None = getattr(module.weight, "quant_state", None)
        if state is None or getattr(state, "packing_format_for_cpu", False) or module.weight.device.type != "cpu":
            continue
        absmax = state.absmax
        if state.nested:
            absmax = dequantize_blockwise(state.absmax, state.state2) + state.offset
        module.__class__ = PrefillLinear4bit
        prefill = cast(PrefillLinear4bit, module)
        prefill.original_weight = module.weight.data  # repacking replaces weight.data, so this stays
        prefill.original_state = QuantState(
            absmax=absmax.float(), shape=state.shape, dtype=torch.bfloat16,
            blocksize=state.blocksize, quant_type=state.quant_type,
        )
        prefill.min_rows = min_rows


def second_layout_bytes(model: torch.nn.Module) -> int:
    """What the speed-up costs in memory: the original-layout weights and their fp32 scales."""
    return sum(
        module.original_weight.nbytes + module.original_state.absmax.nbytes
        for module in model.modules() if isinstance(module, PrefillLinear4bit)
    )
