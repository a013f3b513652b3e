"""The OpenAI-compatible engine against a real `transformers serve` on loopback serving the embedded
model (continuous batching, bitsandbytes 4-bit, on the CPU), plus a scripted server for the protocol variants and
failures a real server will not produce on demand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from bot.config import EngineSettings
from bot.service import DraftService, Member, Policy
from generation import (
    GenerationCancelled,
    GenerationError,
    Sampling,
    StreamUpdate,
    get_task,
    resolve_model,
)
from generation.openai_engine import OpenAIEngine
from storage import DraftStatus, Repository
from support.served import ServerDidNotStart, free_port, transformers_serve

SHORT = Sampling(max_new_tokens=16, temperature=0.7, top_p=0.9, top_k=50)
LONG = Sampling(max_new_tokens=200, temperature=0.7, top_p=0.9, top_k=50)



def ad_prompt(product: str):
    return get_task("ad").render({"product": product, "audience": "hikers"})


async def collect(engine: OpenAIEngine, product: str, request_id: str, sampling: Sampling = SHORT) -> list[StreamUpdate]:
    return [update async for update in engine.stream(ad_prompt(product), sampling, request_id)]


@pytest.fixture(scope="session")
def served_model(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`transformers serve` pinned to the embedded model's local folder, in 4-bit: (base URL, model name)."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("`transformers serve` needs fastapi, uvicorn and openai: pip install -e '.[dev]'")
    model = resolve_model("", cache_dir).location
    try:
        with transformers_serve(model, tmp_path_factory.mktemp("serve") / "serve.log") as base_url:
            yield base_url, model
    except ServerDidNotStart as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
async def served(served_model: tuple[str, str]) -> AsyncIterator[OpenAIEngine]:
    """The engine most tests share (named apart from conftest's local `engine`)."""
    engine = await OpenAIEngine.start(*served_model, timeout_s=60, max_concurrent=4)
    yield engine
    await engine.close()


async def test_the_engine_names_the_model_and_the_server(served: OpenAIEngine, served_model: tuple[str, str]) -> None:
    base_url, model = served_model
    assert (served.info.name, served.info.quantization) == (model, "server")
    assert base_url.startswith(f"http://{served.info.device}/")


async def test_a_request_streams_chunk_by_chunk(served: OpenAIEngine) -> None:
    updates = await collect(served, "a tent", "stream-1")
    assert len(updates) > 1
    assert [update.finished for update in updates] == [False] * (len(updates) - 1) + [True]
    assert all(update.text for update in updates)
    assert all(later.text.startswith(earlier.text) for earlier, later in zip(updates, updates[1:]))
    assert updates[-1].text.strip()
    assert 0 < updates[-1].completion_tokens <= SHORT.max_new_tokens
    assert updates[-1].prompt_tokens > 0  # from the server's usage


async def test_four_concurrent_requests_each_get_their_own_text(served: OpenAIEngine) -> None:
    products = ["a tent", "boots", "a compass", "a rope"]
    results = await asyncio.gather(*(collect(served, product, f"many-{i}") for i, product in enumerate(products)))
    texts = [updates[-1].text for updates in results]
    assert all(updates[-1].finished for updates in results)
    assert all(text.strip() for text in texts)
    assert len(set(texts)) == len(texts)


async def test_requests_beyond_the_slots_wait_in_line_and_can_leave_it(served_model: tuple[str, str]) -> None:
    engine = await OpenAIEngine.start(*served_model, max_concurrent=1)
    try:
        first = asyncio.create_task(collect(engine, "a lamp", "line-1"))
        await asyncio.sleep(0)
        async with (aclosing(engine.stream(ad_prompt("a map"), SHORT, "line-2")) as second,
                    aclosing(engine.stream(ad_prompt("a stove"), SHORT, "line-3")) as third):
            assert (await anext(second)).queued_ahead == 0
            assert (await anext(third)).queued_ahead == 1
            assert engine.cancel("line-3")
            with pytest.raises(GenerationCancelled):
                await anext(third)
            rest = [update async for update in second]
        places = [update.queued_ahead for update in rest]
        waited = places.count(0)
        assert places == [0] * waited + [None] * (len(places) - waited)  # first in line until it ran
        assert rest[-1].finished and rest[-1].text.strip()
        assert (await first)[-1].finished
    finally:
        await engine.close()


async def test_the_server_samples_as_asked(served: OpenAIEngine) -> None:
    """The converted model's generation config samples; without it the server decoded greedily, ignoring temperature."""
    hot = replace(SHORT, temperature=1.2)
    texts = await asyncio.gather(*(collect(served, "a tent", f"hot-{i}", hot) for i in range(4)))
    assert len({updates[-1].text for updates in texts}) > 1, "four samples at temperature 1.2 all came out the same"


async def test_cancel_stops_a_running_request_and_the_next_one_works(served: OpenAIEngine) -> None:
    seen: list[StreamUpdate] = []
    with pytest.raises(GenerationCancelled):
        async with aclosing(served.stream(ad_prompt("a tent"), LONG, "cancel-1")) as stream:
            async for update in stream:
                seen.append(update)
                assert served.cancel("cancel-1")
    assert len(seen) == 1 and not seen[0].finished
    assert not served.cancel("cancel-1")  # gone once its stream ended
    assert (await collect(served, "boots", "cancel-2"))[-1].finished


async def test_closing_the_stream_early_frees_the_request(served: OpenAIEngine) -> None:
    async with aclosing(served.stream(ad_prompt("a tent"), LONG, "early")) as stream:
        await anext(stream)
    assert (await collect(served, "boots", "early"))[-1].finished  # the same id is free again


async def test_a_request_past_its_timeout_fails(served_model: tuple[str, str]) -> None:
    engine = await OpenAIEngine.start(*served_model, timeout_s=0.5)
    try:
        with pytest.raises(GenerationError, match=r"timed out after 0\.5 s") as raised:
            await collect(engine, "a tent", "slow", LONG)
        assert not isinstance(raised.value, GenerationCancelled)
    finally:
        await engine.close()


async def test_an_unreachable_server_fails_at_start_with_a_clear_error() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(GenerationError, match=f"cannot reach the OpenAI-compatible server at {base_url}: "):
        await OpenAIEngine.start(base_url, "any")


async def test_a_server_error_fails_that_request_only(served: OpenAIEngine, served_model: tuple[str, str]) -> None:
    wrong = await OpenAIEngine.start(served_model[0], "not-a-served-model")
    try:
        failed, good = await asyncio.gather(collect(wrong, "a tent", "wrong"), collect(served, "a rope", "right"),
                                            return_exceptions=True)
    finally:
        await wrong.close()
    assert isinstance(failed, GenerationError)
    assert "answered 400" in str(failed) and "not-a-served-model" in str(failed)
    assert good[-1].finished and good[-1].text.strip()


# A scripted server, one response per model name: what each kind of server sends, and how streams break.
ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
HEL = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
LO = b'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}\n\n'
STOP = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
SCRIPTS: dict[str, list[bytes]] = {
    # vLLM: usage in a chunk of its own after the finish, then [DONE]
    "vllm": [ROLE, HEL, LO, STOP, b'data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3}}\n\n',
             b"data: [DONE]\n\n"],
    # TGI: no space after the colon; no usage, so the chunks are counted
    "tgi": [HEL.replace(b"data: ", b"data:"), LO.replace(b"data: ", b"data:"), STOP, b"data:[DONE]\n\n"],
    "ends-early": [ROLE, HEL],
    "malformed": [HEL, b"data: {not json\n\n"],
    "misshapen": [HEL, b'data: {"choices":[{"delta":{"content":7}}]}\n\n'],
    "error-event": [HEL, b'data: {"error":{"message":"CUDA out of memory","code":500}}\n\n'],
}


async def scripted(request: web.Request) -> web.StreamResponse:
    model = (await request.json())["model"]
    if model == "http-500":
        return web.json_response({"object": "error", "message": "the engine is dead"}, status=500)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if model == "drop":
        await response.write(HEL)
        assert request.transport is not None
        request.transport.close()  # mid-chunk: the client sees an incomplete payload
        return response
    for event in SCRIPTS[model]:
        await response.write(event)
    await response.write_eof()
    return response


async def no_models(request: web.Request) -> web.Response:
    if request.headers.get("Authorization", "Bearer right-key") != "Bearer right-key":
        return web.json_response({"error": {"message": "Invalid API key", "type": "auth"}}, status=401)
    return web.json_response({"object": "list", "data": []})


@pytest.fixture(scope="session")
async def scripted_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/models", no_models)
    app.router.add_post("/v1/chat/completions", scripted)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


@pytest.mark.parametrize(("model", "prompt_tokens", "completion_tokens"), [("vllm", 11, 3), ("tgi", 0, 2)])
async def test_token_counts_come_from_usage_or_from_counting_chunks(
    scripted_url: str, model: str, prompt_tokens: int, completion_tokens: int,
) -> None:
    engine = await OpenAIEngine.start(scripted_url, model)
    try:
        updates = await collect(engine, "a tent", model)
    finally:
        await engine.close()
    assert (updates[-1].text, updates[-1].finished, updates[-1].prompt_tokens, updates[-1].completion_tokens) == (
        "Hello", True, prompt_tokens, completion_tokens)


@pytest.mark.parametrize(("model", "message"), [
    ("ends-early", "ended the stream before the draft was finished"),
    ("drop", "lost the connection"),
    ("malformed", "malformed event: {not json"),
    ("misshapen", "malformed event: .*7"),
    ("error-event", "failed the request: CUDA out of memory"),
    ("http-500", "answered 500: the engine is dead"),
])
async def test_a_broken_stream_fails_with_the_servers_reason(scripted_url: str, model: str, message: str) -> None:
    engine = await OpenAIEngine.start(scripted_url, model)
    try:
        with pytest.raises(GenerationError, match=message) as raised:
            await collect(engine, "a tent", model)
        assert not isinstance(raised.value, GenerationCancelled)
    finally:
        await engine.close()


async def test_the_api_key_is_sent_and_a_rejected_one_fails_at_start(scripted_url: str) -> None:
    with pytest.raises(GenerationError, match="cannot reach .* answered GET /models with 401: Invalid API key"):
        await OpenAIEngine.start(scripted_url, "vllm", api_key="wrong-key")
    engine = await OpenAIEngine.start(scripted_url, "vllm", api_key="right-key")
    await engine.close()


async def test_a_draft_through_the_service_records_the_server_as_its_provenance(
    served: OpenAIEngine, repository: Repository, policy: Policy
) -> None:
    service = DraftService(repository, served, replace(policy, engine=EngineSettings(max_new_tokens=16)))
    created = await service.create_draft(Member("console:alice"), "ad", {"product": "a tent", "audience": "hikers"})
    steps = [progress async for progress in service.generate(created.id)]
    assert steps[-1].status == DraftStatus.DONE and steps[-1].text.strip()
    stored = await repository.get_draft(created.id)
    assert (stored.model, stored.quantization, stored.output) == (served.info.name, "server", steps[-1].text)
    assert stored.completion_tokens > 0 and stored.ttft_ms <= stored.latency_ms
