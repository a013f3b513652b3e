"""A fake Discord on 127.0.0.1 for end-to-end tests of the real discord.py client.

Discord cannot be reached from the test machines, so the suite starts this fake instead: a
REST API under `/api/v10` and a gateway websocket, both on one aiohttp server. discord.py is
pointed at it through `discord.http.Route.BASE` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` only; nothing else in the client is patched.

It answers like Discord does, and it is strict where Discord is strict, so that what passes
here works there:

- every REST request is checked against Discord's OpenAPI description
  (`../shared/discord-api-spec/openapi.json`, or `$DISCORD_API_SPEC`): the route must exist,
  path and query parameters and the JSON body (or a multipart request's `payload_json`) must
  fit the spec. A request that does not fit gets Discord's 400 / 50035 "Invalid Form Body",
  and lands in `fake.violations`;
- so do breaches of the rules the spec does not state: content over 2000 characters, an embed
  description over 4096, embeds over 6000 in all (400 / 50035), an empty message (400 / 50006),
  a file over `fake.attachment_size_limit` (413 / 40005; the limit each interaction carries as
  `attachment_size_limit`, 10 MiB unless a test changes it), and calls to routes the fake does
  not implement (501);
- interactions: the callback must come within `interaction_response_window` (3 s) and only
  once, else 404 / 10062 "Unknown interaction" and 400 / 40060 "already acknowledged"; the
  token's webhook (followups, @original) works until `token_lifetime` (15 min), then
  401 / 50027 "Invalid Webhook Token"; before the callback it is 404 / 10015 "Unknown Webhook".
  The first followup after a "thinking" defer fills in the loading message, as on Discord;
- `rate_limit_next(...)` answers the next matching request with 429, `Retry-After`, the
  `X-RateLimit-*` headers and `{"retry_after": …, "global": false}`, which discord.py obeys;
- the gateway: HELLO, heartbeat ACKs, IDENTIFY → READY + GUILD_CREATE per guild, RESUME →
  missed events + RESUMED (INVALID_SESSION if unknown), zlib-stream transport compression
  when asked. MESSAGE_CREATE/UPDATE/DELETE are dispatched when the bot has the
  GUILD_MESSAGES intent; other members' content is blanked without MESSAGE_CONTENT.

Not modelled: channel permission overwrites, DMs, threads, select menus outside modals,
autocomplete interactions, member requests over the gateway (op 8), voice, more than one shard
(a sharded client gets its IDENTIFY shard echoed in READY and is served as shard 0 of 1).

The default world: application/bot user "copydesk"; `fake.guild` "Copydesk Test" owned by
"owner", with channels "general" and "moderation", a role "Moderator" (MANAGE_MESSAGES), and
members "alice" (the default actor) and "mia" (Moderator). Add more with `fake.add_guild`,
`guild.add_channel`, `guild.add_role`, `guild.add_member` before the bot connects.

Usage (the bot under test is any discord.Client; `guild_ready_timeout=0.05` spares the 2 s
discord.py otherwise waits after the last GUILD_CREATE before `on_ready`)::

    from fake_discord import FakeDiscord          # tests/ is on sys.path under pytest

    async def test_draft_ad() -> None:
        async with FakeDiscord() as fake:          # a free port; discord.py now talks to it
            bot = make_bot()                       # e.g. commands.Bot(..., guild_ready_timeout=0.05)
            task = asyncio.create_task(bot.start(fake.token))
            await fake.wait_until_connected()      # logged in, READY and GUILD_CREATE sent
            await bot.wait_until_ready()

            interaction = await fake.invoke_command("draft", {"product": "tea"}, subcommand="ad")
            response = await interaction.wait_for_response()        # the callback body
            assert response["type"] == 5 and interaction.response_delay < 3
            draft = await interaction.wait_for_original(lambda message: "tea" in message["content"])
            rating = await fake.click_button(draft, "rate:up", user=fake.guild.member("mia"))
            await rating.wait_for_response()
            edits = [r for r in fake.requests if r.route and r.route.endswith("/messages/@original")]
            assert all(r.json["allowed_mentions"] == {"parse": []} for r in edits)

            await bot.close()                      # before the fake stops, or discord.py reconnects
            await task
            fake.assert_all_requests_valid()

The test-side API, all on `FakeDiscord` unless said otherwise:

- `FakeDiscord(token=…, interaction_response_window=3.0, token_lifetime=900.0,
  heartbeat_interval=41.25)`; the three timings are plain attributes, changeable mid-test.
- `async with FakeDiscord() as fake` = `await fake.start()` + `with fake.point_discord_here():`
  and, on exit, the reverse and `await fake.stop()`. `fake.url`, `fake.rest_base`,
  `fake.gateway_url`, `fake.token`, `fake.application_id`, `fake.bot_user`.
- State: `fake.guilds`, `fake.guild`, `fake.messages` (id → message payload, as it is now),
  `fake.channel_messages(channel)`, `fake.interactions` (id → Interaction), `fake.commands`
  (None or guild id → published commands), `fake.command(name, guild=…, type=1)`,
  `fake.attachment_data` (attachment id → bytes), `fake.requests` (RecordedRequest: method,
  path, route template, query, json, files, at, status, response, problems),
  `fake.violations`, `fake.assert_all_requests_valid()` (a test that sends a bad request on
  purpose checks `fake.violations` and then clears it).
- Acting as members (each dispatches INTERACTION_CREATE and returns an `Interaction`; the
  user defaults to alice, the channel to the guild's first; the guild is the channel's):
  `invoke_command(name, options, subcommand=…, user=…, channel=…)`,
  `invoke_message_command(name, target_message, user=…)`,
  `click_button(message, custom_id, user=…, forged=False)` (forged: a custom_id the message need not
  show, as a modified client may send), `submit_modal(custom_id, values, user=…)`,
  `redeliver(interaction)` (the same INTERACTION_CREATE again, as Discord may deliver it twice);
  and `post_user_message(content, user=…, channel=…)` (MESSAGE_CREATE). Commands need not be
  published first; if they were, the published id, scope (`data.guild_id`) and option types
  are used and wrong option or subcommand names raise, as do strings over 6000 characters or
  outside a published option's `min_length`/`max_length`. Buttons are looked up on the message as
  it is now, modals among those the bot opened, and missing required inputs raise, as
  Discord's client would not send them. Messages are payload dicts; an edit stores a new dict,
  so re-read `fake.messages[id]` (or `interaction.original`) rather than keep an old one.
- `Interaction`: `payload`, `id`, `token`, `user`, `channel`, `response` (callback body),
  `response_type`, `response_delay`, `original`, `followups`, `expired`,
  `await wait_for_response(timeout)`, `await wait_for_original(predicate, timeout)`.
- Waiting: `await fake.wait_for(predicate, timeout)` (re-checked after every request and
  gateway event and every 50 ms, so it may look at the bot's state too; returns the
  predicate's value), `await fake.wait_until_connected()`.
- Faults: `fake.rate_limit_next("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original",
  retry_after=0.5)` (or a "/template" or a predicate on RecordedRequest),
  `await fake.disconnect_gateway()`, `await fake.request_reconnect()`;
  `fake.gateway.received` (every gateway payload from the bot), `fake.gateway.connections`.
"""

from .model import Channel, Guild, Member, Role, User
from .rest import RecordedRequest, UploadedFile
from .server import FakeDiscord, Interaction

__all__ = ["Channel", "FakeDiscord", "Guild", "Interaction", "Member", "RecordedRequest", "Role", "UploadedFile", "User"]
