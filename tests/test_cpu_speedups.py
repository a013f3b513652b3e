"""The engine's speed-ups compute what they replace: per-request attention over a packed batch,
bf16 matrix products for long steps of the 4-bit layers, and top-k/top-p without full sorts."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from bitsandbytes.functional import dequantize_4bit
from transformers import GenerationConfig
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from generation import LocalEngine, Sampling, get_task, resolve_model, varlen_attention
from generation.cpu_prefill import MIN_ROWS, PrefillLinear4bit
from generation.loading import LoadedModel, load_model
from generation.topk_sampling import TRANSFORMERS_OWN, WITHOUT_SORT, TopKSampler
from generation.varlen_attention import varlen_one_query_forward, varlen_sdpa_forward
from support.cpu import cpu_has_avx512_bf16

AttentionForward = Callable[..., tuple[torch.Tensor, None]]


def reference_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention of one request, written out: query i sees keys up to its own position."""
    q_len, k_len = query.shape[1], key.shape[1]
    groups = query.shape[0] // key.shape[0]
    key, value = key.repeat_interleave(groups, 0), value.repeat_interleave(groups, 0)
    scores = query @ key.transpose(1, 2) * scale
    visible = torch.arange(k_len)[None, :] <= torch.arange(k_len - q_len, k_len)[:, None]
    return scores.masked_fill(~visible, float("-inf")).softmax(-1) @ value  # [heads, q, dim]


def boundaries(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def check_packed_attention(
    requests: list[tuple[int, int]], cu_q: torch.Tensor, cu_k: torch.Tensor, forward: AttentionForward = varlen_sdpa_forward,
) -> None:
    """Random queries, keys and values for each (new tokens, keys) request, packed as the manager packs them."""
    heads, kv_heads, dim = 6, 2, 16
    queries = [torch.randn(heads, q, dim) for q, _ in requests]
    keys = [torch.randn(kv_heads, k, dim) for _, k in requests]
    values = [torch.randn(kv_heads, k, dim) for _, k in requests]
    packed, weights = forward(
        torch.nn.Module(), torch.cat(queries, 1)[None], torch.cat(keys, 1)[None], torch.cat(values, 1)[None],
        None, scaling=0.25, cu_seq_lens_q=cu_q, cu_seq_lens_k=cu_k,
    )
    assert weights is None
    assert packed.shape == (1, cu_q[-1], heads, dim)
    for i, (q, k, v) in enumerate(zip(queries, keys, values)):
        expected = reference_attention(q, k, v, 0.25).transpose(0, 1)
        torch.testing.assert_close(packed[0, cu_q[i]:cu_q[i + 1]], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("forward", [varlen_sdpa_forward, varlen_one_query_forward])
@pytest.mark.parametrize("requests", [
    [(1, 9), (7, 7), (5, 12), (1, 4)],  # decoding one token, a fresh prompt, a prompt after a cached prefix, decoding
    [(1, 9)],  # one draft decoding alone: its keys are all the keys (the one-query path)
    [(3, 3)],
])
def test_packed_attention_equals_attention_computed_per_request(
    requests: list[tuple[int, int]], forward: AttentionForward,
) -> None:
    torch.manual_seed(0)
    check_packed_attention(requests, boundaries([q for q, _ in requests]), boundaries([k for _, k in requests]), forward)


def test_a_step_plan_serves_every_layer_and_is_renewed_when_a_reused_buffer_changes() -> None:
    torch.manual_seed(0)
    first, second = [(1, 9), (1, 4), (5, 5)], [(1, 3), (1, 10), (5, 5)]  # same totals, other boundaries
    cu_q, cu_k = boundaries([q for q, _ in first]), boundaries([k for _, k in first])
    check_packed_attention(first, cu_q, cu_k)
    plan = varlen_attention.plan_for(cu_q, cu_k, int(cu_k[-1]), torch.device("cpu"))
    check_packed_attention(first, cu_q, cu_k)  # the next layer of the same step
    assert varlen_attention.plan_for(cu_q, cu_k, int(cu_k[-1]), torch.device("cpu")) is plan
    cu_k.copy_(boundaries([k for _, k in second]))  # the manager refills its buffers in place
    check_packed_attention(second, cu_q, cu_k)


def test_top_k_then_top_p_without_sorting_keeps_exactly_what_the_sorting_versions_keep() -> None:
    torch.manual_seed(0)
    scores = torch.randn(16, 49152) * 3
    top_ks = torch.tensor([50, 40, 1, 7] * 4, dtype=torch.int32)
    top_ps = torch.tensor([0.9, 0.5, 1.0, 0.99] * 4, dtype=torch.float32).view(torch.int32)

    def warp(classes: dict) -> torch.Tensor:
        top_k = classes[TopKLogitsWarper](TopKLogitsWarper(top_k=50))
        top_p = classes[TopPLogitsWarper](TopPLogitsWarper(top_p=0.9))
        return top_p(top_k(scores, top_ks), top_ps)

    expected, got = warp(TRANSFORMERS_OWN), warp(WITHOUT_SORT)
    assert torch.equal(got, expected)
    kept = (got > float("-inf")).sum(-1)
    assert kept[2] == 1 and (kept <= top_ks).all() and (kept >= 1).all()


def test_the_draw_among_the_surviving_tokens_follows_their_probabilities() -> None:
    torch.manual_seed(0)
    sampler = object.__new__(TopKSampler)  # the draw reads only these two settings of the runner
    sampler.do_sample, sampler.return_logprobs = True, False
    scores = torch.full((1, 2, 1000), float("-inf"))
    scores[0, 0, [7, 100, 400]] = torch.tensor([0.5, 0.3, 0.2]).log()
    scores[0, 1, 42] = 3.0
    output_ids = torch.zeros(1, 2, dtype=torch.int64)
    drawn = []
    for _ in range(5000):
        sampler._sample(scores, output_ids)
        drawn.append(output_ids[0].clone())
    drawn = torch.stack(drawn)
    assert (drawn[:, 1] == 42).all()
    shares = [(drawn[:, 0] == token).float().mean().item() for token in (7, 100, 400)]
    assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.03)
    assert sum(shares) == 1


@pytest.fixture(scope="module")
def loaded(cache_dir: Path) -> LoadedModel:
    return load_model(resolve_model("", cache_dir), "nf4", "cpu")


@contextmanager
def fused_kernel_only(loaded: LoadedModel) -> Iterator[None]:
    """bitsandbytes' own kernel for every step, as without the speed-up."""
    layers = [m for m in loaded.model.modules() if isinstance(m, PrefillLinear4bit)]
    for layer in layers:
        layer.min_rows = 1 << 30
    try:
        yield
    finally:
        for layer in layers:
            layer.min_rows = MIN_ROWS


def prompt_ids(loaded: LoadedModel) -> torch.Tensor:
    prompt = get_task("blog").render({"topic": "how to repair a bicycle tyre at the roadside", "audience": "commuters"})
    return loaded.tokenizer.apply_chat_template(
        prompt.messages(), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
    )["input_ids"]


def logits(loaded: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return loaded.model(ids).logits[0].float()


def test_every_4_bit_layer_gets_the_bf16_path_and_keeps_its_4_bit_weights(loaded: LoadedModel) -> None:
    """Where bitsandbytes repacks (AVX512-BF16); elsewhere its one kernel already reads the original layout."""
    layers = [m for m in loaded.model.modules() if isinstance(m, PrefillLinear4bit)]
    repacked = 7 * loaded.model.config.num_hidden_layers if cpu_has_avx512_bf16() else 0  # q, k, v, o, gate, up, down
    assert len(layers) == repacked
    for layer in layers:
        assert layer.original_weight.dtype == torch.uint8
        assert layer.original_weight.numel() * 2 == layer.in_features * layer.out_features


def test_a_long_step_gives_the_logits_of_bitsandbytes_own_kernel(loaded: LoadedModel) -> None:
    ids = prompt_ids(loaded)
    assert ids.shape[1] >= MIN_ROWS
    fast = logits(loaded, ids)
    with fused_kernel_only(loaded):
        fused = logits(loaded, ids)
    exact = exact_logits(loaded, ids)

    assert (fast.argmax(-1) == fused.argmax(-1)).float().mean() >= 0.9
    # Both round to bf16; neither may stray from the exact product much more than the other.
    fast_error, fused_error = (fast - exact).abs().mean(), (fused - exact).abs().mean()
    assert fast_error <= 1.5 * fused_error, (fast_error, fused_error)


def exact_logits(loaded: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """The same model with every 4-bit weight expanded to fp32 and multiplied in fp32."""
    layers = [m for m in loaded.model.modules() if isinstance(m, PrefillLinear4bit)]

    def in_fp32(layer: PrefillLinear4bit, x: torch.Tensor) -> torch.Tensor:
        state = copy.copy(layer.original_state)
        state.dtype = torch.float32
        return torch.nn.functional.linear(x.float(), dequantize_4bit(layer.original_weight, state)).to(x.dtype)

    for layer in layers:
        layer.forward = in_fp32.__get__(layer)
    try:
        return logits(loaded, ids)
    finally:
        for layer in layers:
            del layer.forward


async def test_the_engine_decodes_like_generate_after_its_cached_system_prompt(
    engine: LocalEngine, cache_dir: Path,
) -> None:
    """Greedy decoding through the engine (int4, copydesk's CPU default), where the task's system
    prompt comes from the pages cached at start (so attention runs with a causal mask shifted past
    them), against `generate` on the same int4 model computing the whole prompt. The draft runs
    alone, so no other request shares its steps. Packed batches are covered by the attention test above."""
    assert engine.info.quantization == "int4"
    loaded = load_model(resolve_model("", cache_dir), "int4", "cpu")
    greedy = Sampling(max_new_tokens=12, temperature=1.0, top_p=1.0, top_k=1)
    blog = get_task("blog").render({"topic": "how to repair a bicycle tyre at the roadside", "audience": "commuters"})
    text = ""
    async for update in engine.stream(blog, greedy, "greedy"):
        text = update.text

    ids = prompt_ids(loaded)
    config = GenerationConfig(do_sample=False, max_new_tokens=12, pad_token_id=loaded.tokenizer.eos_token_id)
    with torch.inference_mode():
        generated = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    assert text == loaded.tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)
