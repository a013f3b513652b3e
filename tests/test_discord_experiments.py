"""`/experiment` end to end: the real bot against the fake Discord, a real SQLite file, the real embedded model."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.charts import SIZE_PX
from bot.discord.client import CopydeskBot, publish_commands
from bot.service import DraftService, Policy
from generation import Engine, LocalEngine
from generation.served_versions import ServedVersions
from storage import BASE_VERSION, Repository
from support.discord_harness import EPHEMERAL, run_command
from support.fake_discord import FakeDiscord
from test_experiments import register


class Borrowed:
    """The session's embedded engine, standing in for a version whose row has no weights; closing it leaves
    the engine open for the other tests."""

    def __init__(self, engine: LocalEngine) -> None:
        self.info, self.stream, self.cancel, self.load = engine.info, engine.stream, engine.cancel, engine.load

    async def close(self) -> None:
        return None


@pytest.fixture
def service(repository: Repository, engine: LocalEngine, policy: Policy) -> DraftService:
    """Version v2 drafts with the base model: what these tests check is which variant each draft goes to."""
    async def open_version(name: str) -> Engine:
        return Borrowed(engine)
    return DraftService(repository, ServedVersions(BASE_VERSION, engine, open_version), policy)


async def moderator_says(fake: FakeDiscord, subcommand: str, options: dict[str, Any], user: str = "mia") -> str:
    interaction = await fake.invoke_command("experiment", options, subcommand=subcommand, user=fake.guild.member(user))
    response = await interaction.wait_for_response()
    if response["type"] != 5:  # answered at once, not deferred
        return str(response["data"]["content"])
    assert response["data"]["flags"] == EPHEMERAL
    message = await interaction.wait_for_original(lambda message: bool(message["content"]), timeout=60)
    return str(message["content"])


async def test_moderators_run_a_blind_experiment_and_promote_its_winner(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository, tmp_path: Path
) -> None:
    await publish_commands(fake.token, fake.guild.id)
    await register(repository, "v2")
    both = {"task": "summary", "variant_a": "model=base", "variant_b": "model=v2"}
    assert await moderator_says(fake, "start", both, user="alice") == "⚠️ Only moderators can do that."
    assert (await moderator_says(fake, "start", {**both, "variant_b": "model v2"})).startswith(
        "⚠️ cannot read the variant 'model v2'")
    started = await moderator_says(fake, "start", {**both, "assignment": "member"})
    assert started.splitlines()[1:] == ["A = model base, template summary-v1, share 1",
                                        "B = model v2, template summary-v1, share 1",
                                        "Members are not told which variant wrote their draft."]
    assert (await moderator_says(fake, "start", both)).startswith("⚠️ an experiment already runs on 'summary'")

    headers = []
    for _ in range(2):
        _, message = await run_command(fake, "summarize", {"text": "Tea is a drink made from leaves."})
        headers.append(message["content"].split("\n")[0])
    assert all(header.endswith("· experiment #1") and "version" not in header for header in headers)
    with sqlite3.connect(tmp_path / "data" / "copydesk.sqlite3") as connection:
        assert len({row[0] for row in connection.execute("SELECT variant FROM drafts")}) == 1  # sticky per member

    interaction = await fake.invoke_command("experiment", {"task": "summary"}, subcommand="status",
                                            user=fake.guild.member("mia"))
    await interaction.wait_for_response()
    status = await interaction.wait_for_original(lambda message: bool(message["content"]), timeout=60)
    assert status["content"].startswith("experiment #1 on summary: started ")
    assert "verdict: nothing to compare" in status["content"] or "verdict: not enough yet" in status["content"]
    [attachment] = status["attachments"]
    chart = Image.open(io.BytesIO(fake.attachment_data[attachment["id"]]))
    chart.verify()
    assert (chart.format, chart.size) == ("PNG", SIZE_PX)

    promoted = await moderator_says(fake, "promote", {"task": "summary", "variant": "B"})
    assert promoted.startswith("**summary** now serves model `v2` with template `summary-v1` (variant B)")
    rolled = await moderator_says(fake, "rollback", {"task": "summary"})
    assert rolled == "**summary** now serves model `base` with template `summary-v1`."
    mia = str(fake.guild.member("mia").user.id)
    with sqlite3.connect(tmp_path / "data" / "copydesk.sqlite3") as connection:
        assert [row for row in connection.execute("SELECT moderator_id, action FROM moderation_actions")] == [
            (mia, "start-experiment"), (mia, "promote-experiment"), (mia, "rollback-task")]
