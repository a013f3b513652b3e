"""int4 weights on the CPU: torchao quantizes and packs them, a plain module calls the kernel.

torchao's `Int4OpaqueTensor` picks each group's scale and offset and packs the weights for
`_weight_int4pack_mm_for_cpu`. Multiplying through the tensor itself costs a Python dispatch per
product (`__torch_function__`, then its checks): ~90 µs a layer, 19 of the 66 ms of a one-draft
decoding step of the embedded model (`bench/profile_step.py`). `Int4Linear` keeps torchao's packed
tensors and calls the kernel directly.
"""

from __future__ import annotations

import torch
from torch import nn

GROUP_SIZE = 32  # torchao's finest groups: the embedded model's GGUF weights use 32 too


class Int4Linear(nn.Module):
    """A linear layer whose weight is torchao's int4 CPU layout; activations in bf16."""

    def __init__(self, linear: nn.Linear, group_size: int = GROUP_SIZE) -> None:
        from torchao.prototype.quantization.int4 import Int4OpaqueTensor

        super().__init__()
        weight = Int4OpaqueTensor.from_hp(linear.weight.detach().to(torch.bfloat16), [1, group_size])
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size = group_size
        if weight.qdata.shape[0] != linear.out_features:  # torchao would slice padded columns off its output
            raise ValueError(f"int4 packing padded {linear.out_features} output features to {weight.qdata.shape[0]}")
        self.register_buffer("packed", weight.qdata)
        self.register_buffer("scale_and_zero", weight.scale_and_zero)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16),
                                                                  requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each tensor op skipped here is a dispatch saved ~200 times a step: the model runs in bf16 and
        # `reshape` of its activations gives the contiguous rows the kernel wants.
        rows = x.reshape(-1, self.in_features)
        if rows.dtype is not torch.bfloat16:
            rows = rows.to(torch.bfloat16)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows.contiguous(), self.packed, self.group_size,
                                                         self.scale_and_zero)
        out = out.view(*x.shape[:-1], self.out_features)
        if self.bias is not None:
            out = out + self.bias
        return out if out.dtype is x.dtype else out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


def quantize_int4(model: nn.Module, group_size: int = GROUP_SIZE) -> None:
    """Every linear layer to int4, the output head too.

    The head is the largest product of a decoding step (49,152 x 576 for the embedded model); in
    int4 it no longer shares its weight with the input embeddings, which stay as they were.
    `bench/four_bit_kernels.py` measures what that costs against fp32's logits.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int4Linear(child, group_size))
