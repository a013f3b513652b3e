"""Load: many members using the real bot at once, through the fake Discord, on loopback.

50 members issue 200 drafting commands (/draft ad, /write blog, /summarize) and 1000 button
clicks (👍 / 👎 on finished drafts) spread over one minute, against the real discord.py client,
the real engine on the embedded model and a real SQLite file. The fake Discord times every
interaction from its creation to the bot's callback, as Discord does for its 3 s rule; it runs
on the bot's own event loop, so anything that blocks the loop delays it too.

At the end it waits (with a bound) for the queue to drain, cancels what is still unfinished, and
accounts for every command: completed, refused with a reason (a limit), failed, held, cancelled,
or vanished (no answer at all, which must stay 0). Ratings must count exactly once per member
and draft: rows stored == distinct (member, draft) pairs clicked. discord.py's gateway warnings
("heartbeat blocked", "Can't keep up") are counted. Then a burst: `--burst` other members click
👍 on one finished draft within one second; each must be answered within Discord's 3 s, none with
an apology, and each counted once. The result is a Markdown table on stdout.

    .venv/bin/python bench/load.py [--members 50] [--commands 200] [--clicks 1000] [--window 60] [--burst 300]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import EngineSettings, ModerationSettings
from bot.discord.drafting import HELD
from bot.service import DraftService, Policy
from generation import EngineConfig, LocalEngine, resolve_model
from storage import Repository, open_database
from support.discord_harness import finished, start_bot, stop_bot
from support.fake_discord import FakeDiscord, Interaction
from support.loop_lag import LoopLag

DISCORD_WINDOW_S = 3.0
DRAFT_HEADER = re.compile(r"-# draft #(\d+) ")
COMMANDS: tuple[tuple[str, str | None, dict[str, str]], ...] = (
    ("draft", "ad", {"product": "a reusable steel water bottle", "audience": "hikers", "tone": "bold"}),
    ("write", "blog", {"topic": "starting a vegetable garden on a balcony", "length": "short"}),
    ("summarize", None, {"text": "The council voted to turn the old freight yard into a park with a playground, "
                                 "a community garden and four hundred trees. Work starts next spring."}),
    ("draft", "ad", {"product": "handmade dark chocolate", "audience": "gift shoppers", "tone": "luxurious"}),
)


class GatewayWarnings(logging.Handler):
    """discord.py's signs of a blocked event loop, counted as they are logged."""

    SIGNS = ("heartbeat blocked", "Can't keep up", "stopped responding")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(sign in message for sign in self.SIGNS):
            self.seen.append(message.splitlines()[0])


@dataclass
class Outcomes:
    commands: list[Interaction] = field(default_factory=list)
    clicks: list[Interaction] = field(default_factory=list)
    burst: list[Interaction] = field(default_factory=list)
    clicked_pairs: set[tuple[str, int]] = field(default_factory=set)  # (member id, draft id) of answered ratings


def outcome(interaction: Interaction) -> str | None:
    """How a drafting command ended, from what the member sees; None while it has not ended."""
    message = interaction.original
    notes = [m["content"] for m in interaction.followups]
    if message is None and any(note.startswith("⚠️") for note in notes):
        return "refused"
    if any(note.startswith("Sorry") for note in notes):
        return "error"
    if message is None:
        return None
    content = message["content"]
    if finished(message):
        return "completed"
    if "⚠️ This draft failed" in content:
        return "failed"
    if "*Cancelled.*" in content:
        return "cancelled"
    if HELD in content and not message["components"]:
        return "held"
    return None


def answer(click: Interaction) -> str:
    """What the member read: the reply itself, or the private message that filled in a deferred one."""
    if click.response_type == 4:
        return str(click.response["data"].get("content") or "")  # type: ignore[index]
    return str((click.original or {}).get("content") or "")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def draft_id_of(message: dict[str, Any]) -> int | None:
    """From the reply's header, "-# draft #12 · ad · …"."""
    found = DRAFT_HEADER.match(message["content"])
    return int(found[1]) if found else None


async def issue_commands(fake: FakeDiscord, members: list[Any], args: argparse.Namespace, rng: random.Random,
                         out: Outcomes) -> None:
    start = time.monotonic()
    times = sorted(rng.uniform(0, args.window) for _ in range(args.commands))
    for i, at in enumerate(times):
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        name, subcommand, options = COMMANDS[i % len(COMMANDS)]
        out.commands.append(await fake.invoke_command(name, options, subcommand=subcommand, user=rng.choice(members)))


async def click_buttons(fake: FakeDiscord, members: list[Any], args: argparse.Namespace, rng: random.Random,
                        out: Outcomes) -> None:
    """Rate finished drafts at random: members click 👍 or 👎, often more than once on the same draft.

    The clicks' minute starts with the first finished draft (there is nothing to click before), so
    they do not pile up into one artificial burst.
    """
    def shown() -> list[dict[str, Any]]:
        return [i.original for i in out.commands if i.original and finished(i.original)]

    await fake.wait_for(shown, timeout=args.drain)
    start = time.monotonic()
    times = sorted(rng.uniform(0, args.window) for _ in range(args.clicks))
    for at in times:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        done = shown()
        message = rng.choice(done[-20:])  # recent drafts, where a team's attention is
        vote = rng.choice(("up", "down"))
        out.clicks.append(await fake.click_button(message, f"copydesk:rate:{draft_id_of(message)}:{vote}",
                                                  user=rng.choice(members)))


async def click_at_once(fake: FakeDiscord, members: list[Any], message: dict[str, Any], out: Outcomes) -> None:
    """Every one of `members` clicks 👍 on `message` within one second."""
    custom_id = f"copydesk:rate:{draft_id_of(message)}:up"
    spread_s = 1.0 / max(1, len(members))
    for member in members:
        out.burst.append(await fake.click_button(message, custom_id, user=member))
        await asyncio.sleep(spread_s)


async def run_load(args: argparse.Namespace, engine: LocalEngine) -> dict[str, Any]:
    """The scenario; `engine` is shared so the test suite can run a small one on its own engine."""
    rng = random.Random(args.seed)
    warnings = GatewayWarnings()
    logging.getLogger("discord.gateway").addHandler(warnings)
    with tempfile.TemporaryDirectory() as folder:
        database_path = Path(folder) / "copydesk.sqlite3"
        database = await open_database(f"sqlite+aiosqlite:///{database_path}")
        repository = Repository(database)
        # The production limits; personal-data checks off, so sampled digits do not hold drafts at random.
        policy = Policy(engine=EngineSettings(max_new_tokens=args.max_new_tokens), member_key=b"load",
                        moderation=ModerationSettings(detect_personal_data=False))
        service = DraftService(repository, engine, policy)
        out = Outcomes()
        target: dict[str, Any] | None = None
        burst_sent_s = 0.0
        try:
            async with FakeDiscord(heartbeat_interval=args.heartbeat, interaction_response_window=args.response_window) as fake:
                members = [fake.guild.add_member(f"member{i}") for i in range(args.members)]
                bursting = [fake.guild.add_member(f"burst{i}") for i in range(args.burst)]
                bot, task = await start_bot(fake, service)
                began = time.monotonic()
                async with LoopLag() as lag:
                    await asyncio.gather(issue_commands(fake, members, args, rng, out),
                                         click_buttons(fake, members, args, rng, out))
                sent_s = time.monotonic() - began
                try:
                    await fake.wait_for(lambda: all(outcome(i) for i in out.commands)
                                        and all(c.response for c in out.clicks), timeout=args.drain)
                except TimeoutError:
                    pass
                drained_s = time.monotonic() - began
                target = next((i.original for i in out.commands if i.original and finished(i.original)), None)
                if target is not None and bursting:
                    burst_began = time.monotonic()
                    await click_at_once(fake, bursting, target, out)
                    burst_sent_s = time.monotonic() - burst_began
                    try:
                        await fake.wait_for(lambda: all(c.response for c in out.burst), timeout=args.drain)
                    except TimeoutError:
                        pass
                unfinished = [i for i in out.commands if outcome(i) is None]
                for interaction in unfinished:  # the clean ending: what is still waiting is stopped and marked
                    draft_id = draft_id_of(interaction.original or {"content": ""})
                    if draft_id is not None:
                        service.cancel(draft_id)
                await fake.wait_for(lambda: all(outcome(i) for i in unfinished), timeout=60)
                await stop_bot(bot, task)
                fake.assert_all_requests_valid()
        finally:
            await database.close()
            logging.getLogger("discord.gateway").removeHandler(warnings)
        with sqlite3.connect(database_path) as connection:
            statuses = dict(connection.execute("SELECT status, count(*) FROM drafts GROUP BY status").fetchall())
            ratings = connection.execute("SELECT count(*) FROM ratings").fetchone()[0]
            duplicate_ratings = connection.execute(
                "SELECT count(*) FROM (SELECT 1 FROM ratings GROUP BY draft_id, member_id HAVING count(*) > 1)").fetchone()[0]
        burst_draft = draft_id_of(target) if target is not None else None
        burst_ratings = connection.execute("SELECT count(*) FROM ratings WHERE draft_id = ? AND member_id IN "
                                           f"({','.join('?' * len(out.burst)) or 'NULL'})",
                                           [burst_draft, *(str(c.user.user.id) for c in out.burst)]).fetchone()[0]
    thanked = [c for c in out.clicks if "Thanks!" in answer(c)]
    pairs = {(c.user.user.id, int(c.payload["data"]["custom_id"].split(":")[2])) for c in thanked}
    defer_s = [i.response_delay for i in out.commands if i.response_delay is not None]
    click_s = [c.response_delay for c in out.clicks if c.response_delay is not None]
    return {
        "outcomes": Counter(outcome(i) or "vanished" for i in out.commands), "statuses": statuses,
        "defer_s": defer_s, "click_s": click_s, "late": sum(d > DISCORD_WINDOW_S for d in defer_s + click_s),
        "unanswered": sum(i.response is None for i in out.commands + out.clicks), "cancelled_at_end": len(unfinished),
        "commands": len(out.commands), "clicks": len(out.clicks), "thanked": len(thanked), "pairs": len(pairs), "ratings": ratings,
        "duplicate_ratings": duplicate_ratings, "lag_ms": lag.samples_ms, "warnings": warnings.seen,
        "sent_s": sent_s, "drained_s": drained_s,
        "burst": len(out.burst), "burst_sent_s": burst_sent_s,
        "burst_s": [c.response_delay for c in out.burst if c.response_delay is not None],
        "burst_thanked": sum("Thanks!" in answer(c) for c in out.burst),
        "burst_apologies": sum(answer(c).startswith("Sorry") for c in out.burst),
        "burst_unanswered": sum(c.response is None for c in out.burst), "burst_ratings": burst_ratings,
    }


def render(args: argparse.Namespace, result: dict[str, Any]) -> str:
    outcomes, defer_s, click_s = result["outcomes"], result["defer_s"], result["click_s"]
    rows = [
        ("members · commands · clicks sent", f"{args.members} · {result['commands']} · {result['clicks']} "
                                            f"in {result['sent_s']:.0f} s"),
        ("commands deferred within 3 s", f"{sum(d <= DISCORD_WINDOW_S for d in defer_s)} / {args.commands}"),
        ("defer time p50 / p99 / max", f"{statistics.median(defer_s) * 1000:.0f} / {percentile(defer_s, 0.99) * 1000:.0f} / "
                                       f"{max(defer_s) * 1000:.0f} ms"),
        ("click answer p50 / p99 / max", f"{statistics.median(click_s) * 1000:.0f} / {percentile(click_s, 0.99) * 1000:.0f}"
                                         f" / {max(click_s) * 1000:.0f} ms" if click_s else "—"),
        ("interactions answered late (> 3 s) / never", f"{result['late']} / {result['unanswered']}"),
        ("drafts completed", str(outcomes["completed"])),
        ("refused with a reason (limits)", str(outcomes["refused"])),
        ("failed · held · cancelled (of which at the end)",
         f"{outcomes['failed']} · {outcomes['held']} · {outcomes['cancelled']} ({result['cancelled_at_end']})"),
        ("vanished (no outcome) · our errors", f"{outcomes['vanished']} · {outcomes['error']}"),
        ("stored drafts by status", ", ".join(f"{count} {status}" for status, count in sorted(result["statuses"].items()))),
        ("ratings stored / distinct (member, draft) clicked / clicks answered",
         f"{result['ratings']} / {result['pairs']} / {result['thanked']}"),
        ("duplicate ratings", str(result["duplicate_ratings"])),
        ("gateway warnings (heartbeat blocked, can't keep up)", str(len(result["warnings"]))),
        ("event-loop lag while sending, p50 / p99 / max",
         f"{statistics.median(result['lag_ms']):.1f} / {percentile(result['lag_ms'], 0.99):.1f} / {max(result['lag_ms']):.0f} ms"),
        ("all answered after", f"{result['drained_s']:.0f} s"),
        ("burst: clicks on one draft, sent within", f"{result['burst']} in {result['burst_sent_s']:.1f} s"),
        ("burst: answered within 3 s / late / never / apologies",
         f"{sum(d <= DISCORD_WINDOW_S for d in result['burst_s'])} / {sum(d > DISCORD_WINDOW_S for d in result['burst_s'])}"
         f" / {result['burst_unanswered']} / {result['burst_apologies']}"),
        ("burst: answer p50 / p99 / max", f"{statistics.median(result['burst_s']) * 1000:.0f} / "
                                          f"{percentile(result['burst_s'], 0.99) * 1000:.0f} / "
                                          f"{max(result['burst_s']) * 1000:.0f} ms" if result["burst_s"] else "—"),
        ("burst: ratings stored / clicks thanked", f"{result['burst_ratings']} / {result['burst_thanked']}"),
    ]
    head = (f"{args.members} members, {args.commands} commands and {args.clicks} clicks over {args.window:g} s; "
            f"drafts of at most {args.max_new_tokens} tokens, engine batch {args.max_concurrent}, production limits")
    return "\n".join([head, "", "| measure | value |", "| --- | ---: |", *(f"| {a} | {b} |" for a, b in rows)])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--clicks", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which commands and clicks are spread")
    parser.add_argument("--burst", type=int, default=300, help="members who click 👍 on one draft within one second")
    parser.add_argument("--drain", type=float, default=240.0, help="seconds to wait for the queue to drain")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--max-concurrent", type=int, default=16)
    parser.add_argument("--heartbeat", type=float, default=5.0, help="the fake gateway's heartbeat interval, s")
    parser.add_argument("--response-window", type=float, default=DISCORD_WINDOW_S,
                        help="seconds the fake accepts an interaction's first answer in (Discord: 3)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/copydesk").expanduser())
    return parser.parse_args(argv)


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    engine = await LocalEngine.start(resolve_model("", args.cache_dir), device=args.device,
                                     config=EngineConfig(max_concurrent=args.max_concurrent, max_context_tokens=1024))
    try:
        return await run_load(args, engine)
    finally:
        await engine.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    print(render(args, asyncio.run(run_bench(args))))


if __name__ == "__main__":
    main()
