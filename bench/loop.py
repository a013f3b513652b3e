"""Benchmark: does the loop work? The team's feedback trains a version that writes better ads.

A simulated team with one written-down preference (RULE, printed first) drafts ads on the base
model through copydesk's own service, regenerates some of the drafts it rejects, and rates every
draft by that rule. From the same drafts, two arms are exported and trained with `copydesk
train`'s use case:

- thumbs only: the ratings alone (by default SFT on the approved drafts — rejection sampling;
  --thumbs-method dpo, kto or sft+dpo use the sibling pairs and the 👎 too), what most teams give;
- thumbs + improvements: the same, plus improved versions of at most one rejected draft in five,
  written by the bench in varied wording (openers, benefits and calls to action drawn at random).

Then the base and each candidate draft once for each of --fresh products the training never saw,
served through copydesk's engine exactly as the bot serves a version, and the same rule rates them.
Last, the live stage: the base and the thumbs+improved candidate share new drafts in a blind
experiment (`copydesk experiment start`, drawn per draft), each drafting member rates their own draft
by the rule, and the experiment runs in rounds until the decision rule (`[stats]`) names a winner or
--live-max drafts are written. It writes the experiment's chart (--chart) and prints the verdict.

The table gives, per version, the approval rate with its Wilson 95 % interval, mean length, the
share of distinct drafts and of distinct word bigrams (a candidate repeating one template has
learned nothing worth serving) and its held-out evaluation beside the base's on the same rows (each
arm's export has its own test split); then the time and peak memory of each
stage. The last line is the verdict:

    loop: base A% [lo–hi], thumbs B% [lo–hi], thumbs+improved C% [lo–hi], N fresh prompts, T min
    live: B ahead: 99% probability to be best, expected loss 0.0 points — after N drafts (A: n, B: n), T min

    .venv/bin/python bench/loop.py                  # the defaults: about 30 minutes on 2 cores, alone, +12 for the live stage
    .venv/bin/python bench/loop.py --requests 60 --fresh 16 --epochs 1   # a quick try
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/loop.py` from anywhere
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bot.app import open_service  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.experiments import VariantSpec  # noqa: E402
from bot.service import DraftService, Member  # noqa: E402
from bot.stats import Rate  # noqa: E402
from generation.training import TrainingConfig  # noqa: E402
from storage import BASE_VERSION, DraftStatus  # noqa: E402

T = TypeVar("T")
WORD = re.compile(r"[\w'’-]+")
MAX_WORDS = 45
TEAM = 12  # members of the simulated team
FINISHED = re.compile(r"[.!?][\"'”’)]*$")  # the last sentence ends: the model stopped, it was not cut off
RULE = (f"an ad is approved when it (1) names the product (the product's last word appears), (2) has at most "
        f"{MAX_WORDS} words, and (3) ends on a finished sentence (its last character is . ! or ?, or a quote or "
        f"bracket after one): a short, whole ad, not one the length limit cut off")

TRAINING_PRODUCTS = (
    "rain boots", "oat milk", "trail socks", "cold brew coffee", "a canvas tent", "wool hats", "a bike light",
    "wildflower honey", "a sketchbook", "a tea kettle", "running shoes", "a desk lamp", "strawberry jam",
    "a yoga mat", "a rain jacket", "a steel thermos", "maple syrup", "a hiking backpack", "a leather notebook",
    "a camping stove", "sunscreen", "a reading chair", "a sourdough loaf", "hand cream", "a picnic blanket",
    "a phone case", "dog treats", "a houseplant", "a wall clock", "garden gloves", "a chess set", "bath salts",
    "a travel mug", "noise-cancelling headphones", "a wooden spoon set", "a scented candle", "a winter scarf",
    "a paddle board", "a bird feeder", "a cookbook",
)
FRESH_PRODUCTS = (
    "a cast iron pan", "a smart doorbell", "lavender soap", "a kayak paddle", "a puzzle box", "a linen shirt",
    "a pour-over kettle", "ski goggles", "a standing desk", "a hammock", "beeswax wraps", "a fountain pen",
    "a ukulele", "trail mix", "a weighted blanket", "a sun hat", "a pizza stone", "an electric toothbrush",
    "a climbing rope", "chai tea", "a vinyl record player", "a tote bag", "a mountain bike", "an alarm clock",
    "a rice cooker", "swim goggles", "a photo frame", "granola bars", "a water filter", "a kite",
    "a meditation cushion", "a pocket knife", "olive oil", "a snow shovel", "a tent lantern", "a bread knife",
    "a woolen blanket", "a tennis racket", "a spice rack", "a step counter", "a pillow", "lip balm",
    "a skateboard", "a lunch box", "a tripod", "a coffee grinder", "an umbrella", "a gardening hoe",
    "a bath robe", "a jump rope", "a salad spinner", "a drawing tablet", "hot sauce", "a fleece jacket",
    "a tool belt", "a fishing rod", "a board game", "a herb planter", "a cutting board", "a shoe rack",
    "a baby monitor", "a car vacuum", "a coat hook", "a laptop stand", "a golf umbrella", "a pasta maker",
    "a garden hose", "a wind chime", "a beanbag chair", "a pet bed",
)
AUDIENCES = ("busy parents", "students", "hikers", "remote workers", "retirees", "city commuters")
TONES = ("friendly", "bold", "playful")
# The bench's improvements: each part drawn at random, so no two need read alike.
OPENERS = ("Meet {p}.", "Say hello to {p}.", "Here is {p}, made for {a}.", "{P} is here.", "Looking for {p}?",
           "Your day deserves {p}.", "Made for {a}: {p}.")
BENEFITS = ("It is simple, sturdy and ready when you are.", "Small price, big difference.",
            "Built to last and easy to love.", "Everything you need, nothing you don't.",
            "Loved by {a} everywhere.", "It makes every day a little better.", "Quality you can feel.")
CLOSERS = ("Order yours today!", "Shop now.", "Get yours now!", "Try it today.", "Grab one this week!",
           "Visit our store today.", "Buy now and see.", "Claim yours today!")


def key_word(product: str) -> str:
    return product.split()[-1].lower()


def approved(text: str, product: str) -> bool:
    """The simulated team's rule (RULE)."""
    words = WORD.findall(text.lower())
    return 0 < len(words) <= MAX_WORDS and key_word(product) in words and bool(FINISHED.search(text.strip()))


def improvement(product: str, audience: str, rng: random.Random) -> str:
    """A better version, as a teammate might write it: it always meets the rule, in varied wording."""
    parts = [rng.choice(OPENERS), rng.choice(BENEFITS)]
    if rng.random() < 0.5:
        parts.append(rng.choice([b for b in BENEFITS if b not in parts]))
    parts.append(rng.choice(CLOSERS))
    text = " ".join(parts).format(p=product, P=product[0].upper() + product[1:], a=audience)
    assert approved(text, product), text
    return text


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class Report:
    stages: list[Stage] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage and sample the process's resident memory every 0.2 s (its own peak, not the process's)."""
        stage = Stage(name)
        process, stop = psutil.Process(), threading.Event()

        def sample() -> None:
            while not stop.is_set():
                stage.peak_rss_mb = max(stage.peak_rss_mb, process.memory_info().rss / 2**20)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        progress(f"{name}…")
        try:
            yield
        finally:
            stage.seconds = time.perf_counter() - started
            stop.set()
            sampler.join()
            self.stages.append(stage)
            progress(f"{name}: {stage.seconds:.0f} s, peak RSS {stage.peak_rss_mb:.0f} MB")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def bounded(jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(run(job) for job in jobs)))


async def write(service: DraftService, member: Member, product: str, audience: str, tone: str,
                parent: int | None = None) -> tuple[int, str]:
    """One draft through the service, as a member's /draft ad (or its Regenerate) makes it."""
    if parent is None:
        draft = await service.create_draft(member, "ad", {"product": product, "audience": audience, "tone": tone})
    else:
        draft = await service.regenerate(member, parent)
    text, status = "", DraftStatus.FAILED
    async for update in service.generate(draft.id):
        text, status = update.text, update.status
    if status != DraftStatus.DONE:
        raise RuntimeError(f"draft {draft.id} ended {status}")
    return draft.id, text


@dataclass(frozen=True)
class Written:
    draft_id: int
    product: str
    audience: str
    text: str
    member: Member

    @property
    def ok(self) -> bool:
        return approved(self.text, self.product)


def team_member(index: int) -> Member:
    return Member(f"bench-member-{index % TEAM}", guild_id="1", channel_id="2")


async def team_drafts(service: DraftService, requests: int, regenerate_share: float, rng: random.Random,
                      concurrency: int) -> list[Written]:
    """The team at work on the base: a draft per request, a regeneration for some rejected ones, all rated."""
    asks = [(TRAINING_PRODUCTS[i % len(TRAINING_PRODUCTS)], rng.choice(AUDIENCES), rng.choice(TONES))
            for i in range(requests)]

    def first(index: int, product: str, audience: str, tone: str) -> Callable[[], Awaitable[Written]]:
        async def job() -> Written:
            member = team_member(index)
            draft_id, text = await write(service, member, product, audience, tone)
            return Written(draft_id, product, audience, text, member)
        return job

    originals = await bounded([first(index, *ask) for index, ask in enumerate(asks)], concurrency)
    again = [w for w in originals if not w.ok and rng.random() < regenerate_share]

    def sibling(original: Written) -> Callable[[], Awaitable[Written]]:
        async def job() -> Written:
            draft_id, text = await write(service, original.member, original.product, original.audience, "",
                                         original.draft_id)
            return Written(draft_id, original.product, original.audience, text, original.member)
        return job

    drafts = originals + await bounded([sibling(w) for w in again], concurrency)
    for written in drafts:
        await service.rate(Member("bench-rater"), written.draft_id, written.ok)
    return drafts


async def improve(service: DraftService, drafts: Sequence[Written], rng: random.Random) -> int:
    """Improved versions of one rejected draft in five (at most), through the service, in the second arm only."""
    rejected = [w for w in drafts if not w.ok]
    chosen = rng.sample(rejected, len(rejected) // 5)
    for written in chosen:
        await service.improve(Member("bench-editor"), written.draft_id,
                              improvement(written.product, written.audience, rng))
    return len(chosen)


@dataclass(frozen=True)
class Scored:
    version: str
    texts: list[str]
    products: list[str]
    evaluation: dict[str, float]  # a candidate's held-out scores on its own export's test split
    base_evaluation: dict[str, float]  # the base's, on the same rows (each arm's split is its own)

    @property
    def rate(self) -> Rate:
        return Rate(sum(approved(t, p) for t, p in zip(self.texts, self.products, strict=True)), len(self.texts))

    def mean_words(self) -> float:
        return sum(len(WORD.findall(t)) for t in self.texts) / max(len(self.texts), 1)

    def distinct_drafts(self) -> float:
        return len({" ".join(WORD.findall(t.lower())) for t in self.texts}) / max(len(self.texts), 1)

    def distinct_bigrams(self) -> float:
        bigrams = [pair for t in self.texts for pair in zip(WORD.findall(t.lower()), WORD.findall(t.lower())[1:])]
        return len(set(bigrams)) / max(len(bigrams), 1)


async def fresh_drafts(service: DraftService, count: int, rng: random.Random, concurrency: int) -> tuple[list[str], list[str]]:
    products = [FRESH_PRODUCTS[i % len(FRESH_PRODUCTS)] for i in range(count)]
    audiences = [AUDIENCES[i % len(AUDIENCES)] for i in range(count)]

    def job(index: int, product: str, audience: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            return (await write(service, team_member(index), product, audience, TONES[index % len(TONES)]))[1]
        return run

    texts = await bounded([job(i, p, a) for i, (p, a) in enumerate(zip(products, audiences, strict=True))],
                          concurrency)
    return texts, products


async def live_experiment(service: DraftService, candidate: str, args: argparse.Namespace,
                          rng: random.Random) -> str:
    """Base (A) and `candidate` (B) share new ad drafts, blind, in rounds, each rated by the member who asked,
    until the rule names a winner or --live-max drafts; the chart goes to --chart. Returns the verdict line."""
    experiment = await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec(candidate)], by="bench")
    started, written = time.perf_counter(), 0

    def job(index: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            member, product = team_member(index), FRESH_PRODUCTS[index % len(FRESH_PRODUCTS)]
            draft_id, text = await write(service, member, product, rng.choice(AUDIENCES), rng.choice(TONES))
            await service.rate(member, draft_id, approved(text, product))
        return run

    while True:
        await bounded([job(written + index) for index in range(args.live_round)], args.concurrency)
        written += args.live_round
        report = await service.experiments.report("ad", experiment.id)
        progress(f"live: {written} drafts, {report.verdict}")
        if report.winner is not None or written >= args.live_max:
            break
    for line in report.table(service.decision_rule):
        print(line)
    args.chart.parent.mkdir(parents=True, exist_ok=True)
    args.chart.write_bytes(await service.stats_chart(
        f"experiment: A = base, B = {candidate}", experiment_id=experiment.id))
    counts = ", ".join(f"{tally.version}: {tally.drafts}" for tally in report.tallies)
    return (f"live: {report.verdict} — after {written} drafts ({counts}), "
            f"{(time.perf_counter() - started) / 60:.1f} min; chart: {args.chart}")


def settings_for(data: Path, args: argparse.Namespace) -> Settings:
    return Settings.model_validate({
        "storage": {"data_dir": str(data)},
        "engine": {"max_concurrent": args.concurrency, "max_new_tokens": args.max_new_tokens, "seed": args.seed},
        "privacy": {"training_consent_default": True},
        "limits": {"waiting": 0, "waiting_per_member": 0, "per_member_per_minute": 0},  # the team drafts in bulk
        "export": {"test_fraction": 0.15, "min_votes": 1, "rating_threshold": 0.5},
        "moderation": {"detect_personal_data": False, "detect_prompt_leak": False, "check_compliance": False},
    })


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    report = Report()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="copydesk-loop-"))
    thumbs_data, improved_data = root / "thumbs", root / "improved"
    print(f"# copydesk loop bench — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; nothing else should run beside it")
    print(f"rule: {RULE}")
    try:
        with report.stage("team drafts on the base"):
            async with open_service(settings_for(thumbs_data, args)) as service:
                drafts = await team_drafts(service, args.requests, args.regenerate, rng, args.concurrency)
        approved_share = Rate(sum(w.ok for w in drafts), len(drafts))
        print(f"team drafts: {len(drafts)} ({args.requests} requests + {len(drafts) - args.requests} regenerations), "
              f"approved {approved_share.percent()}")
        shutil.copytree(thumbs_data, improved_data)
        async with open_service(settings_for(improved_data, args), with_model=False) as service:
            improved = await improve(service, drafts, rng)
        print(f"improvements written by the bench: {improved} (of {sum(not w.ok for w in drafts)} rejected drafts)")
        arms = {"thumbs": (thumbs_data, args.thumbs_method), "thumbs+improved": (improved_data, args.improved_method)}
        if args.improved_only:
            del arms["thumbs"]
        evaluations: dict[str, tuple[dict[str, float], dict[str, float]]] = {BASE_VERSION: ({}, {})}
        for arm, (data, method) in arms.items():
            config = TrainingConfig(method=method, epochs=args.epochs, seed=args.seed, batch_size=4, max_length=160)
            with report.stage(f"export and train {arm} ({method})"):
                async with open_service(settings_for(data, args), with_model=False) as service:
                    async def export(folder: Path, service: DraftService = service) -> Any:
                        return await service.export(folder)
                    trained = await service.versions.train(arm.replace("+", "-"), config, export=export,
                                                           on_progress=lambda p: print(f"\r{p.line()}\033[K", end="",
                                                                                       file=sys.stderr))
            print(file=sys.stderr)
            evaluations[arm] = (trained.evaluation.scores[trained.version.name],
                                trained.evaluation.scores[BASE_VERSION])
            print(f"{arm}: {trained.version.method}, {trained.version.hyperparameters['steps']} steps, "
                  f"evaluation rows {trained.evaluation.rows}")
        scored: list[Scored] = []
        for version, data in ((BASE_VERSION, thumbs_data), ("thumbs", thumbs_data), ("thumbs+improved", improved_data)):
            if version not in evaluations:
                continue
            if version != BASE_VERSION:  # served before the engine starts: it loads this version only
                async with open_service(settings_for(data, args), with_model=False) as service:
                    await service.versions.serve(version.replace("+", "-"), by="bench")
            with report.stage(f"{args.fresh} fresh drafts by {version}"):
                async with open_service(settings_for(data, args)) as service:
                    texts, products = await fresh_drafts(service, args.fresh, random.Random(args.seed + 1),
                                                         args.concurrency)
            scored.append(Scored(version, texts, products, *evaluations[version]))
        live = ""
        if args.live_max:
            with report.stage("live experiment: base vs thumbs+improved"):
                async with open_service(settings_for(improved_data, args)) as service:
                    live = await live_experiment(service, "thumbs-improved", args, random.Random(args.seed + 2))
        print_table(scored, report)
        minutes = (time.perf_counter() - started) / 60
        rates = {s.version: s.rate.percent() for s in scored}
        print(f"loop: base {rates[BASE_VERSION]}, thumbs {rates.get('thumbs', '—')}, "
              f"thumbs+improved {rates['thumbs+improved']}, {args.fresh} fresh prompts, {minutes:.1f} min")
        if live:
            print(live)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            progress(f"kept {root}")


def print_table(scored: Sequence[Scored], report: Report) -> None:
    base = scored[0]
    print()
    print("| version | fresh drafts | approved (Wilson 95 %) | mean words | distinct drafts | distinct bigrams "
          "(÷ base) | held-out SFT loss (base) | DPO pairs ranked right (base) | KTO gap (base) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in scored:
        def cell(key: str, shape: str = "{:.3f}", s: Scored = s) -> str:
            if key not in s.evaluation:
                return "—"
            return f"{shape.format(s.evaluation[key])} ({shape.format(s.base_evaluation[key])})"
        print(f"| {s.version} | {len(s.texts)} | {s.rate.percent()} | {s.mean_words():.1f} | {100 * s.distinct_drafts():.0f}% | "
              f"{100 * s.distinct_bigrams():.0f}% ({s.distinct_bigrams() / max(base.distinct_bigrams(), 1e-9):.2f}) | "
              f"{cell('sft_loss')} | {cell('dpo_accuracy', '{:.0%}')} | {cell('kto_gap')} |")
    print()
    print("| stage | time | peak RSS |")
    print("| --- | ---: | ---: |")
    for stage in report.stages:
        print(f"| {stage.name} | {stage.seconds / 60:.1f} min | {stage.peak_rss_mb:.0f} MB |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=120, help="ad requests the team makes on the base")
    parser.add_argument("--regenerate", type=float, default=0.5, help="share of rejected drafts regenerated once")
    parser.add_argument("--fresh", type=int, default=64, help="fresh products each version drafts for")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--thumbs-method", default="sft", choices=("sft", "dpo", "kto", "sft+dpo"))
    parser.add_argument("--improved-method", default="sft", choices=("sft", "dpo", "kto", "sft+dpo"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--improved-only", action="store_true", help="train and score the thumbs+improved arm only")
    parser.add_argument("--live-max", type=int, default=480,
                        help="most drafts the live experiment writes before it stops without a winner (0: no live stage)")
    parser.add_argument("--live-round", type=int, default=32, help="drafts per round between two looks at the verdict")
    parser.add_argument("--chart", type=Path, default=Path("loop-experiment.png"), help="where the live stage's chart goes")
    parser.add_argument("--keep", action="store_true", help="keep the data folders (printed at the end)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
