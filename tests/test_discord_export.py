"""`/export` end to end: the real bot against the fake Discord, a real SQLite file, the zip as Discord received it."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import ExportSettings
from bot.discord.client import CopydeskBot, publish_commands
from bot.service import DraftService
from storage import Repository
from support.discord_harness import EPHEMERAL, start_bot, stop_bot
from support.fake_discord import FakeDiscord

DEFERRED = 5


async def seed(repository: Repository, guild_id: str) -> None:
    """Rated drafts in this server by a consenting member, and one in another server."""
    await repository.set_consent("author", True)
    for index, guild in enumerate((guild_id, guild_id, guild_id, "another-server")):
        draft = await repository.create_draft(
            task="ad", inputs={"product": f"lamp {index}", "audience": "campers"}, system_prompt="You write ads.",
            user_prompt=f"Write an ad for lamp {index}.", template_version="ad-v1", model="SmolLM2-135M-Instruct",
            quantization="nf4", sampling={"temperature": 0.7}, seed=0, author_id="author", guild_id=guild)
        where = "camp" if guild == guild_id else "another-server"
        await repository.finish_draft(draft.id, output=f"Lamp {index} lights the {'night' if index else 'way'} in {where}.",
                                      prompt_tokens=5, completion_tokens=5, latency_ms=1, ttft_ms=1)
        await repository.rate(draft.id, "rater", 1 if index != 1 else -1)


async def run_export(fake: FakeDiscord, user: str, **options: Any) -> dict[str, Any]:
    """Invoke /export and return the message that answers it (the deferred one, filled in)."""
    interaction = await fake.invoke_command("export", options, user=fake.guild.member(user))
    response = await interaction.wait_for_response()
    if response["type"] != DEFERRED:
        return response["data"]
    assert response["data"]["flags"] == EPHEMERAL and interaction.response_delay < 3
    return await interaction.wait_for_original(lambda message: bool(message["content"]), timeout=60)


def zipped_files(fake: FakeDiscord, message: dict[str, Any]) -> dict[str, str]:
    [attachment] = message["attachments"]
    assert attachment["filename"] == "copydesk-export.zip"
    with zipfile.ZipFile(io.BytesIO(fake.attachment_data[attachment["id"]])) as archive:
        return {name: archive.read(name).decode("utf-8", "replace") for name in archive.namelist()}


async def test_a_moderator_gets_this_servers_dataset_zipped_and_others_are_refused(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    await publish_commands(fake.token, fake.guild.id)
    guild_id = str(fake.guild.id)
    await seed(repository, guild_id)

    refusal = await run_export(fake, "alice")
    assert refusal["content"] == "⚠️ Only moderators can do that." and refusal["flags"] == EPHEMERAL

    message = await run_export(fake, "mia")
    assert message["flags"] & EPHEMERAL
    assert "- kto: 3 rows" in message["content"] and "- kto labels: 2 good, 1 bad" in message["content"]
    files = zipped_files(fake, message)
    assert {"README.md", "sft-train.jsonl", "sft-test.jsonl", "dpo-train.jsonl", "kto-train.jsonl", "raw-train.jsonl",
            "raw-train.parquet", "raw-test.parquet"} <= set(files)
    kto = [json.loads(line) for name in ("kto-train.jsonl", "kto-test.jsonl") for line in files[name].splitlines()]
    assert sorted(row["label"] for row in kto) == [False, True, True]
    text = "".join(files[name] for name in files if not name.endswith(".parquet"))
    assert "another-server" not in text, "a moderator exports only the server they are in"
    assert guild_id not in text and all(row["metadata"]["author"].startswith("m_") for row in kto)

    only_sft = await run_export(fake, "mia", format="sft", min_rating=0.9, test_fraction=0.0)
    assert sorted(zipped_files(fake, only_sft)) == ["README.md", "sft-test.jsonl", "sft-train.jsonl"]
    assert "- sft: 2 rows (2 train, 0 test)" in only_sft["content"]

    bad_date = await run_export(fake, "mia", since="last week")
    assert bad_date["content"] == "⚠️ since: write a date as YYYY-MM-DD, e.g. 2026-11-01 (got 'last week')"


async def test_a_dataset_over_the_servers_upload_limit_points_to_the_cli(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    await seed(repository, str(fake.guild.id))
    fake.attachment_size_limit = 2000
    message = await run_export(fake, "mia", task="ad", since="2020-01-01")
    assert not message["attachments"]
    assert "over the 2 KB this server can receive here" in message["content"]
    assert (f"`copydesk export --out dataset --guild {fake.guild.id} --since 2020-01-01 --task ad`"
            in message["content"])
    assert not fake.violations, "the bot never tried to upload what Discord would refuse"


@pytest.fixture
async def strict_bot(fake: FakeDiscord, service: DraftService) -> AsyncIterator[CopydeskBot]:
    running, task = await start_bot(fake, service, exports=ExportSettings(discord_attachment_mb=0.001))
    yield running
    await stop_bot(running, task)


async def test_the_configured_attachment_limit_applies_under_discords(
    fake: FakeDiscord, strict_bot: CopydeskBot, repository: Repository
) -> None:
    await seed(repository, str(fake.guild.id))
    message = await run_export(fake, "mia", format="raw")
    assert not message["attachments"] and "copydesk export --out dataset --guild" in message["content"]
    assert "--format raw" in message["content"]


async def test_the_export_says_how_many_drafts_each_rule_left_out(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    guild_id = str(fake.guild.id)
    await seed(repository, guild_id)
    draft = await repository.create_draft(
        task="ad", inputs={"product": "tent"}, system_prompt="You write ads.", user_prompt="Write an ad for a tent.",
        template_version="ad-v1", model="SmolLM2-135M-Instruct", quantization="nf4", sampling={}, seed=0,
        author_id="never-chose", guild_id=guild_id)
    await repository.finish_draft(draft.id, output="A tent.", prompt_tokens=1, completion_tokens=1, latency_ms=1,
                                  ttft_ms=1)
    message = await run_export(fake, "mia", format="raw")
    assert "- left out: 1 draft (1 no consent)\nTraining use is opt-in: members allow it with `/privacy show`." \
           in message["content"], "the draft of another server is not counted"
    card = zipped_files(fake, message)["README.md"]
    assert "| no consent | 1 |" in card and "| outside the filters | 0 |" in card
