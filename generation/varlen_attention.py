"""Attention for the batching manager on the CPU: one SDPA call per sequence of the packed batch.

With plain `sdpa` the manager packs every request of a step into one row and masks it with a
dense [all queries x all keys] block-diagonal mask, so a 512-token prompt step computes (and
throws away) attention between unrelated requests: ~45% of the step on 2 cores. Flash-style
implementations get the sequence boundaries instead (`cu_seq_lens_q/k`) and no mask; this one
takes that interface and runs SDPA on each request's own slice. transformers recognises such
implementations by "flash" in their name, hence `NAME`.

What depends only on the step's sequence boundaries (which rows decode, their masks) is worked out
once per step, not once per layer: at one draft that Python work was most of the attention block's
(`bench/profile_step.py`). Grouped key/value heads go to SDPA as they are (`enable_gqa`), not
copied out per query head.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from transformers import AttentionInterface

NAME = "flash_varlen_sdpa"

Span = tuple[int, int, int, int]  # queries start, end; keys start, end


@dataclass(frozen=True)
class StepPlan:
    """The step's boundaries, split into the requests decoding one token and those reading a prompt."""

    cu_q: torch.Tensor  # held, so that the identity test in `plan_for` cannot meet a recycled object
    cu_k: torch.Tensor
    versions: tuple[int, int]  # in-place writes to the boundaries (a reused buffer) make the plan stale
    key_length: int
    decoding_rows: torch.Tensor | None  # query rows of the requests decoding one token
    decoding_keys: torch.Tensor | None  # [those rows, all keys]: each row's own keys; None when one request has all
    prompts: tuple[Span, ...]
    prompt_masks: tuple[torch.Tensor | None, ...]  # causal, aligned to the last keys where a prefix is cached

    def fits(self, cu_q: torch.Tensor, cu_k: torch.Tensor, key_length: int) -> bool:
        return (self.cu_q is cu_q and self.cu_k is cu_k and self.key_length == key_length
                and self.versions == (cu_q._version, cu_k._version))


_last = threading.local()  # per worker thread: two engines in one process each have their own


def plan_for(cu_q_tensor: torch.Tensor, cu_k_tensor: torch.Tensor, key_length: int, device: torch.device) -> StepPlan:
    plan: StepPlan | None = getattr(_last, "plan", None)
    if plan is not None and plan.fits(cu_q_tensor, cu_k_tensor, key_length):
        return plan
    cu_q, cu_k = cu_q_tensor.tolist(), cu_k_tensor.tolist()
    spans = [span for span in zip(cu_q, cu_q[1:], cu_k, cu_k[1:]) if span[1] > span[0]]
    decoding = [span for span in spans if span[1] - span[0] == 1]
    rows = own_keys = None
    if decoding:
        rows = torch.tensor([q_start for q_start, *_ in decoding], device=device)
        if not (len(decoding) == 1 and decoding[0][2:] == (0, key_length)):
            positions = torch.arange(key_length, device=device)
            starts = torch.tensor([k_start for *_, k_start, _ in decoding], device=device)
            ends = torch.tensor([k_end for *_, k_end in decoding], device=device)
            own_keys = (positions >= starts[:, None]) & (positions < ends[:, None])
    prompts = tuple(span for span in spans if span[1] - span[0] > 1)
    masks = tuple(
        torch.ones(q_end - q_start, k_end - k_start, dtype=torch.bool, device=device).tril(
            (k_end - k_start) - (q_end - q_start))
        if q_end - q_start < k_end - k_start else None
        for q_start, q_end, k_start, k_end in prompts
    )
    plan = StepPlan(cu_q_tensor, cu_k_tensor, (cu_q_tensor._version, cu_k_tensor._version), key_length,
                    rows, own_keys, prompts, masks)
    _last.plan = plan
    return plan


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
    plan = plan_for(kwargs["cu_seq_lens_q"], kwargs["cu_seq_lens_k"], key.shape[2], query.device)
    gqa = query.shape[1] != key.shape[1]
    output = torch.empty(query.shape[2], query.shape[1], query.shape[3], dtype=query.dtype, device=query.device)
    if plan.decoding_rows is not None:
        attended = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, plan.decoding_rows], key, value, attn_mask=plan.decoding_keys, scale=scaling, enable_gqa=gqa,
        )
        output[plan.decoding_rows] = attended[0].transpose(0, 1)
    for (q_start, q_end, k_start, k_end), mask in zip(plan.prompts, plan.prompt_masks):
        attended = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, q_start:q_end],
            key[:, :, k_start:k_end],
            value[:, :, k_start:k_end],
            attn_mask=mask,
            is_causal=mask is None,
            scale=scaling,
            enable_gqa=gqa,
        )
        output[q_start:q_end] = attended[0].transpose(0, 1)
    return output.unsqueeze(0), None


AttentionInterface.register(NAME, varlen_sdpa_forward)
