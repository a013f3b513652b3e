"""The bot as a process of its own, against the fake Discord: killed with SIGKILL at random points
(mid-stream, mid-write), stopped with SIGTERM, started twice. Nothing it acknowledged is lost, the
database stays sound, no draft stays running, and members hear about drafts that were interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot_process import BotProcess
from conftest import NO_AUTOMATIC_CHECKS_ENV, rows
from support.discord_harness import custom_ids, finished
from support.fake_discord import FakeDiscord
from support.fake_discord.model import Member

KILLS = 4
SEED = 20261128
UPDATE_MESSAGE = 7
MODAL = 9
MAX_DRAFTING = 3
LOGGED_AS = {"upheld": "uphold", "dismissed": "dismiss"}
LOAD_TIMEOUT_S = 180  # the model loads at every start: about 15 s on two busy cores


def bot_env(fake: FakeDiscord, tmp_path: Path, cache_dir: Path, **extra: str) -> dict[str, str]:
    return {"COPYDESK_STORAGE__DATA_DIR": str(tmp_path / "data"), "COPYDESK_MODEL__CACHE_DIR": str(cache_dir),
            "COPYDESK_MODEL__DEVICE": "cpu", "COPYDESK_ENGINE__MAX_NEW_TOKENS": "96",
            # One thread: on a busy machine two spinning OpenMP threads made generation ten times slower.
            "OMP_NUM_THREADS": "1",
            "COPYDESK_MODERATION__REVIEW_CHANNEL_ID": str(fake.guild.channel("moderation").id),
            **NO_AUTOMATIC_CHECKS_ENV, **extra}


async def start_and_connect(fake: FakeDiscord, bot: BotProcess) -> None:
    await fake.wait_for(lambda: not fake.gateway.connected.is_set(), timeout=30)  # the last one's socket is gone
    await bot.start()
    await fake.wait_until_connected(timeout=LOAD_TIMEOUT_S)


@dataclass
class Acknowledged:
    """What the bot confirmed to a member; each item is unique, so a stored row matches one confirmation."""

    ratings: dict[tuple[int, str], int] = field(default_factory=dict)  # (draft, member) → +1 / -1
    improvements: set[tuple[int, str, str]] = field(default_factory=set)
    flags: set[tuple[int, str, str]] = field(default_factory=set)
    decisions: dict[int, str] = field(default_factory=dict)  # flag id → "upheld" / "dismissed"


class Traffic:
    """Members drafting, rating, improving and flagging, and a moderator deciding flags, all at once."""

    def __init__(self, fake: FakeDiscord, rng: random.Random) -> None:
        self.fake, self.rng = fake, rng
        self.members = [fake.guild.member(name) for name in ["alice", *(f"member{i}" for i in range(10))]]
        self.moderator = fake.guild.member("mia")
        self.done: dict[int, dict[str, Any]] = {}  # draft id → its finished message
        self.tried: set[Any] = set()  # ratings and decisions already attempted: never two for one key
        self.acknowledged = Acknowledged()
        self.serial = 0
        self.drafting = 0  # drafts asked for and not finished yet: a few at a time, so some finish
        self.actions: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Start actions until cancelled; `stop` ends them (no TaskGroup: on Python 3.11 a cancelled
        group sometimes never finished once the bot was killed, leaving nothing to wake the loop)."""
        actions: list[Callable[[], Awaitable[None]]] = [self.draft, self.rate, self.improve, self.flag, self.decide]
        while True:
            action = self.rng.choices(actions, weights=[3, 5, 2, 2, 2])[0]
            task = asyncio.create_task(self._tolerating_death(action()))
            self.actions.add(task)
            task.add_done_callback(self.actions.discard)
            await asyncio.sleep(self.rng.uniform(0.05, 0.4))

    async def stop(self, running: asyncio.Task[None]) -> None:
        """Cancel the traffic and its actions, wait for them (at most 30 s), and raise what an action raised."""
        tasks = [running, *self.actions]
        for task in tasks:
            task.cancel()
        # An action still sending to the killed bot's socket is left behind: what it was doing was
        # never acknowledged, so the checks below do not count on it.
        done, _ = await asyncio.wait(tasks, timeout=30)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    async def _tolerating_death(self, action: Awaitable[None]) -> None:
        """A killed bot never answers (TimeoutError); an upheld draft has no buttons left (LookupError)."""
        with contextlib.suppress(TimeoutError, LookupError):
            await action

    def _pick(self) -> tuple[int, dict[str, Any], Member] | None:
        if not self.done:
            return None
        self.serial += 1
        draft_id = self.rng.choice(sorted(self.done))
        return draft_id, self.done[draft_id], self.rng.choice(self.members)

    async def draft(self) -> None:
        if self.drafting >= MAX_DRAFTING:
            return
        self.serial += 1
        self.drafting += 1
        try:
            options = {"product": f"lantern model {self.serial}", "audience": "campers", "tone": "playful"}
            interaction = await self.fake.invoke_command("draft", options, subcommand="ad",
                                                         user=self.rng.choice(self.members))
            message = await interaction.wait_for_original(finished, timeout=120)
        finally:
            self.drafting -= 1
        draft_id = int(re.search(r"copydesk:rate:(\d+):", str(custom_ids(message)))[1])
        self.done[draft_id] = message

    async def rate(self) -> None:
        if (picked := self._pick()) is None or ((key := (picked[0], str(picked[2].user.id))) in self.tried):
            return
        draft_id, message, member = picked
        self.tried.add(key)
        up = self.rng.random() < 0.5
        click = await self.fake.click_button(message, f"copydesk:rate:{draft_id}:{'up' if up else 'down'}", user=member)
        if content(await click.wait_for_response()).startswith("Thanks!"):
            self.acknowledged.ratings[key] = 1 if up else -1

    async def improve(self) -> None:
        await self._modal("improve", "text", "Saved your version", self.acknowledged.improvements)

    async def flag(self) -> None:
        await self._modal("flag", "reason", "is flagged for review", self.acknowledged.flags)

    async def _modal(self, action: str, field_id: str, confirmation: str, acknowledged: set[tuple[int, str, str]]) -> None:
        if (picked := self._pick()) is None:
            return
        draft_id, message, member = picked
        click = await self.fake.click_button(message, f"copydesk:{action}:{draft_id}", user=member)
        modal = await click.wait_for_response()
        if modal["type"] != MODAL:
            return
        text = f"{action} number {self.serial}"
        submitted = await self.fake.submit_modal(modal["data"]["custom_id"], {field_id: text}, user=member)
        if confirmation in content(await submitted.wait_for_response()):
            acknowledged.add((draft_id, str(member.user.id), text))

    async def decide(self) -> None:
        review = self.fake.channel_messages(self.fake.guild.channel("moderation"))
        open_flags = [(message, custom_id) for message in review for custom_id in custom_ids(message)
                      if custom_id.startswith("copydesk:mod:") and custom_id.rsplit(":", 1)[1] not in self.tried]
        if not open_flags:
            return
        message, custom_id = self.rng.choice(open_flags)
        verdict, flag_id = custom_id.split(":")[2:]
        self.tried.add(flag_id)
        click = await self.fake.click_button(message, custom_id, user=self.moderator)
        response = await click.wait_for_response()
        if response["type"] == UPDATE_MESSAGE and "✅" in content(response):
            self.acknowledged.decisions[int(flag_id)] = "upheld" if verdict == "uphold" else "dismissed"


def content(response: dict[str, Any]) -> str:
    return str(response.get("data", {}).get("content", ""))


def is_streaming(message: dict[str, Any]) -> bool:
    """The draft shows its first words (not its queue position) and is not finished."""
    return any(i.startswith("copydesk:cancel:") for i in custom_ids(message)) and "⏳" not in message["content"]


def streaming(fake: FakeDiscord) -> bool:
    return any(is_streaming(message) for message in fake.messages.values())


async def test_sigkill_at_random_points_loses_nothing_the_bot_acknowledged(
    fake: FakeDiscord, tmp_path: Path, cache_dir: Path
) -> None:
    rng = random.Random(SEED)
    bot = BotProcess(fake, tmp_path, bot_env(fake, tmp_path, cache_dir))
    traffic = Traffic(fake, rng)
    for _ in range(KILLS):
        await start_and_connect(fake, bot)
        running = asyncio.create_task(traffic.run())
        await fake.wait_for(lambda: traffic.done, timeout=120)  # something to rate, improve and flag
        await asyncio.sleep(rng.uniform(1.0, 5.0))
        await fake.wait_for(lambda: streaming(fake), timeout=120)  # so every kill lands mid-stream
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL
        await traffic.stop(running)

    await start_and_connect(fake, bot)  # recovers: marks, and announces, what the dead runs left
    running = asyncio.create_task(traffic.run())
    await asyncio.sleep(4)
    await traffic.stop(running)
    assert await bot.signal(signal.SIGTERM) == 0, bot.output()

    database = tmp_path / "data" / "copydesk.sqlite3"
    assert rows(database, "PRAGMA integrity_check") == [("ok",)]
    assert rows(database, "SELECT id FROM drafts WHERE status IN ('queued', 'running')") == []
    acknowledged = traffic.acknowledged
    assert acknowledged.ratings and acknowledged.improvements and acknowledged.flags and acknowledged.decisions
    stored_ratings = {(d, m): v for d, m, v in rows(database, "SELECT draft_id, member_id, value FROM ratings")}
    assert acknowledged.ratings.items() <= stored_ratings.items()
    assert acknowledged.improvements <= set(rows(database, "SELECT draft_id, member_id, text FROM improvements"))
    assert acknowledged.flags <= set(rows(database, "SELECT draft_id, member_id, reason FROM flags"))
    decided = dict(rows(database, "SELECT id, status FROM flags"))
    logged = set(rows(database, "SELECT flag_id, action FROM moderation_actions"))
    for flag_id, verdict in acknowledged.decisions.items():
        assert decided[flag_id] == verdict and (flag_id, LOGGED_AS[verdict]) in logged

    interrupted = rows(database, "SELECT id, channel_id, message_id FROM drafts WHERE status = 'interrupted'")
    assert len(interrupted) >= KILLS, "every kill landed while a draft was streaming"
    for draft_id, channel_id, message_id in interrupted:
        assert message_id is not None, f"the member of draft #{draft_id} was told"
        notice = fake.messages[int(message_id)]
        assert notice["channel_id"] == channel_id
        assert f"draft #{draft_id} ·" in notice["content"] and "Interrupted" in notice["content"]
    assert "Traceback" not in bot.output()


async def test_sigterm_refuses_new_drafts_interrupts_what_cannot_finish_and_closes_cleanly(
    fake: FakeDiscord, tmp_path: Path, cache_dir: Path
) -> None:
    env = bot_env(fake, tmp_path, cache_dir, COPYDESK_ENGINE__MAX_NEW_TOKENS="400",
                  COPYDESK_ENGINE__SHUTDOWN_GRACE_S="3")
    bot = BotProcess(fake, tmp_path, env)
    await start_and_connect(fake, bot)
    assert bot.process is not None
    database = tmp_path / "data" / "copydesk.sqlite3"

    second = BotProcess(fake, tmp_path, env, name="second")
    assert await asyncio.wait_for((await second.start()).wait(), timeout=120) == 1
    assert f"is in use by copydesk process {bot.process.pid}" in second.output()
    assert len(fake.gateway.connections) == 1, "the second bot never connected"

    first = await fake.invoke_command("write", {"topic": "a week on the coast path"}, subcommand="blog")
    await first.wait_for_original(is_streaming, timeout=120)

    # While the bot writes: a consistent backup; no overwriting it by accident; no restore under the bot's feet.
    backup = tmp_path / "backup.sqlite3"
    code, output = await bot.command("backup", str(backup))
    assert code == 0 and f"backed up the database (1 drafts) to {backup}" in output, output
    assert rows(backup, "PRAGMA integrity_check") == [("ok",)]
    assert len(rows(backup, "SELECT status FROM drafts")) == 1
    code, output = await bot.command("backup", str(backup))
    assert code == 1 and "already exists; pass --force to replace it" in output
    code, output = await bot.command("restore", "--yes", str(backup))
    assert code == 1 and f"is in use by copydesk process {bot.process.pid}" in output

    long = await fake.invoke_command("write", {"topic": "a month in the mountains"}, subcommand="blog")
    await long.wait_for_original(is_streaming, timeout=120)
    bot.process.send_signal(signal.SIGTERM)
    await fake.wait_for(lambda: "shutting down" in bot.output(), timeout=30)
    late = await fake.invoke_command("draft", {"product": "tea", "audience": "x"}, subcommand="ad")
    await fake.wait_for(lambda: any("restarting" in m["content"] for m in late.followups), timeout=30)
    assert late.original is None, "the thinking message was taken back"
    assert await asyncio.wait_for(bot.process.wait(), timeout=120) == 0, bot.output()
    assert not Path(f"{database}-wal").exists(), "the bot's last connection closed cleanly and checkpointed"

    notice = await long.wait_for_original(lambda m: "Interrupted" in m["content"], timeout=5)
    assert notice["components"] == []
    [(draft_id, status)] = rows(database, f"SELECT id, status FROM drafts WHERE message_id = '{notice['id']}'")
    assert status == "interrupted" and f"draft #{draft_id} ·" in notice["content"]
    assert rows(database, "SELECT id FROM drafts WHERE status NOT IN ('done', 'interrupted')") == []
    assert rows(database, "PRAGMA integrity_check") == [("ok",)]

    code, output = await bot.command("restore", "--yes", str(backup))
    assert code == 0 and f"restored 1 drafts from {backup}" in output, output
    assert rows(database, "SELECT count(*) FROM drafts") == [(1,)]
