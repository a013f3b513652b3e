"""Benchmark, in one run: what variants cost. For each prompt, 4 drafts three ways, through copydesk's own
service (DraftService over the LocalEngine and a SQLite file, as the bot runs them):

- `variants`: one request with variants=4 (`create_variants` + `generate_together`: the four streams
  start at once, and the engine batches them),
- `separate`: four requests one after another, as a member asking four times would get them,
- `separate, at once`: four requests sent together (what four members asking at the same moment get).

The modes take turns prompt by prompt, so the machine's noise spreads over all three. The result is a
Markdown table on stdout (progress on stderr); every ratio is against `separate` of this run.

    .venv/bin/python bench/variants.py [--requests 6] [--variants 4] [--max-new-tokens 64] [--device cuda]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/variants.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.engine import PROMPTS, describe_device, percentile, progress  # noqa: E402
from bot.config import EngineSettings, LimitSettings, ModerationSettings  # noqa: E402
from bot.service import DraftProgress, DraftService, Member, Policy  # noqa: E402
from generation import MAX_VARIANTS, EngineConfig, LocalEngine, resolve_model  # noqa: E402
from storage import Repository, open_database  # noqa: E402

MODES = ("variants", "separate", "separate, at once")
BASELINE = "separate"
MEMBER = Member("bench")


@dataclass
class ModeResult:
    """One mode over all prompts: per prompt, the seconds until all its drafts were done and until the first
    text showed, and the tokens written."""

    mode: str
    wall_s: list[float] = field(default_factory=list)
    first_text_s: list[float] = field(default_factory=list)
    tokens: int = 0
    drafts: int = 0

    @property
    def total_s(self) -> float:
        return sum(self.wall_s)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s if self.total_s else 0.0


@dataclass
class Clock:
    """When a set of drafts started, showed its first text, and how many tokens it wrote."""

    started: float = field(default_factory=time.perf_counter)
    first_text: float | None = None
    tokens: dict[int, int] = field(default_factory=dict)

    def saw(self, step: DraftProgress) -> None:
        if step.text and self.first_text is None:
            self.first_text = time.perf_counter()
        self.tokens[step.draft_id] = step.completion_tokens


async def as_variants(service: DraftService, task: str, inputs: dict[str, str], count: int, clock: Clock) -> None:
    drafts = await service.create_variants(MEMBER, task, inputs, count)
    async for snapshot in service.generate_together([draft.id for draft in drafts]):
        for step in snapshot:
            clock.saw(step)


async def one_draft(service: DraftService, task: str, inputs: dict[str, str], clock: Clock) -> None:
    draft = await service.create_draft(MEMBER, task, inputs)
    async for step in service.generate(draft.id):
        clock.saw(step)


async def separately(service: DraftService, task: str, inputs: dict[str, str], count: int, clock: Clock) -> None:
    for _ in range(count):
        await one_draft(service, task, inputs, clock)


async def separately_at_once(service: DraftService, task: str, inputs: dict[str, str], count: int,
                             clock: Clock) -> None:
    await asyncio.gather(*(one_draft(service, task, inputs, clock) for _ in range(count)))


RUNS: dict[str, Callable[[DraftService, str, dict[str, str], int, Clock], Awaitable[None]]] = {
    "variants": as_variants, "separate": separately, "separate, at once": separately_at_once}


@asynccontextmanager
async def bench_service(args: argparse.Namespace, folder: Path) -> AsyncIterator[tuple[DraftService, str]]:
    """The service as the bot builds it, on a fresh database, with no limit that a bench would trip."""
    engine = await LocalEngine.start(resolve_model(args.model, args.cache_dir), quantization="nf4", device=args.device,
                                     config=EngineConfig(max_concurrent=max(8, args.variants)))
    database = await open_database(f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}")
    policy = Policy(engine=EngineSettings(max_new_tokens=args.max_new_tokens),
                    moderation=ModerationSettings(detect_personal_data=False, detect_prompt_leak=False),
                    limits=LimitSettings(waiting=0, waiting_per_member=0, per_member_per_minute=0))
    try:
        yield DraftService(Repository(database), engine, policy), engine.info.device
    finally:
        await engine.close()
        await database.close()


async def run_bench(args: argparse.Namespace) -> str:
    results = {mode: ModeResult(mode) for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="copydesk-bench-") as folder:
        async with bench_service(args, Path(folder)) as (service, device):
            progress("warming up…")
            await one_draft(service, *PROMPTS[0], Clock())
            for index in range(args.requests):
                task, inputs = PROMPTS[index % len(PROMPTS)]
                # Each prompt's modes in a rotated order, so that no mode always runs first.
                for mode in MODES[index % 3:] + MODES[:index % 3]:
                    clock = Clock()
                    await RUNS[mode](service, task, inputs, args.variants, clock)
                    result = results[mode]
                    result.wall_s.append(time.perf_counter() - clock.started)
                    result.first_text_s.append((clock.first_text or time.perf_counter()) - clock.started)
                    result.tokens += sum(clock.tokens.values())
                    result.drafts += len(clock.tokens)
                    progress(f"prompt {index + 1}/{args.requests} · {mode}: {result.wall_s[-1]:.1f} s")
    header = (f"device {describe_device(device)} · model {args.model or 'the embedded default'} (nf4) · "
              f"{args.requests} prompts from the catalogue, {args.variants} drafts each per mode, "
              f"at most {args.max_new_tokens} new tokens a draft; tokens are those actually written")
    return "\n\n".join([header, render_table(results)])


def render_table(results: dict[str, ModeResult]) -> str:
    baseline = results[BASELINE]
    lines = ["| mode | drafts | tokens | wall s | tokens/s | wall ratio | tokens/s ratio | p50 s to all done "
             "| p50 s to first text |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for result in results.values():
        wall_ratio = result.total_s / baseline.total_s if baseline.total_s else float("nan")
        speed_ratio = result.tokens_per_s / baseline.tokens_per_s if baseline.tokens_per_s else float("nan")
        lines.append(f"| {result.mode} | {result.drafts} | {result.tokens} "
                     f"| {result.total_s:.1f} | {result.tokens_per_s:.1f} | {wall_ratio:.2f}× | {speed_ratio:.2f}× "
                     f"| {percentile(result.wall_s, 50):.2f} | {percentile(result.first_text_s, 50):.2f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=6, help="prompts, each drafted the three ways (default 6)")
    parser.add_argument("--variants", type=int, default=MAX_VARIANTS, choices=range(2, MAX_VARIANTS + 1),
                        help=f"drafts per prompt and mode (default {MAX_VARIANTS})")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--model", default="", help="model id or folder (default: the embedded model)")
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/copydesk").expanduser())
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    from transformers.utils import logging as transformers_logging

    args = parse_args(argv)
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    print(asyncio.run(run_bench(args)))
    progress(f"bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
