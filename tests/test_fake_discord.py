"""The fake Discord works with the real discord.py client, and answers as Discord does.

A tiny bot defined here (a discord.Client with an app_commands.CommandTree) connects to the
fake and is driven through slash commands, a context menu, buttons and a modal; raw HTTP calls
check the answers discord.py itself would never provoke.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from support.fake_discord import FakeDiscord

NO_MENTIONS = discord.AllowedMentions.none()


class ImproveModal(discord.ui.Modal, title="Improve the draft"):
    better = discord.ui.TextInput(label="Better version", custom_id="better", style=discord.TextStyle.paragraph)

    def __init__(self) -> None:
        super().__init__(custom_id="improve-modal")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"Improved: {self.better.value}", view=None,
                                                allowed_mentions=NO_MENTIONS)


class DraftView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="👍", custom_id="rate:up")
    async def rate_up(self, interaction: discord.Interaction, button: discord.ui.Button[DraftView]) -> None:
        await interaction.response.send_message("Thanks for rating.", ephemeral=True)

    @discord.ui.button(label="Improve", custom_id="improve")
    async def improve(self, interaction: discord.Interaction, button: discord.ui.Button[DraftView]) -> None:
        await interaction.response.send_modal(ImproveModal())


class ProbeBot(discord.Client):
    """Commands that exercise each kind of response; exceptions from discord.py land in `errors`."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.errors: list[Exception] = []
        self.add_view(DraftView())
        draft = app_commands.Group(name="draft", description="Draft content")

        @draft.command(name="ad", description="Draft an ad")
        async def ad(interaction: discord.Interaction, product: str, words: int = 50) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content="Drafting…")
            await interaction.followup.send(f"Queue position 1 of {words} words", ephemeral=True)
            await interaction.edit_original_response(content=f"Ad for {product}", view=DraftView(),
                                                     allowed_mentions=NO_MENTIONS)

        @app_commands.command(description="Say something in the channel")
        async def say(interaction: discord.Interaction, text: str, as_file: bool = False) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                if as_file:
                    await interaction.channel.send("Attached.", file=discord.File(io.BytesIO(text.encode()), "draft.txt"))
                else:
                    await interaction.channel.send(text, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as error:
                self.errors.append(error)
            await interaction.followup.send("Done.", ephemeral=True)

        @app_commands.command(description="Answer after a delay")
        async def echo(interaction: discord.Interaction, text: str, delay: float = 0.0) -> None:
            await asyncio.sleep(delay)
            try:
                await interaction.response.send_message(text, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as error:
                self.errors.append(error)

        @app_commands.command(description="Finish after a delay, or fall back to a channel message")
        async def slow(interaction: discord.Interaction, delay: float) -> None:
            await interaction.response.defer()
            await asyncio.sleep(delay)
            try:
                await interaction.edit_original_response(content="Finished.")
            except discord.HTTPException as error:
                self.errors.append(error)
                await interaction.channel.send(f"{interaction.user.mention}: finished.", allowed_mentions=NO_MENTIONS)

        @app_commands.context_menu(name="Count characters")
        async def count(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(f"{len(message.content)} characters", ephemeral=True)

        for command in (draft, say, echo, slow, count):
            self.tree.add_command(command)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval=0.2) as fake:
        yield fake
        fake.assert_all_requests_valid()


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[ProbeBot]:
    bot = ProbeBot()
    task = asyncio.create_task(bot.start(fake.token))
    await fake.wait_until_connected()
    await asyncio.wait_for(bot.wait_until_ready(), 10)
    yield bot
    await bot.close()
    await task


async def _raw(fake: FakeDiscord, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """A request discord.py would not send, to see the fake's own answer."""
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, fake.rest_base + path, headers=headers, **kwargs) as response:
            return response.status, await response.json() if response.status != 204 else None


async def test_bot_connects_and_sees_the_guild(fake: FakeDiscord, bot: ProbeBot) -> None:
    guild = bot.get_guild(fake.guild.id)
    assert guild is not None and guild.name == "Copydesk Test"
    assert {channel.name for channel in guild.channels} == {"general", "moderation"}
    assert guild.get_role(fake.guild.role("Moderator").id).permissions.manage_messages
    assert guild.me is not None and guild.member_count == len(fake.guild.members)
    assert bot.user.id == fake.bot_user.id and bot.application_id == fake.application_id
    assert [(r.method, r.route) for r in fake.requests] == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
    assert "compress=zlib-stream" in fake.gateway.connections[0]
    await fake.wait_for(lambda: sum(payload["op"] == 1 for payload in fake.gateway.received) >= 3, timeout=5)
    assert bot.latency < 1


async def test_slash_command_defers_then_edits_and_follows_up(fake: FakeDiscord, bot: ProbeBot) -> None:
    await bot.tree.sync()
    published = fake.command("draft")
    assert published is not None and published["options"][0]["name"] == "ad"

    interaction = await fake.invoke_command("draft", {"product": "green tea", "words": 80}, subcommand="ad")
    assert interaction.payload["data"]["id"] == published["id"]
    assert (await interaction.wait_for_response())["type"] == 5
    assert interaction.response_delay is not None and interaction.response_delay < 3
    original = await interaction.wait_for_original(lambda message: message["content"] == "Ad for green tea")
    assert original["components"][0]["components"][0]["custom_id"] == "rate:up"
    assert original["edited_timestamp"] is not None
    followup = await fake.wait_for(lambda: interaction.followups)
    assert followup[0]["content"] == "Queue position 1 of 80 words" and followup[0]["flags"] & 64
    last_edit = [r for r in fake.requests if r.route and r.route.endswith("@original")][-1]
    assert last_edit.json["allowed_mentions"] == {"parse": []}


async def test_buttons_and_modal_reach_the_bot(fake: FakeDiscord, bot: ProbeBot) -> None:
    command = await fake.invoke_command("draft", {"product": "tea"}, subcommand="ad")
    draft = await command.wait_for_original(lambda message: bool(message["components"]))

    rating = await fake.click_button(draft, "rate:up", user=fake.guild.member("mia"))
    assert (await rating.wait_for_response())["type"] == 4
    assert rating.original["content"] == "Thanks for rating." and rating.original["flags"] & 64

    improve = await fake.click_button(draft, "improve")
    modal = await improve.wait_for_response()
    assert modal["type"] == 9 and modal["data"]["custom_id"] == "improve-modal"
    with pytest.raises(ValueError):
        await fake.submit_modal("improve-modal", {})  # the input is required, as in Discord's client

    submitted = await fake.submit_modal("improve-modal", {"better": "Tea, but better."})
    assert (await submitted.wait_for_response())["type"] == 7
    assert fake.messages[int(draft["id"])]["content"] == "Improved: Tea, but better."
    assert fake.messages[int(draft["id"])]["components"] == []
    with pytest.raises(LookupError):
        await fake.click_button(draft, "improve")  # the buttons are gone


async def test_context_menu_gets_the_whole_target_message(fake: FakeDiscord, bot: ProbeBot) -> None:
    target = await fake.post_user_message("Please summarise this text.")
    interaction = await fake.invoke_message_command("Count characters", target)
    await interaction.wait_for_response()
    assert interaction.original["content"] == "27 characters"  # content is there even without the intent


async def test_callbacks_after_the_first_or_the_window_are_refused(fake: FakeDiscord, bot: ProbeBot) -> None:
    interaction = await fake.invoke_command("echo", {"text": "hello"})
    await interaction.wait_for_response()
    callback = f"/interactions/{interaction.id}/{interaction.token}/callback"
    status, body = await _raw(fake, "POST", callback, json={"type": 4, "data": {"content": "again"}})
    assert (status, body["code"]) == (400, 40060)
    status, body = await _raw(fake, "POST", f"/interactions/1234567890123456789/{interaction.token}/callback",
                              json={"type": 5})
    assert (status, body["code"]) == (404, 10062)

    fake.interaction_response_window = 0.2
    late = await fake.invoke_command("echo", {"text": "late", "delay": 0.4})
    await fake.wait_for(lambda: bot.errors)
    assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
    assert late.response is None


async def test_expired_token_gives_50027_and_the_bot_can_fall_back(fake: FakeDiscord, bot: ProbeBot) -> None:
    fake.token_lifetime = 0.3
    await fake.invoke_command("slow", {"delay": 0.5})
    channel = fake.guild.channel("general")
    fallback = await fake.wait_for(lambda: [m for m in fake.channel_messages(channel) if m["content"].endswith("finished.")])
    assert isinstance(bot.errors[0], discord.HTTPException) and bot.errors[0].code == 50027
    assert fallback[0]["author"]["id"] == str(fake.bot_user.id) and "webhook_id" not in fallback[0]


async def test_rate_limits_are_retried_after_retry_after(fake: FakeDiscord, bot: ProbeBot) -> None:
    fake.rate_limit_next("POST /channels/{channel_id}/messages", retry_after=0.3)
    fake.rate_limit_next("/interactions/{interaction_id}/{interaction_token}/callback", retry_after=0.3)
    interaction = await fake.invoke_command("say", {"text": "hello"})
    await fake.wait_for(lambda: interaction.followups)

    for route in ("/interactions/{interaction_id}/{interaction_token}/callback", "/channels/{channel_id}/messages"):
        first, second = [r for r in fake.requests if r.route == route]
        assert (first.status, second.status) == (429, 200)
        assert second.at - first.at >= 0.3
    assert fake.channel_messages(fake.guild.channel("general"))[-1]["content"] == "hello"


async def test_requests_that_do_not_fit_discord_are_flagged(fake: FakeDiscord, bot: ProbeBot) -> None:
    channel_id = fake.guild.channel("general").id
    status, body = await _raw(fake, "POST", f"/channels/{channel_id}/messages",
                              json={"content": 5, "allowed_mentions": {"users": ["not-a-snowflake"]}})
    assert (status, body["code"], body["message"]) == (400, 50035, "Invalid Form Body")
    assert body["errors"]["content"]["_errors"][0]["message"] == "5 is not of type 'string', 'null'"
    assert "does not match" in body["errors"]["allowed_mentions"]["users"]["0"]["_errors"][0]["message"]

    form = aiohttp.FormData()
    form.add_field("payload_json", '{"embeds": "not a list"}', content_type="application/json")
    form.add_field("files[0]", b"x", filename="x.txt")
    status, body = await _raw(fake, "POST", f"/channels/{channel_id}/messages", data=form)
    assert (status, body["code"]) == (400, 50035)

    status, _ = await _raw(fake, "GET", "/no/such/route")
    assert status == 404

    interaction = await fake.invoke_command("say", {"text": "x" * 2001})
    await fake.wait_for(lambda: bot.errors)
    assert bot.errors[0].code == 50035 and "2000" in str(bot.errors[0])
    await interaction.wait_for_original()

    assert len(fake.violations) == 4
    with pytest.raises(AssertionError, match="no route GET /no/such/route"):
        fake.assert_all_requests_valid()
    fake.violations.clear()


async def test_attachments_are_validated_and_stored(fake: FakeDiscord, bot: ProbeBot) -> None:
    interaction = await fake.invoke_command("say", {"text": "The draft.", "as_file": True})
    await fake.wait_for(lambda: interaction.followups)
    message = fake.channel_messages(fake.guild.channel("general"))[-1]
    attachment = message["attachments"][0]
    assert attachment["filename"] == "draft.txt"
    assert fake.attachment_data[attachment["id"]] == b"The draft."
    upload = next(r for r in fake.requests if r.files)
    assert upload.json["content"] == "Attached." and upload.problems == []


async def test_gateway_drop_is_resumed_with_missed_events(fake: FakeDiscord, bot: ProbeBot) -> None:
    await fake.disconnect_gateway()
    assert not fake.gateway.connected.is_set()
    missed = await fake.invoke_command("echo", {"text": "while away"})  # kept until the bot resumes
    await fake.wait_for(lambda: any(payload["op"] == 6 for payload in fake.gateway.received))
    await missed.wait_for_response()
    assert fake.gateway.connections[-1].startswith("/gateway-resume?")  # READY's resume_gateway_url
    assert sum(payload["op"] == 2 for payload in fake.gateway.received) == 1  # no second IDENTIFY

    await fake.request_reconnect()
    await fake.wait_for(lambda: sum(payload["op"] == 6 for payload in fake.gateway.received) == 2)
    again = await fake.invoke_command("echo", {"text": "after reconnect"})
    assert (await again.wait_for_response())["data"]["content"] == "after reconnect"


async def test_a_file_over_the_attachment_limit_is_refused_as_discord_does(fake: FakeDiscord, bot: ProbeBot) -> None:
    fake.attachment_size_limit = 5
    interaction = await fake.invoke_command("say", {"text": "Six bytes and more.", "as_file": True})
    assert interaction.payload["attachment_size_limit"] == 5
    refused = await fake.wait_for(lambda: next((r for r in fake.requests if r.files), None))
    assert (refused.status, refused.response["code"]) == (413, 40005)
    assert "draft.txt is 19 bytes, over the limit of 5" in refused.problems[0].message
    assert fake.violations == [refused]
    fake.violations.clear()
