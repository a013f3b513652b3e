"""The local engine on the real embedded model, through the real 4-bit path and its worker thread."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from generation import (
    EngineConfig,
    GenerationCancelled,
    GenerationError,
    LocalEngine,
    ModelNotFound,
    Sampling,
    StreamUpdate,
    get_task,
    resolve_model,
)

SHORT = Sampling(max_new_tokens=16, temperature=0.7, top_p=0.9, top_k=50)


def ad_prompt(product: str):
    return get_task("ad").render({"product": product, "audience": "hikers"})


async def collect(engine: LocalEngine, product: str, request_id: str, sampling: Sampling = SHORT) -> list[StreamUpdate]:
    return [update async for update in engine.stream(ad_prompt(product), sampling, request_id)]


async def test_the_embedded_model_runs_in_int4_on_the_cpu_by_default(engine: LocalEngine) -> None:
    assert engine.info.name == "SmolLM2-135M-Instruct"
    assert engine.info.quantization == "int4"
    assert engine.info.device == "cpu"
    from torch import nn

    from generation.int4 import Int4Linear

    model = engine._manager.model
    int4_layers = [module for module in model.modules() if isinstance(module, Int4Linear)]
    assert len(int4_layers) == 7 * model.config.num_hidden_layers + 1, "q, k, v, o, gate, up, down and the head"
    assert model.get_output_embeddings() in int4_layers
    assert all(layer.group_size == 32 and layer.packed.dtype == torch.uint8 for layer in int4_layers)
    assert not [module for module in model.modules() if isinstance(module, nn.Linear)], "no full-precision product left"
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16, "the embeddings stay bf16, untied from the head"


async def test_bitsandbytes_nf4_still_writes_on_the_cpu(cache_dir: Path) -> None:
    """NF4 is what CUDA and training use; on the CPU it stays a working choice."""
    import bitsandbytes as bnb

    engine = await LocalEngine.start(resolve_model("", cache_dir), quantization="nf4", device="cpu",
                                     config=EngineConfig(max_concurrent=2, warm_system_prompts=False))
    try:
        assert engine.info.quantization == "nf4"
        linear_layers = [module for module in engine._manager.model.modules() if isinstance(module, bnb.nn.Linear4bit)]
        assert len(linear_layers) == 7 * engine._manager.model.config.num_hidden_layers
        assert all(layer.weight.quant_state.quant_type == "nf4" for layer in linear_layers)
        updates = await collect(engine, "a tent", "nf4-1")
        assert updates[-1].finished and updates[-1].text.strip()
    finally:
        await engine.close()


async def test_a_request_streams_token_by_token(engine: LocalEngine) -> None:
    updates = await collect(engine, "a tent", "stream-1")
    assert len(updates) > 1
    assert [update.finished for update in updates] == [False] * (len(updates) - 1) + [True]
    assert updates[-1].text.strip()
    assert 0 < updates[-1].completion_tokens <= SHORT.max_new_tokens
    lengths = [update.completion_tokens for update in updates]
    assert lengths == sorted(lengths)


async def test_eight_concurrent_requests_each_get_their_own_text(engine: LocalEngine) -> None:
    products = ["a tent", "boots", "a compass", "a stove", "a map", "socks", "a lamp", "a rope"]
    results = await asyncio.gather(*(collect(engine, product, f"many-{i}") for i, product in enumerate(products)))
    texts = [updates[-1].text for updates in results]
    assert all(updates[-1].finished for updates in results)
    assert all(text.strip() for text in texts)
    assert len(set(texts)) == len(texts)


async def test_the_event_loop_stays_responsive_while_the_model_works(engine: LocalEngine) -> None:
    lags: list[float] = []

    async def probe() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    prober = asyncio.create_task(probe())
    await asyncio.gather(*(collect(engine, f"gadget {i}", f"lag-{i}") for i in range(4)))
    prober.cancel()
    # Generation on the loop itself would stall it for seconds; the worker thread keeps it in the milliseconds.
    assert max(lags) < 0.5


async def test_cancel_stops_a_running_request(engine: LocalEngine) -> None:
    long = Sampling(max_new_tokens=200, temperature=0.7, top_p=0.9, top_k=50)
    seen: list[StreamUpdate] = []

    async def consume() -> None:
        async for update in engine.stream(ad_prompt("a kayak"), long, "cancel-1"):
            seen.append(update)
            if len(seen) == 3:
                assert engine.cancel("cancel-1")

    with pytest.raises(GenerationCancelled):
        await consume()
    assert len(seen) == 3 and not seen[-1].finished
    assert not engine.cancel("cancel-1"), "a cancelled request is forgotten"


async def test_a_failed_request_fails_alone(engine: LocalEngine) -> None:
    too_long = get_task("summary").render({"text": "Hiking boots are sturdy. " * 200})

    async def doomed() -> None:
        async for _ in engine.stream(too_long, SHORT, "fail-1"):
            pass

    results = await asyncio.gather(doomed(), collect(engine, "a bivouac sack", "fail-neighbour"),
                                   return_exceptions=True)
    assert isinstance(results[0], GenerationError)
    assert "exceeds the engine's context" in str(results[0])
    assert results[1][-1].finished and results[1][-1].text.strip()


async def test_the_same_request_id_cannot_run_twice(engine: LocalEngine) -> None:
    first = engine.stream(ad_prompt("a canoe"), SHORT, "twice")
    await anext(first)
    with pytest.raises(GenerationError, match="already running"):
        await collect(engine, "a canoe", "twice")
    await first.aclose()


def test_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-model"), tmp_path)


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no config.json"):
        resolve_model(str(tmp_path), tmp_path)


def test_a_model_id_missing_from_the_local_cache_is_not_downloaded(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache"):
        resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct", tmp_path)


def test_the_embedded_model_is_converted_once_into_the_cache(cache_dir: Path) -> None:
    source = resolve_model("", cache_dir)
    folder = Path(source.location)
    assert folder.is_relative_to(cache_dir)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("", cache_dir).location == source.location
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


async def test_requests_beyond_the_batch_wait_in_line_and_learn_their_place(engine: LocalEngine) -> None:
    capacity = engine._config.max_concurrent
    first_updates: dict[int, StreamUpdate] = {}

    async def run(i: int) -> StreamUpdate:
        last = None
        async for update in engine.stream(ad_prompt(f"gear {i}"), SHORT, f"queue-{i}"):
            first_updates.setdefault(i, update)
            last = update
        return last

    tasks = []
    for i in range(capacity + 2):
        tasks.append(asyncio.create_task(run(i)))
        await asyncio.sleep(0.05)  # arrive in order
    results = await asyncio.gather(*tasks)
    assert all(result.finished and result.text.strip() for result in results)
    assert [first_updates[i].queued_ahead for i in (capacity, capacity + 1)] == [0, 1]
    assert all(first_updates[i].queued_ahead is None for i in range(capacity))


async def test_a_queued_request_can_be_cancelled(engine: LocalEngine) -> None:
    capacity = engine._config.max_concurrent
    long = Sampling(max_new_tokens=64, temperature=0.7, top_p=0.9, top_k=50)
    busy = [asyncio.create_task(collect(engine, f"tool {i}", f"busy-{i}", long)) for i in range(capacity)]
    await asyncio.sleep(0.3)
    waiting = engine.stream(ad_prompt("a hammock"), SHORT, "queued-cancel")
    first = await anext(waiting)
    assert first.queued_ahead == 0
    assert engine.cancel("queued-cancel")
    with pytest.raises(GenerationCancelled, match="while queued"):
        await anext(waiting)
    assert all(updates[-1].finished for updates in await asyncio.gather(*busy))
