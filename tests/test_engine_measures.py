"""A running engine really takes each speed-up it claims (see EngineConfig), observed while it drafts.

The measures lean on transformers' and bitsandbytes' internals (pyproject.toml bounds both to the
versions tested): if an upstream change routes around one, drafts only get slower, silently. So one
real draft is generated on an engine of its own, while the function each measure runs is counted:
per-request attention (one-query attention for a draft decoding alone, in inference mode), bf16
products for long prompt steps, the top-k warpers and draw, and the
cached pages of the task's system prompt. The engine is this module's own, not the session's, so
that no earlier draft can have filled those pages: only the warm-up at start can have.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from transformers import AttentionInterface, AutoTokenizer
from transformers.generation.continuous_batching.cache import PagedAttentionCache
from transformers.generation.continuous_batching.model_runner import ModelRunner

from conftest import TEST_CONTEXT_TOKENS
from generation import EngineConfig, LocalEngine, Prompt, Sampling, cpu_prefill, get_task, resolve_model, varlen_attention
from generation.topk_sampling import TopKSampler, TopKWithoutSort, TopPWithoutSort
from support.cpu import cpu_has_avx512_bf16

# One-query attention forced on: by default the engine takes it only where it timed faster at start.
CONFIG = EngineConfig(max_concurrent=2, max_context_tokens=TEST_CONTEXT_TOKENS, one_query_attention=True)
SUMMARY = get_task("summary")
# Long enough that the part of the prompt after the cached system prompt is one long step (>= MIN_ROWS rows).
DRAFT = SUMMARY.render({"text": (
    "The city council met on Tuesday to discuss the new cycling lanes along the river. Residents asked for "
    "safer crossings near the schools, shop owners worried about deliveries, and the council agreed to test "
    "the lanes for six months before deciding, with a public report on accidents and traffic every month."
)})
REQUEST_ID = "measured"


@dataclass
class Observed:
    """Each measure's function, with the arguments and result of every call during the draft."""

    calls: dict[str, list[tuple[tuple[Any, ...], Any]]] = field(default_factory=dict)

    def record(self, patch: pytest.MonkeyPatch, owner: Any, name: str, key: str | None = None) -> None:
        """Let `owner.name` (an attribute or mapping key) be counted under `key` while the patch holds."""
        calls = self.calls.setdefault(key or name, [])
        mapping = isinstance(owner, dict)
        original: Callable[..., Any] = owner[name] if mapping else getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            calls.append((args, result))
            return result

        if mapping:
            patch.setitem(owner, name, counted)
        else:
            patch.setattr(owner, name, counted)


@pytest.fixture(scope="module")
async def observed(cache_dir: Path) -> AsyncIterator[Observed]:
    engine = await LocalEngine.start(resolve_model("", cache_dir), quantization="nf4", device="cpu", config=CONFIG)
    observed = Observed()
    try:
        with pytest.MonkeyPatch.context() as patch:
            # transformers looks the attention function up by name at every forward pass.
            observed.record(patch, AttentionInterface._global_mapping, varlen_attention.NAME_ONE_QUERY,
                            "varlen attention")
            observed.record(patch, varlen_attention, "one_query_attention", "one-query attention")
            observed.record(patch, cpu_prefill, "dequantize_4bit", "bf16 product")
            observed.record(patch, TopKWithoutSort, "__call__", "top-k warper")
            observed.record(patch, TopPWithoutSort, "__call__", "top-p warper")
            observed.record(patch, TopKSampler, "_sample", "draw")
            observed.record(patch, ModelRunner, "_sample", "draw over the whole vocabulary")
            observed.record(patch, PagedAttentionCache, "search_prefix_match", "cached prefix")
            async for _ in engine.stream(DRAFT, Sampling(max_new_tokens=4), REQUEST_ID):
                pass
        yield observed
    finally:
        await engine.close()


def test_attention_runs_per_request(observed: Observed) -> None:
    assert observed.calls["varlen attention"], "the model's attention never went through varlen_one_query_forward"


def test_a_draft_decoding_alone_takes_the_one_query_path_in_inference_mode(observed: Observed) -> None:
    one_query = observed.calls["one-query attention"]
    assert one_query, "the draft's decoding steps, alone in the engine, went to SDPA"
    assert all(result.shape[1:] == query.shape[1:2] + query.shape[3:] for (query, *_), result in one_query)
    # Tensors made in inference mode say so; the manager's loop runs in the mode it was started in.
    assert all(result.is_inference() for _, result in one_query), "the worker ran outside inference mode"


def test_by_default_a_draft_decoding_alone_gets_the_attention_that_timed_faster_at_start(engine: LocalEngine) -> None:
    timing = engine.one_query_timing
    assert timing is not None, "the default engine chose its attention without timing it"
    assert timing.sdpa_us > 0 and timing.one_query_us > 0
    faster = varlen_attention.NAME_ONE_QUERY if timing.one_query_us < timing.sdpa_us else varlen_attention.NAME
    assert engine.attention_implementation == faster


async def test_the_attention_timing_at_start_runs_in_a_thread_that_ends_with_it(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Torch's OpenMP team lives as long as the thread that started it: one left beside the worker by
    the timing made every decoding step twice as long (47 against 20 ms at one draft on 2 cores)."""
    ran_in: list[threading.Thread] = []
    original = varlen_attention.time_one_query

    def timed(*args: Any, **kwargs: Any) -> varlen_attention.OneQueryTiming:
        ran_in.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(varlen_attention, "time_one_query", timed)
    config = EngineConfig(max_concurrent=1, max_context_tokens=TEST_CONTEXT_TOKENS, warm_system_prompts=False)
    engine = await LocalEngine.start(resolve_model("", cache_dir), device="cpu", config=config)
    try:
        assert len(ran_in) == 1, "the engine did not time its attention at start"
        assert not ran_in[0].is_alive(), "the timing's thread, and the OpenMP team it started, outlive the start"
    finally:
        await engine.close()


def test_long_prompt_steps_multiply_in_bf16_where_bitsandbytes_repacks(observed: Observed) -> None:
    """On a CPU without AVX512-BF16 bitsandbytes keeps one layout, and the measure must stay off by itself."""
    if cpu_has_avx512_bf16():
        assert observed.calls["bf16 product"], "no 4-bit layer expanded its weight to bf16 for the prompt step"
    else:
        assert not observed.calls["bf16 product"], "the bf16 path ran where bitsandbytes does not repack"


def test_tokens_are_drawn_among_the_top_k_without_sorting_the_vocabulary(observed: Observed) -> None:
    assert observed.calls["top-k warper"] and observed.calls["top-p warper"], "transformers' sorting warpers ran"
    assert len(observed.calls["draw"]) >= 3  # one per decoding step (the fourth token may come from the last)
    # TopKSampler falls back to transformers' draw (through super) only where it cannot help.
    assert not observed.calls["draw over the whole vocabulary"]


def test_the_draft_starts_from_its_task_system_prompt_cached_at_start(observed: Observed, cache_dir: Path) -> None:
    source = resolve_model("", cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(source.location, local_files_only=source.local_files_only)

    def ids(prompt: Prompt) -> list[int]:
        return list(tokenizer.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=True,
                                                  return_dict=False))

    draft, warm = ids(DRAFT), ids(Prompt(SUMMARY.system_prompt, ""))
    shared = next(i for i, (a, b) in enumerate(zip(draft, warm)) if a != b)
    cached = max(result for (_, request_id, _), result in observed.calls["cached prefix"] if request_id == REQUEST_ID)
    assert cached >= shared // CONFIG.page_size * CONFIG.page_size > 0, (cached, shared)
