"""`/templates` end to end: real discord.py against the fake Discord, the real model, a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.discord.client import CopydeskBot
from conftest import rows
from generation import TASKS
from generation.templates import BrandVoice
from support.discord_harness import DEFERRED, EPHEMERAL, custom_ids
from support.fake_discord import FakeDiscord

MODAL = "copydesk:template-modal:ad"
ONLY_MODERATORS = "⚠️ Only moderators can do that."
GOOD = {"system": "You write ads for a small workshop. One headline, two sentences.",
        "template": "An ad for {product}, for {audience}, in a {tone} voice.",
        "tone": "warm, direct", "words": "use: handmade\nnever: cheap, deal", "sample": "Made slowly, to last."}


def text_inputs(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The text inputs of a modal, whether discord.py wraps them in action rows or labels."""
    for component in components:
        if component["type"] == 4:
            yield component
        yield from text_inputs(component.get("components", []))
        if "component" in component:
            yield from text_inputs([component["component"]])


async def open_form(fake: FakeDiscord, user: Any) -> dict[str, Any]:
    opened = await fake.invoke_command("templates", {"task": "ad"}, subcommand="new", user=user)
    return await opened.wait_for_response()


async def test_a_moderator_writes_previews_and_saves_a_version_and_members_are_refused(
        fake: FakeDiscord, bot: CopydeskBot, tmp_path: Path) -> None:
    alice, mia = fake.guild.member("alice"), fake.guild.member("mia")
    database = tmp_path / "data" / "copydesk.sqlite3"

    refused = await open_form(fake, alice)
    assert (refused["data"]["content"], refused["data"]["flags"]) == (ONLY_MODERATORS, EPHEMERAL)

    form = await open_form(fake, mia)
    assert form["type"] == 9 and form["data"]["custom_id"] == MODAL
    prefilled = {item["custom_id"]: item.get("value") for item in text_inputs(form["data"]["components"])}
    assert prefilled == {"system": TASKS["ad"].system_prompt, "template": TASKS["ad"].template, "tone": None,
                         "words": "use: \nnever: ", "sample": None}

    bad_template = "An ad for {product} by {brand}, for {audience}."
    bad = await fake.submit_modal(MODAL, {**GOOD, "template": bad_template}, user=mia)
    answer = (await bad.wait_for_response())["data"]
    assert answer["content"].startswith("⚠️ unknown placeholder {brand} for ad") and answer["flags"] == EPHEMERAL
    refusal = await bad.wait_for_original()
    [edit] = custom_ids(refusal)
    assert (await (await fake.click_button(refusal, edit, user=alice)).wait_for_response())["data"]["content"] \
        == ONLY_MODERATORS
    reopened = await (await fake.click_button(refusal, edit, user=mia)).wait_for_response()
    assert reopened["type"] == 9 and reopened["data"]["custom_id"] == MODAL
    kept = {item["custom_id"]: item.get("value") for item in text_inputs(reopened["data"]["components"])}
    assert kept == {**GOOD, "template": bad_template}  # nothing the moderator wrote is lost
    muddled = await fake.submit_modal(MODAL, {**GOOD, "words": "handmade"}, user=mia)
    assert "starts with neither" in (await muddled.wait_for_response())["data"]["content"]
    assert rows(database, "SELECT count(*) FROM template_versions") == [(0,)]

    muddled_answer = await muddled.wait_for_original()
    await (await fake.click_button(muddled_answer, custom_ids(muddled_answer)[0], user=mia)).wait_for_response()
    previewed = await fake.submit_modal(MODAL, GOOD, user=mia)
    assert (await previewed.wait_for_response())["type"] == DEFERRED
    [preview] = await fake.wait_for(lambda: previewed.followups or None, timeout=300)
    assert preview["flags"] & EPHEMERAL
    assert "Preview of a new ad prompt version" in preview["content"]
    assert "Never use these words: cheap, deal." in preview["content"]
    assert "Made slowly, to last." in preview["content"] and "Sample draft" in preview["content"]
    assert len(preview["content"]) <= 2000
    save, edit_previewed = custom_ids(preview)
    assert save.startswith("copydesk:template-save:") and edit_previewed.startswith("copydesk:template-edit:")
    assert rows(database, "SELECT count(*) FROM template_versions") == [(0,)]

    not_allowed = await fake.click_button(preview, save, user=alice)
    assert (await not_allowed.wait_for_response())["data"]["content"] == ONLY_MODERATORS
    assert rows(database, "SELECT count(*) FROM template_versions") == [(0,)]

    saved = await fake.click_button(preview, save, user=mia)
    assert (await saved.wait_for_response())["data"]["content"].startswith("Saved as **ad-v2**;")
    again = await fake.click_button(preview, save, user=mia)
    assert (await again.wait_for_response())["data"]["content"] == "⚠️ this preview was saved already, as ad-v2"
    assert rows(database, "SELECT name, task, system_prompt, template, brand_voice, created_by "
                          "FROM template_versions") == [
        ("ad-v2", "ad", GOOD["system"], GOOD["template"],
         '{"tone": ["warm", "direct"], "use": ["handmade"], "avoid": ["cheap", "deal"], '
         '"sample": "Made slowly, to last."}', str(mia.user.id))]
    assert rows(database, "SELECT guild_id, moderator_id, action, note FROM moderation_actions") == [
        (str(fake.guild.id), str(mia.user.id), "template-version", "ad-v2")]


async def test_moderators_list_and_show_versions(fake: FakeDiscord, bot: CopydeskBot) -> None:
    alice, mia = fake.guild.member("alice"), fake.guild.member("mia")
    await bot.require_service().templates.save("ad", GOOD["system"], GOOD["template"],
                                               BrandVoice(tone=("warm",), avoid=("cheap", "deal")), by=str(mia.user.id))

    listed = await fake.invoke_command("templates", {"task": "ad"}, subcommand="list", user=mia)
    lines = (await listed.wait_for_response())["data"]["content"].splitlines()
    assert [line.split(" — ")[0] for line in lines] == ["- `ad-v1` (built-in)", "- `ad-v2`"]

    shown = await fake.invoke_command("templates", {"name": "ad-v2"}, subcommand="show", user=mia)
    content = (await shown.wait_for_response())["data"]["content"]
    assert content.startswith("**ad-v2** (ad)") and "**Never use**: cheap, deal" in content
    missing = await fake.invoke_command("templates", {"name": "ad-v9"}, subcommand="show", user=mia)
    assert "no template version named 'ad-v9'" in (await missing.wait_for_response())["data"]["content"]

    for subcommand, options in (("list", {}), ("show", {"name": "ad-v2"})):
        refused = await fake.invoke_command("templates", options, subcommand=subcommand, user=alice)
        assert (await refused.wait_for_response())["data"]["content"] == ONLY_MODERATORS
