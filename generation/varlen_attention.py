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

One draft decoding alone is one query over all the keys. Which is faster for it depends on the CPU
(`bench/decode_attention.py`, one layer at 300 keys): on an AMD EPYC with AVX512-BF16, SDPA's
kernel, built for blocks of queries, took 3.4x as long as two matrix products and a softmax in
fp32 (~3 ms of a ~30 ms step); on an Intel Xeon with AMX, SDPA took under a third as long as
they did. So the engine times both at start, with the model's shapes (`time_one_query`), and
takes the faster. With 2 to 4 drafts in a step, one masked SDPA call beat a product per draft on
both, so steps of several drafts keep it.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import torch
from transformers import AttentionInterface

NAME = "flash_varlen_sdpa"
NAME_ONE_QUERY = "flash_varlen_sdpa_one_query"  # the same, with the path for one draft decoding alone

Span = tuple[int, int, int, int]  # queries start, end; keys start, end


@dataclass(frozen=True)
class StepPlan:
    """The step's boundaries, split into the requests decoding one token and those reading a prompt."""

    boundaries: tuple[tuple[int, ...], tuple[int, ...], int]  # cu_q, cu_k, key length: what the plan is for
    decoding_rows: torch.Tensor | None  # query rows of the requests decoding one token
    decoding_keys: torch.Tensor | None  # [those rows, all keys]: each row's own keys; None when one request has all
    prompts: tuple[Span, ...]
    prompt_masks: tuple[torch.Tensor | None, ...]  # causal, aligned to the last keys where a prefix is cached

    @property
    def one_query(self) -> bool:
        """The step is one request decoding alone: its one query sees every key."""
        return self.decoding_rows is not None and self.decoding_keys is None


_last = threading.local()  # per worker thread: two engines in one process each have their own


def plan_for(cu_q_tensor: torch.Tensor, cu_k_tensor: torch.Tensor, key_length: int, device: torch.device) -> StepPlan:
    """The plan of the step these boundaries describe: the last one, unless they changed.

    Matched by value: the manager refills the same buffers in place each step, and in inference mode
    tensors keep no version counter to tell. Reading two short lists costs a few µs a layer.
    """
    cu_q, cu_k = cu_q_tensor.tolist(), cu_k_tensor.tolist()
    boundaries = (tuple(cu_q), tuple(cu_k), key_length)
    plan: StepPlan | None = getattr(_last, "plan", None)
    if plan is not None and plan.boundaries == boundaries:
        return plan
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
    plan = StepPlan(boundaries, rows, own_keys, prompts, masks)
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


def one_query_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float | None,
) -> torch.Tensor:
    """Softmax attention of one query row over all keys, in fp32: [1, heads, 1, dim] -> [1, heads, dim].

    Query head h reads key/value head h // groups, as SDPA's `enable_gqa` and transformers' `repeat_kv` do.
    """
    heads, dim = query.shape[1], query.shape[3]
    kv_heads = key.shape[1]
    scale = dim ** -0.5 if scaling is None else scaling
    grouped = query[0, :, 0].reshape(kv_heads, heads // kv_heads, dim).float()
    scores = torch.matmul(grouped, key[0].transpose(1, 2).float()).mul_(scale)
    attended = torch.matmul(scores.softmax(-1), value[0].float())
    return attended.reshape(1, heads, dim).to(query.dtype)


@dataclass(frozen=True)
class OneQueryTiming:
    """One layer's attention for one draft decoding alone, median µs per call on this CPU."""

    keys: int
    sdpa_us: float
    one_query_us: float

    @property
    def one_query_faster(self) -> bool:
        return self.one_query_us < self.sdpa_us


def time_one_query(
    heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype, keys: int = 300, repeats: int = 50,
    inference_mode: bool = True,
) -> OneQueryTiming:
    """SDPA against `one_query_attention` for one query over `keys` random keys, calls taking turns.

    A few ms; the two differ by 3-4x one way or the other, far beyond a busy machine's jitter.
    """
    query = torch.randn(1, heads, 1, head_dim, dtype=dtype)
    key, value = (torch.randn(1, kv_heads, keys, head_dim, dtype=dtype) for _ in range(2))
    scale = head_dim ** -0.5

    def sdpa() -> object:
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, scale=scale, enable_gqa=heads != kv_heads)

    def ours() -> object:
        return one_query_attention(query, key, value, scale)

    times: dict[str, list[float]] = {"sdpa": [], "ours": []}
    with torch.inference_mode(inference_mode):  # as the worker runs them
        for turn in range(repeats + 10):  # the first ten warm up
            for name, call in (("sdpa", sdpa), ("ours", ours)):
                start = time.perf_counter()
                call()
                if turn >= 10:
                    times[name].append((time.perf_counter() - start) * 1e6)
    return OneQueryTiming(keys, statistics.median(times["sdpa"]), statistics.median(times["ours"]))


def varlen_one_query_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: torch.Tensor,
) -> tuple[torch.Tensor, None]:
    """`varlen_sdpa_forward`, but a step of one draft decoding alone gets `one_query_attention`."""
    if plan_for(kwargs["cu_seq_lens_q"], kwargs["cu_seq_lens_k"], key.shape[2], query.device).one_query:
        return one_query_attention(query, key, value, scaling).unsqueeze(0), None
    return varlen_sdpa_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)


AttentionInterface.register(NAME, varlen_sdpa_forward)
AttentionInterface.register(NAME_ONE_QUERY, varlen_one_query_forward)
