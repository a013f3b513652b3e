"""The OpenAI-compatible engine: drafts stream from a model server (vLLM, TGI, llama.cpp's server,
`transformers serve`) over HTTP, so one bot can be served by a GPU machine elsewhere.

It keeps the local engine's contract: the same `stream`/`cancel`/`close` surface, the same
first-come-first-served slots with queue positions, and the same errors. Each request is read
by a task of its own that keeps only the newest text, like the local engine's result handler;
cancelling that task closes the HTTP connection, which is how a client tells any of these
servers to stop generating.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.http

from generation.catalogue import Prompt
from generation.engine import ModelInfo, StreamUpdate
from generation.errors import GenerationCancelled, GenerationError
from generation.sampling import Sampling
from generation.slots import EngineLoad, SlotQueue

CHECK_TIMEOUT_S = 10.0  # for the start-up check: a server that cannot list its models in 10 s is not ready
MAX_ERROR_CHARS = 500  # of a server's error body: enough for its message, not for a page of HTML


class _Exchange:
    """One request's progress, written by its reader task and read by its stream.

    Only the newest text is kept, so a consumer slower than the server skips ahead instead of
    falling behind.
    """

    def __init__(self) -> None:
        self.text = ""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.stopped = False  # the server gave a finish_reason
        self.finished = False  # ... and ended the stream after it
        self.error: GenerationError | None = None
        self.cancelled = asyncio.Event()
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self._chunks = 0
        self._counted = False  # the token counts came from the server's `usage`

    def fold(self, event: dict[str, Any]) -> None:
        """Add one streamed chunk (its first choice only: one is asked for)."""
        if "error" in event:
            raise GenerationError(f"the OpenAI-compatible server failed the request: {_error_text(event)}")
        for choice in (event.get("choices") or ())[:1]:
            content = (choice.get("delta") or {}).get("content")
            if content:
                self.text += content
                self._chunks += 1
            self.stopped = self.stopped or bool(choice.get("finish_reason"))
        usage = event.get("usage")
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self._chunks)
            self._counted = True
        elif not self._counted:
            self.completion_tokens = self._chunks  # these servers stream about one token per chunk
        self.changed.set()

    def cancel(self) -> None:
        self.cancelled.set()
        self.changed.set()
        if self.reader is not None:
            self.reader.cancel()


class OpenAIEngine:
    """Streams chat completions from an OpenAI-compatible server, at most `max_concurrent` at once."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, model: str, *,
                 timeout_s: float, max_concurrent: int) -> None:
        self._session = session
        self._base_url = base_url
        self._model = model
        self._timeout_s = timeout_s
        self._slots = SlotQueue(max_concurrent)
        self._exchanges: dict[str, _Exchange] = {}
        # The server decides quantization and seeding: the record names the server (never its
        # credentials) instead of guessing.
        server = urlsplit(base_url).netloc.rpartition("@")[2]
        self.info = ModelInfo(name=model, quantization="server", device=server, seed=0)

    @classmethod
    async def start(
        cls, base_url: str, model: str, *, api_key: str | None = None,
        timeout_s: float = 300.0, max_concurrent: int = 16,
    ) -> OpenAIEngine:
        """Connect to the server at `base_url` (the part before `/chat/completions`, e.g.
        `http://gpu-box:8000/v1`) and check that it answers, so a wrong URL fails at start-up."""
        base_url = base_url.rstrip("/")
        session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
            # The slots bound the connections, and each request has its own deadline instead of
            # aiohttp's default of 5 minutes in all.
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        try:
            await _check_reachable(session, base_url)
        except BaseException:
            await session.close()
            raise
        return cls(session, base_url, model, timeout_s=timeout_s, max_concurrent=max_concurrent)

    async def stream(
        self, prompt: Prompt, sampling: Sampling, request_id: str, owner: str = ""
    ) -> AsyncGenerator[StreamUpdate, None]:
        """Yield the text generated so far until the request finishes.

        While the request waits for a slot, updates carry its place in the queue instead
        (`queued_ahead`). Raises GenerationCancelled if `cancel` is called, GenerationError if
        this request fails or runs past the timeout (counted from when it is sent); neither
        affects other requests. Closing the iterator early cancels the request.
        """
        if request_id in self._exchanges:
            raise GenerationError(f"request {request_id} is already running")
        exchange = self._exchanges[request_id] = _Exchange()
        holding_slot = False
        try:
            async with aclosing(self._slots.take(request_id, exchange.cancelled, owner)) as places:
                async for ahead in places:
                    yield StreamUpdate(text="", prompt_tokens=0, completion_tokens=0, finished=False,
                                       queued_ahead=ahead)
            holding_slot = True
            if exchange.cancelled.is_set():
                raise GenerationCancelled(f"request {request_id} was cancelled while queued")
            reader = exchange.reader = asyncio.create_task(self._read(exchange, self._request_body(prompt, sampling)))
            deadline = asyncio.get_running_loop().time() + self._timeout_s
            shown = ""  # like the local engine, the first update carries text: the role-only chunk is no news
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        await exchange.changed.wait()
                except TimeoutError:
                    raise GenerationError(
                        f"the request to the OpenAI-compatible server at {self._base_url} "
                        f"timed out after {self._timeout_s:g} s"
                    ) from None
                exchange.changed.clear()
                if exchange.cancelled.is_set():
                    raise GenerationCancelled(f"request {request_id} was cancelled")
                if exchange.error is not None:
                    raise exchange.error
                if exchange.text != shown or exchange.finished:
                    shown = exchange.text
                    yield StreamUpdate(text=exchange.text, prompt_tokens=exchange.prompt_tokens,
                                       completion_tokens=exchange.completion_tokens, finished=exchange.finished)
                if exchange.finished:
                    return
                if reader.done():
                    reader.result()  # re-raise what the reader did not expect
        finally:
            del self._exchanges[request_id]
            if exchange.reader is not None:
                exchange.reader.cancel()  # closes the connection if still open: the server stops generating
            if holding_slot:
                self._slots.release(owner)

    def load(self) -> EngineLoad:
        return self._slots.load()

    def cancel(self, request_id: str) -> bool:
        """Stop a queued or running request; its stream raises GenerationCancelled."""
        exchange = self._exchanges.get(request_id)
        if exchange is None:
            return False
        exchange.cancel()
        return True

    async def close(self) -> None:
        """Cancel every request, let their connections close, then close the session."""
        exchanges = list(self._exchanges.values())
        for exchange in exchanges:
            exchange.cancel()
        await asyncio.gather(*(e.reader for e in exchanges if e.reader is not None), return_exceptions=True)
        await self._session.close()

    def _request_body(self, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        # top_k is not an OpenAI parameter: vLLM and llama.cpp take it, but `transformers serve`
        # rejects the whole request for it (422), so it is left to the server's default.
        return {
            "model": self._model,
            "messages": prompt.messages(),
            "stream": True,
            "max_tokens": sampling.max_new_tokens,
            "temperature": float(sampling.temperature),
            "top_p": float(sampling.top_p),
            # Without it vLLM sends no token counts; servers that do not know it ignore it.
            "stream_options": {"include_usage": True},
        }

    async def _read(self, exchange: _Exchange, body: dict[str, Any]) -> None:
        """Runs as the request's own task: post it and fold each event into `exchange`."""
        try:
            async with self._session.post(f"{self._base_url}/chat/completions", json=body) as response:
                if response.status >= 400:
                    raise GenerationError(
                        f"the OpenAI-compatible server answered {response.status}: "
                        f"{_server_message(await response.text())}"
                    )
                async for event in _events(response):
                    try:
                        exchange.fold(event)
                    except (AttributeError, TypeError):  # JSON, but not shaped like a chunk
                        raise GenerationError(f"the OpenAI-compatible server sent a malformed event: "
                                              f"{json.dumps(event)[:MAX_ERROR_CHARS]}") from None
            if not exchange.stopped:
                raise GenerationError("the OpenAI-compatible server ended the stream before the draft was finished")
            exchange.finished = True
        except GenerationError as error:
            exchange.error = error
        except (aiohttp.ClientError, aiohttp.http.HttpProcessingError) as error:
            exchange.error = GenerationError(
                f"lost the connection to the OpenAI-compatible server at {self._base_url}: "
                f"{error or type(error).__name__}"
            )
        finally:
            exchange.changed.set()  # also when this task fails unexpectedly: the stream re-raises that


async def _check_reachable(session: aiohttp.ClientSession, base_url: str) -> None:
    """List the server's models: the cheapest request that proves the URL, the API and the key."""
    try:
        async with session.get(f"{base_url}/models", timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)) as response:
            if response.status < 400:
                return
            reason = f"it answered GET /models with {response.status}: {_server_message(await response.text())}"
    except (aiohttp.ClientError, TimeoutError) as error:
        reason = str(error) or f"no answer within {CHECK_TIMEOUT_S:g} s"
    raise GenerationError(f"cannot reach the OpenAI-compatible server at {base_url}: {reason}")


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Parse a server-sent event stream into the JSON objects of its `data` fields, up to `[DONE]`.

    Follows the SSE rules these servers rely on: an event ends at a blank line, its `data:` lines
    are joined, one space after the colon is dropped (TGI sends none), other fields are ignored.
    """
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                return
            try:
                event = json.loads(payload)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                raise GenerationError(f"the OpenAI-compatible server sent a malformed event: {payload[:MAX_ERROR_CHARS]}")
            yield event


def _error_text(body: Any) -> str:
    """The message in an error body, whichever server's shape it has: OpenAI's and vLLM's
    `{"error": {"message"}}`, TGI's `{"error": "..."}`, FastAPI's `{"detail"}`, `{"message"}`."""
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if key in body:
                return _error_text(body[key])
    return str(body)


def _server_message(text: str) -> str:
    try:
        message = _error_text(json.loads(text))
    except ValueError:
        message = text.strip()
    return message[:MAX_ERROR_CHARS] or "(no message)"
