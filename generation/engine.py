"""The local engine: one worker thread owns the model and serves many requests at once.

It is built on transformers' continuous batching manager: the manager's generation thread
is the only thread that runs the model, requests join and leave the running batch token by
token, and each request's outputs are handed to the asyncio loop with
`call_soon_threadsafe`, so the loop never waits on the model. Measures of its own make a burst
of prompts start streaming sooner (see EngineConfig): on the CPU `cpu_prefill` and
`varlen_attention`; anywhere, cached system prompts and `topk_sampling`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from generation.catalogue import TASKS, Prompt
from generation.errors import GenerationCancelled, GenerationError
from generation.loading import PER_REQUEST_ATTENTION, LoadedModel, cpu_measures, load_model
from generation.model_source import ModelSource
from generation.sampling import Sampling
from generation.slots import EngineLoad, SlotQueue

if TYPE_CHECKING:
    from generation.varlen_attention import OneQueryTiming

T = TypeVar("T")


@dataclass(frozen=True)
class EngineConfig:
    """Sizing of the batching manager; explicit, because its defaults reserve most of the RAM."""

    max_concurrent: int = 16
    max_context_tokens: int = 2048
    page_size: int = 16  # small pages, so a cached system prompt fills whole pages (see LocalEngine.start)
    # Prompt tokens per step: a burst of prompts is done in several short steps, so the first drafts
    # start streaming while the later prompts are read (median first token at 16 drafts: ~0.6 s vs ~1.2 s at 512).
    max_batch_tokens: int = 256
    warm_system_prompts: bool = True
    # Off means transformers' and bitsandbytes' own paths (bench/first_token.py compares them).
    # CPU only: on any other device they are off whatever these say (generation.loading.cpu_measures).
    bf16_prefill: bool = True  # see generation/cpu_prefill.py
    per_request_attention: bool = True  # see generation/varlen_attention.py
    top_k_sampling: bool = True  # any device; see generation/topk_sampling.py
    # Any device: the worker keeps no autograd records on its tensors (~12% of a one-draft step on the CPU).
    inference_mode: bool = True
    # With per_request_attention. None: whichever of it and SDPA is faster on this CPU, timed at start
    # (3-4x apart one way or the other by CPU; see generation/varlen_attention.py).
    one_query_attention: bool | None = None
    seed: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """What produced a draft, recorded with it as provenance."""

    name: str
    quantization: str
    device: str
    seed: int


@dataclass(frozen=True)
class StreamUpdate:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finished: bool
    queued_ahead: int | None = None  # set while the request waits for a batch slot


class Engine(Protocol):
    """What the service needs of an engine; the local one and the OpenAI-compatible one both fit."""

    info: ModelInfo

    def stream(
        self, prompt: Prompt, sampling: Sampling, request_id: str, owner: str = ""
    ) -> AsyncGenerator[StreamUpdate, None]: ...

    def cancel(self, request_id: str) -> bool: ...

    def load(self) -> EngineLoad: ...

    async def close(self) -> None: ...


class _Pending:
    """The newest output of one request, passed from the manager's callbacks to its consumer.

    Keeping only the newest output coalesces tokens when the consumer is slower than the model.
    """

    def __init__(self) -> None:
        self.output: Any = None
        self.cancelled = asyncio.Event()
        self.changed = asyncio.Event()

    def deliver(self, output: Any) -> None:
        self.output = output
        self.changed.set()

    def cancel(self) -> None:
        self.cancelled.set()
        self.changed.set()


class LocalEngine:
    """Streams chat completions from a local model through one continuous-batching worker."""

    def __init__(self, started: _Started, info: ModelInfo, config: EngineConfig) -> None:
        self._tokenizer = started.loaded.tokenizer
        self._manager = started.manager
        self._config = config
        self._slots = SlotQueue(config.max_concurrent)
        self._pending: dict[str, _Pending] = {}
        self.info = info
        self.one_query_timing = started.one_query_timing  # where the engine chose its attention by timing

    @classmethod
    async def start(
        cls, source: ModelSource, *, quantization: str = "auto", device: str = "auto",
        config: EngineConfig | None = None,
    ) -> LocalEngine:
        """Load the model and start the worker, all off the event loop.

        Then each task's system prompt is run once: the batching manager keeps the pages it fills
        and shares them with every later prompt that starts the same way, so a draft's prompt
        processing skips its task's ~35-token preamble.
        """
        config = config or EngineConfig()
        started = await asyncio.to_thread(_load_and_start, source, quantization, device, config)
        loaded = started.loaded
        info = ModelInfo(name=source.name, quantization=loaded.quantization, device=loaded.device, seed=config.seed)
        engine = cls(started, info, config)
        if config.warm_system_prompts:
            for task in TASKS.values():
                # Two tokens: pages are registered for sharing after a step only if the request goes on.
                warm = engine.stream(Prompt(task.system_prompt, ""), Sampling(max_new_tokens=2), f"warm-{task.name}")
                async for _ in warm:
                    pass
        return engine

    async def stream(
        self, prompt: Prompt, sampling: Sampling, request_id: str, owner: str = ""
    ) -> AsyncGenerator[StreamUpdate, None]:
        """Yield the text generated so far until the request finishes.

        While the request waits for a batch slot, updates carry its place in the queue instead
        (`queued_ahead`, about once a second); slots are shared fairly between `owner`s.
        Raises GenerationCancelled if `cancel` is called, GenerationError if this request fails;
        neither affects other requests. Closing the iterator early cancels the request.
        """
        if request_id in self._pending:
            raise GenerationError(f"request {request_id} is already running")
        pending = self._pending[request_id] = _Pending()
        holding_slot = submitted = finished = False
        try:
            input_ids = await asyncio.to_thread(self._encode, prompt)
            self._check_fits(len(input_ids), sampling.max_new_tokens)
            async with aclosing(self._slots.take(request_id, pending.cancelled, owner)) as places:
                async for ahead in places:
                    yield StreamUpdate(text="", prompt_tokens=len(input_ids), completion_tokens=0, finished=False,
                                       queued_ahead=ahead)
            holding_slot = True
            if pending.cancelled.is_set():
                raise GenerationCancelled(f"request {request_id} was cancelled while queued")
            self._manager.register_result_handler(request_id, pending.deliver)
            accepted = self._manager.add_request(
                input_ids, request_id=request_id, max_new_tokens=sampling.max_new_tokens, streaming=True,
                temperature=float(sampling.temperature), top_p=float(sampling.top_p), top_k=int(sampling.top_k),
            )
            if accepted is None:
                raise GenerationError("the model worker is not accepting requests (it is stopping or has failed)")
            submitted = True
            while not finished:
                await pending.changed.wait()
                pending.changed.clear()
                if pending.cancelled.is_set():
                    raise GenerationCancelled(f"request {request_id} was cancelled")
                output = pending.output
                if output.error is not None:
                    finished = True
                    raise GenerationError(f"generation failed: {output.error}")
                finished = output.is_finished()
                yield StreamUpdate(
                    text=self._tokenizer.decode(output.generated_tokens, skip_special_tokens=True),
                    prompt_tokens=len(input_ids),
                    completion_tokens=len(output.generated_tokens),
                    finished=finished,
                )
        finally:
            del self._pending[request_id]
            if holding_slot:
                self._slots.release(owner)
            if submitted and not finished:
                # cancel_request never delivers a final output, so nothing waits on one.
                self._manager.cancel_request(request_id)

    def load(self) -> EngineLoad:
        return self._slots.load()

    def cancel(self, request_id: str) -> bool:
        """Stop a queued or running request; its stream raises GenerationCancelled."""
        pending = self._pending.get(request_id)
        if pending is None:
            return False
        pending.cancel()
        return True

    async def close(self) -> None:
        for pending in list(self._pending.values()):
            pending.cancel()
        await asyncio.to_thread(self._manager.stop, block=True, hard_stop=True)

    @property
    def attention_implementation(self) -> str:
        """The name transformers looks the model's attention function up by."""
        return str(self._manager.model.config._attn_implementation)

    @property
    def context_tokens(self) -> int:
        """The most tokens one request may span, prompt and draft together."""
        return self._config.max_context_tokens

    def count_tokens(self, prompt: Prompt) -> int:
        """The prompt's tokens as this model reads it, chat template included (template versions are checked so)."""
        return len(self._encode(prompt))

    def _encode(self, prompt: Prompt) -> list[int]:
        return list(self._tokenizer.apply_chat_template(
            prompt.messages(), add_generation_prompt=True, tokenize=True, return_dict=False,
        ))

    def _check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        limit = self._config.max_context_tokens
        if prompt_tokens + max_new_tokens > limit:
            raise GenerationError(
                f"the prompt is {prompt_tokens} tokens; with {max_new_tokens} new tokens it exceeds "
                f"the engine's context of {limit} tokens — shorten the input"
            )


@dataclass(frozen=True)
class _Started:
    loaded: LoadedModel
    manager: Any  # transformers' ContinuousBatchingManager, its generation thread running
    one_query_timing: OneQueryTiming | None


def _attention_shape(model_config: Any) -> tuple[int, int, int]:
    """Query heads, key/value heads, head size."""
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return heads, getattr(model_config, "num_key_value_heads", None) or heads, head_dim


def _in_own_thread(call: Callable[[], T]) -> T:
    """`call` in a thread that ends with it. Torch's first multi-threaded operation in a thread starts
    an OpenMP team that lives as long as the thread: timed in the loading thread, the attention
    timing left one spinning beside the worker, and every decoding step took twice as long."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def _load_and_start(source: ModelSource, quantization: str, device: str, config: EngineConfig) -> _Started:
    """Runs in a throwaway thread: one torch thread while loading, so no idle OpenMP team spins
    beside the worker (that made the worker ~1.6x slower on 2 cores); the worker gets them all."""
    import torch
    from transformers import ContinuousBatchingConfig, GenerationConfig

    worker_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    loaded = load_model(source, quantization, device, bf16_prefill=config.bf16_prefill)
    # The count is inherited by threads started later: give the worker all cores back (1.4-1.7x faster).
    torch.set_num_threads(worker_threads)
    tokenizer = loaded.tokenizer
    defaults = Sampling()
    generation_config = GenerationConfig(
        do_sample=True,
        # Per-request temperature/top-p/top-k only exist if the manager is built with non-neutral values.
        temperature=defaults.temperature, top_p=defaults.top_p, top_k=defaults.top_k,
        max_new_tokens=defaults.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    per_request_attention = config.per_request_attention and PER_REQUEST_ATTENTION in cpu_measures(
        loaded.device, loaded.quantization)
    one_query_timing = None
    if per_request_attention:
        from generation import varlen_attention

        one_query = config.one_query_attention
        if one_query is None:
            one_query_timing = _in_own_thread(lambda: varlen_attention.time_one_query(
                *_attention_shape(loaded.model.config), loaded.model.dtype, inference_mode=config.inference_mode))
            one_query = one_query_timing.one_query_faster
        # Assigned, not set: `set_attn_implementation` would try to import flash kernels for the name.
        loaded.model.config._attn_implementation = varlen_attention.NAME_ONE_QUERY if one_query else varlen_attention.NAME
    from generation import topk_sampling

    topk_sampling.use(among_top_k=config.top_k_sampling)
    pages_per_request = math.ceil(config.max_context_tokens / config.page_size)
    batching_config = ContinuousBatchingConfig(
        page_size=config.page_size,
        num_blocks=pages_per_request * config.max_concurrent,
        max_batch_tokens=config.max_batch_tokens,
        max_requests_per_batch=config.max_concurrent,
        per_request_processors=True,
        max_blocks_per_request=0 if per_request_attention else None,  # the block-table decode path needs flash kernels
        seed=config.seed,
    )
    manager = loaded.model.init_continuous_batching(
        generation_config=generation_config, continuous_batching_config=batching_config,
    )
    with torch.inference_mode(config.inference_mode):  # the manager's loop runs in the mode it is started in
        manager.start()
    return _Started(loaded, manager, one_query_timing)
