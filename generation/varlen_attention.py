"""Attention for the batching manager on the CPU: one SDPA call per sequence of the packed batch.

With plain `sdpa` the manager packs every request of a step into one row and masks it with a
dense [all queries x all keys] block-diagonal mask, so a 512-token prompt step computes (and
throws away) attention between unrelated requests: ~45% of the step on 2 cores. Flash-style
implementations get the sequence boundaries instead (`cu_seq_lens_q/k`) and no mask; this one
takes that interface and runs SDPA on each request's own slice. transformers recognises such
implementations by "flash" in their name, hence `NAME`.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv

NAME = "flash_varlen_sdpa"


def varlen_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # [1, heads, total queries, head dim]
    key: torch.Tensor,  # [1, kv heads, total keys, head dim]: each request's cached and new keys, packed
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: torch.Tensor,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each request; a request's queries are the last of its keys.

    Requests decoding one token are done together in one call, masked to their own keys;
    each request with several new tokens (a prompt) gets a call of its own.
    """
    cu_q = kwargs["cu_seq_lens_q"].tolist()
    cu_k = kwargs["cu_seq_lens_k"].tolist()
    groups = query.shape[1] // key.shape[1]
    output = torch.empty(query.shape[2], query.shape[1], query.shape[3], dtype=query.dtype, device=query.device)
    spans = [span for span in zip(cu_q, cu_q[1:], cu_k, cu_k[1:]) if span[1] > span[0]]
    decoding = [span for span in spans if span[1] - span[0] == 1]
    if decoding:
        rows = torch.tensor([q_start for q_start, *_ in decoding], device=query.device)
        positions = torch.arange(key.shape[2], device=query.device)
        starts = torch.tensor([k_start for *_, k_start, _ in decoding], device=query.device)
        ends = torch.tensor([k_end for *_, k_end in decoding], device=query.device)
        own_keys = (positions >= starts[:, None]) & (positions < ends[:, None])
        attended = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, rows], repeat_kv(key, groups), repeat_kv(value, groups), attn_mask=own_keys, scale=scaling,
        )
        output[rows] = attended[0].transpose(0, 1)
    for q_start, q_end, k_start, k_end in spans:
        q_len, k_len = q_end - q_start, k_end - k_start
        if q_len == 1:
            continue
        mask = None
        if q_len < k_len:  # part of the prompt is cached: align the causal mask to the last keys
            mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
        attended = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, q_start:q_end],
            repeat_kv(key[:, :, k_start:k_end], groups),
            repeat_kv(value[:, :, k_start:k_end], groups),
            attn_mask=mask,
            is_causal=mask is None,
            scale=scaling,
        )
        output[q_start:q_end] = attended[0].transpose(0, 1)
    return output.unsqueeze(0), None


AttentionInterface.register(NAME, varlen_sdpa_forward)
