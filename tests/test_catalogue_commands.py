"""A task is one catalogue entry: adding one (here, only for the test) adds its Discord command, its
console command and its CLI subcommand, with no other code touched."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.console import Console
from bot.discord.client import publish_commands
from bot.discord.commands import task_commands
from bot.service import DraftService, Member
from generation import TASKS, Field, Task
from generation.sampling import Sampling
from support.discord_harness import EPHEMERAL, start_bot, stop_bot
from support.fake_discord import FakeDiscord

NEWSLETTER = Task(
    name="newsletter",
    command="/write newsletter",
    description="A newsletter issue for subscribers.",
    fields=(
        Field("topic", "what this issue is about", max_chars=120),
        Field("frequency", "how often it goes out", max_chars=10, required=False, default="weekly",
              choices=("weekly", "monthly")),
        Field("sign_off", "the closing line", max_chars=80, required=False, default="Until next time"),
    ),
    system_prompt="You write friendly newsletters. Do not explain what you are doing.",
    template="Write a {frequency} newsletter issue about {topic}, ending with: {sign_off}",
    template_version="newsletter-v1",
    sampling=Sampling(max_new_tokens=120, temperature=0.7, top_p=0.9, top_k=50),
)

EXPECTED_OPTIONS = [
    {"type": 3, "name": "topic", "description": "What this issue is about", "required": True,
     "min_length": 1, "max_length": 120},
    {"type": 3, "name": "frequency", "description": "How often it goes out", "required": False,
     "choices": [{"name": "weekly", "value": "weekly"}, {"name": "monthly", "value": "monthly"}]},
    {"type": 3, "name": "sign_off", "description": "The closing line", "required": False,
     "min_length": 1, "max_length": 80},
]


@pytest.fixture
def newsletter(monkeypatch: pytest.MonkeyPatch) -> Task:
    monkeypatch.setitem(TASKS, NEWSLETTER.name, NEWSLETTER)
    return NEWSLETTER


def _options(command: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of each option the test compares (Discord's answer adds localisation and the like)."""
    keys = ("type", "name", "description", "required", "min_length", "max_length", "choices")
    return [{key: option[key] for key in keys if option.get(key) is not None} for option in command["options"]]


async def test_a_new_task_is_a_slash_command_with_its_options_limits_and_choices(
    fake: FakeDiscord, service: DraftService, newsletter: Task
) -> None:
    bot, running = await start_bot(fake, service)
    try:
        write = next(c for c in bot.tree.get_commands() if c.name == "write").to_dict(bot.tree)
        on_tree = next(option for option in write["options"] if option["name"] == "newsletter")
        assert on_tree["description"] == newsletter.description and _options(on_tree) == EXPECTED_OPTIONS

        await publish_commands(fake.token)
        published = fake.command("write")
        assert published is not None
        assert [option["name"] for option in published["options"]] == ["blog", "newsletter"]
        assert _options(published["options"][1]) == EXPECTED_OPTIONS

        # The command is wired to its task: a blank topic gets the catalogue's own rule, privately.
        blank = await fake.invoke_command("write", {"topic": "   ", "frequency": "monthly"}, subcommand="newsletter")
        answer = await blank.wait_for_response()
        assert answer["data"]["flags"] == EPHEMERAL
        assert answer["data"]["content"] == "⚠️ topic is required for /write newsletter: what this issue is about"
    finally:
        await stop_bot(bot, running)


async def test_a_new_task_is_a_console_command(service: DraftService, newsletter: Task) -> None:
    out = io.StringIO()

    async def no_input(prompt: str) -> str | None:
        return None

    console = Console(service, Member("console:test"), out, no_input)
    await console.handle('/write newsletter topic:"  " frequency:monthly')
    await console.handle("/write newsletter topic:tides frequency:daily")
    await console.handle("/help")
    assert out.getvalue().splitlines()[:2] == [
        "error: topic is required for /write newsletter: what this issue is about",
        "error: frequency must be one of weekly, monthly (got 'daily')",
    ]
    assert '/write newsletter topic:"…" [frequency:…] [sign_off:…]' in out.getvalue().splitlines()


def test_a_description_discord_would_refuse_is_refused_when_the_bot_is_built() -> None:
    wordy = replace(NEWSLETTER, fields=(Field("topic", "x" * 101, max_chars=120),))
    with pytest.raises(ValueError, match="1 to 100 characters"):
        task_commands([wordy])


def test_a_new_task_is_a_cli_subcommand(newsletter: Task) -> None:
    runner = CliRunner()
    listing = runner.invoke(main, ["draft", "--help"])
    assert listing.exit_code == 0 and "newsletter" in listing.output and newsletter.description in listing.output
    help_text = runner.invoke(main, ["draft", "newsletter", "--help"], terminal_width=200)
    assert help_text.exit_code == 0, help_text.output
    assert "what this issue is about; at most 120 characters (required)" in help_text.output
    assert "how often it goes out; at most 10 characters; one of weekly, monthly; default: weekly" in help_text.output
    assert "--sign_off TEXT" in help_text.output
