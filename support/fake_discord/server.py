"""FakeDiscord: the server, its state, and what a test does to it (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import discord
import yarl
from aiohttp import web

from . import openapi, rest
from .gateway import Gateway
from .model import (
    LOADING,
    MANAGE_MESSAGES,
    Channel,
    Guild,
    Member,
    Role,
    User,
    new_guild,
    new_message,
    snowflake,
)

T = TypeVar("T")
MESSAGE_CONTENT = 1 << 15  # the privileged intent without which Discord blanks other users' message content
RateLimitMatch = str | Callable[[rest.RecordedRequest], bool]


@dataclass(eq=False)
class Interaction:
    """One interaction the test started, and what the bot did with it."""

    fake: FakeDiscord = field(repr=False)
    payload: dict[str, Any]  # what INTERACTION_CREATE carried
    channel: Channel
    user: Member
    created_at: float = field(default_factory=time.monotonic)
    response: dict[str, Any] | None = None  # the callback body, e.g. {"type": 5, "data": {"flags": 64}}
    responded_at: float | None = None
    original_id: int | None = None  # the message @original refers to
    followup_ids: list[int] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def token(self) -> str:
        return str(self.payload["token"])

    @property
    def type(self) -> int:
        return int(self.payload["type"])

    @property
    def response_type(self) -> int | None:
        return int(self.response["type"]) if self.response else None

    @property
    def response_delay(self) -> float | None:
        """Seconds from dispatch to the callback: Discord allows `interaction_response_window` (3 s)."""
        return None if self.responded_at is None else self.responded_at - self.created_at

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.created_at > self.fake.token_lifetime

    @property
    def original(self) -> dict[str, Any] | None:
        """The original response message as it is now (edits applied); None if none or deleted."""
        return self.fake.messages.get(self.original_id) if self.original_id else None

    @property
    def followups(self) -> list[dict[str, Any]]:
        return [self.fake.messages[i] for i in self.followup_ids if i in self.fake.messages]

    def metadata(self) -> dict[str, Any]:
        """The `interaction_metadata` of messages the bot sent in answer to this interaction."""
        return {"id": str(self.id), "type": self.type, "user": self.user.user.payload(),
                "authorizing_integration_owners": {"0": str(self.channel.guild_id)}}

    async def wait_for_response(self, timeout: float = 5.0) -> dict[str, Any]:
        """The callback body, once the bot sent one."""
        await self.fake.wait_for(lambda: self.response is not None, timeout)
        assert self.response is not None
        return self.response

    async def wait_for_original(self, predicate: Callable[[dict[str, Any]], bool] = lambda message: True,
                                timeout: float = 10.0) -> dict[str, Any]:
        """The original response once it is no longer loading and `predicate` holds for it."""
        def ready() -> dict[str, Any] | None:
            message = self.original
            return message if message and not message["flags"] & LOADING and predicate(message) else None
        return await self.fake.wait_for(ready, timeout)


class FakeDiscord:
    """A fake Discord on 127.0.0.1 with one bot application and a default guild (see the package docstring)."""

    def __init__(self, *, token: str = "fake.bot.token", interaction_response_window: float = 3.0,
                 token_lifetime: float = 900.0, heartbeat_interval: float = 41.25) -> None:
        self.token = token
        self.interaction_response_window = interaction_response_window
        self.token_lifetime = token_lifetime
        self.heartbeat_interval = heartbeat_interval
        self.application_id = snowflake()
        self.bot_user = User(self.application_id, "copydesk", bot=True)  # new apps share the bot user's id
        self.owner = User(snowflake(), "owner")
        self.guilds: list[Guild] = []
        self.requests: list[rest.RecordedRequest] = []
        self.violations: list[rest.RecordedRequest] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.interactions: dict[int, Interaction] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # scope (None = global, or guild id) → commands
        self.attachment_data: dict[str, bytes] = {}  # attachment id → uploaded bytes
        self.attachment_size_limit = 10 * 1024 * 1024  # per file; sent with each interaction, enforced on upload
        self.gateway = Gateway(self)
        self._rate_limits: list[tuple[RateLimitMatch, float]] = []
        # Set (and replaced) at every change. An Event, not a Condition: on Python 3.11 a Condition's wait
        # cancelled by wait_for could leave its lock released, and the waiter's exit then raised.
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

        self.guild = self.add_guild("Copydesk Test")
        self.guild.add_channel("general")
        self.guild.add_channel("moderation")
        moderator = self.guild.add_role("Moderator", MANAGE_MESSAGES)
        self.guild.add_member("alice")
        self.guild.add_member("mia", roles=(moderator,))

    # Lifecycle.

    async def start(self) -> None:
        openapi.load_spec()  # a missing spec fails here, not as a 500 that discord.py retries for seconds
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway-resume", self.gateway.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the gateway and the server; close the bot first, or discord.py tries to reconnect."""
        await self.gateway.disconnect(code=1000)
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        self._pointing = self.point_discord_here()
        self._pointing.__enter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._pointing.__exit__(None, None, None)
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def rest_base(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway-resume"

    @contextlib.contextmanager
    def point_discord_here(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this fake; restore them afterwards."""
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.rest_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

    # The world.

    def add_guild(self, name: str) -> Guild:
        """A guild with the owner and the bot as members; add channels, roles and members before the bot connects."""
        guild = new_guild(name, self.owner)
        guild.add_member(self.bot_user.username, user=self.bot_user)
        self.guilds.append(guild)
        return guild

    def guild_of(self, channel: Channel) -> Guild:
        return next(guild for guild in self.guilds if guild.id == channel.guild_id)

    def known_users(self) -> dict[str, dict[str, Any]]:
        """Every user in every guild, by id: the users a message can mention."""
        return {str(member.user.id): member.user.payload() for guild in self.guilds for member in guild.members}

    def channel_messages(self, channel: Channel) -> list[dict[str, Any]]:
        """The channel's messages, oldest first, as they are now."""
        return [message for message in self.messages.values() if message["channel_id"] == str(channel.id)]

    def command(self, name: str, *, guild: Guild | None = None, type: int = 1) -> dict[str, Any] | None:
        """A published command: the guild's own first, then the global one."""
        for scope in ([guild.id] if guild else []) + [None]:
            for command in self.commands.get(scope, []):
                if command["name"] == name and command["type"] == type:
                    return command
        return None

    # Waiting and checking.

    async def changed(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Wait until `predicate()` is truthy and return its value.

        It is checked after every request and gateway event, and every 50 ms besides, so it may
        also look at the bot's own state or at the clock.
        """
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"fake Discord: condition not met within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
        return value

    async def wait_until_connected(self, timeout: float = 10.0) -> None:
        """Until the bot identified (READY and GUILD_CREATEs sent) or resumed."""
        await asyncio.wait_for(self.gateway.connected.wait(), timeout)

    def assert_all_requests_valid(self) -> None:
        """Fail if any request did not fit Discord's API (spec, limits, empty messages, unknown routes)."""
        if self.violations:
            lines = [f"{request.method} {request.path}: " + "; ".join(map(str, request.problems))
                     for request in self.violations]
            raise AssertionError("requests Discord would reject:\n" + "\n".join(lines))

    def rate_limit_next(self, match: RateLimitMatch, retry_after: float = 0.5) -> None:
        """Answer the next matching request with 429: `match` is "METHOD /template", "/template" or a predicate."""
        self._rate_limits.append((match, retry_after))

    def take_rate_limit(self, request: rest.RecordedRequest) -> float | None:
        for rule in self._rate_limits:
            match, retry_after = rule
            if callable(match):
                hit = match(request)
            else:
                method, _, template = match.rpartition(" ")
                hit = template == request.route and method in ("", request.method)
            if hit:
                self._rate_limits.remove(rule)
                return retry_after
        return None

    # The gateway.

    async def disconnect_gateway(self, code: int = 4000) -> None:
        """Drop the bot's websocket (resumable by default); discord.py should come back with RESUME."""
        await self.gateway.disconnect(code)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py should reconnect and RESUME."""
        await self.gateway.request_reconnect()

    # What members do.

    def default_member(self, guild: Guild) -> Member:
        """The first human member who does not own the guild (alice in the default guild)."""
        humans = [member for member in guild.members if not member.user.bot]
        return next((member for member in humans if member.user.id != guild.owner_id), humans[0])

    async def post_user_message(self, content: str, *, user: Member | None = None, channel: Channel | None = None,
                                **fields: Any) -> dict[str, Any]:
        """A member posts a message (e.g. a target for a context menu); MESSAGE_CREATE goes to the bot.

        As on Discord, the event's content is blank unless the bot has the MESSAGE_CONTENT intent or is mentioned.
        """
        channel = channel or self.guild.channels[0]
        user = user or self.default_member(self.guild_of(channel))
        message = new_message(channel, user.user.payload(), content=content, **fields)
        self.messages[int(message["id"])] = message
        event = {**message, "member": user.payload(with_user=False)}
        if not self.gateway.intents & MESSAGE_CONTENT and f"<@{self.bot_user.id}>" not in content:
            event.update(content="", embeds=[], attachments=[], components=[])
        await self.gateway.dispatch("MESSAGE_CREATE", event)
        return message

    async def invoke_command(self, name: str, options: dict[str, Any] | None = None, *, subcommand: str | None = None,
                             user: Member | None = None, channel: Channel | None = None) -> Interaction:
        """A member runs a slash command, e.g. `invoke_command("draft", {"product": "tea"}, subcommand="ad")`.

        `subcommand` is "sub" or "group sub". If the command was published (PUT …/commands), its id and scope
        are used and option names are checked; option types come from it, else from the Python values
        (str, int, float, bool; Member, Role, Channel go into `resolved`).
        """
        channel = channel or self.guild.channels[0]
        guild = self.guild_of(channel)
        published = self.command(name, guild=guild)
        declared = published.get("options", []) if published else None
        path = subcommand.split() if subcommand else []
        for part in path:
            if declared is not None:
                found = next((option for option in declared if option["name"] == part and option["type"] in (1, 2)), None)
                if found is None:
                    raise LookupError(f"/{name} has no subcommand {part!r}")
                declared = found.get("options", [])
        missing = [option["name"] for option in declared or []
                   if option.get("required") and option["name"] not in (options or {})]
        if missing:
            raise ValueError(f"/{name} needs {missing}, as Discord's client would insist")
        resolved: dict[str, dict[str, Any]] = {}
        values = _options(options or {}, declared, resolved)
        for depth, part in reversed(list(enumerate(path))):
            values = [{"type": 1 if depth == len(path) - 1 else 2, "name": part, "options": values}]
        data: dict[str, Any] = {"id": published["id"] if published else str(snowflake()), "name": name, "type": 1,
                                "options": values}
        if resolved:
            data["resolved"] = resolved
        if published and "guild_id" in published:
            data["guild_id"] = published["guild_id"]
        return await self._dispatch_interaction(2, data, channel=channel, user=user)

    async def invoke_message_command(self, name: str, target: dict[str, Any], *, user: Member | None = None) -> Interaction:
        """A member picks an app's context-menu entry (Apps → name) on `target`, a stored message."""
        target = self.messages[int(target["id"])]
        channel = self._channel(target["channel_id"])
        published = self.command(name, guild=self.guild_of(channel), type=3)
        data: dict[str, Any] = {"id": published["id"] if published else str(snowflake()), "name": name, "type": 3,
                                "target_id": target["id"], "resolved": {"messages": {target["id"]: target}}}
        if published and "guild_id" in published:
            data["guild_id"] = published["guild_id"]
        return await self._dispatch_interaction(2, data, channel=channel, user=user)

    async def click_button(self, message: dict[str, Any], custom_id: str, *, user: Member | None = None,
                           forged: bool = False) -> Interaction:
        """A member clicks a button on the message as it is now; it must be there and enabled.

        `forged=True` sends the click whatever the message shows, as a modified or stale client
        might: a bot must not trust a `custom_id` to be one it made, or to be current.
        """
        current = self.messages.get(int(message["id"]))
        if current is None:
            raise LookupError(f"message {message['id']} no longer exists")
        button = _find_component(current["components"], custom_id)
        if not forged and (button is None or button["type"] != 2 or button.get("disabled")):
            raise LookupError(f"no enabled button {custom_id!r} on message {message['id']}")
        return await self._dispatch_interaction(3, {"custom_id": custom_id, "component_type": 2},
                                                channel=self._channel(current["channel_id"]), user=user, message=current)

    async def submit_modal(self, custom_id: str, values: dict[str, str], *, user: Member | None = None) -> Interaction:
        """A member submits the modal the bot last opened with this custom_id; `values` by text input custom_id."""
        shown = next((item for item in reversed(self.interactions.values()) if item.response_type == 9
                      and item.response and item.response["data"]["custom_id"] == custom_id), None)
        if shown is None:
            raise LookupError(f"the bot never opened a modal {custom_id!r}")
        assert shown.response is not None
        components = _modal_submission(shown.response["data"]["components"], dict(values))
        return await self._dispatch_interaction(5, {"custom_id": custom_id, "components": components},
                                                channel=shown.channel, user=user or shown.user,
                                                message=shown.payload.get("message"))

    async def redeliver(self, interaction: Interaction) -> None:
        """Send the same INTERACTION_CREATE again, as Discord may (the same id and token): a bot must act once."""
        await self.gateway.dispatch("INTERACTION_CREATE", interaction.payload)

    # Internals.

    async def _rest(self, request: web.Request) -> web.Response:
        return await rest.handle(self, request)

    def _channel(self, channel_id: str) -> Channel:
        return next(channel for guild in self.guilds for channel in guild.channels if str(channel.id) == channel_id)

    async def _dispatch_interaction(self, kind: int, data: dict[str, Any], *, channel: Channel, user: Member | None,
                                    message: dict[str, Any] | None = None) -> Interaction:
        guild = self.guild_of(channel)
        user = user or self.default_member(guild)
        bot = next(member for member in guild.members if member.user.id == self.bot_user.id)
        payload: dict[str, Any] = {
            "id": str(snowflake()), "application_id": str(self.application_id), "type": kind, "data": data,
            "guild_id": str(guild.id), "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel.id), "channel": channel.payload(), "member": user.payload(with_permissions=True),
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(64), "version": 1,
            "app_permissions": str(bot.permissions), "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0,
            "attachment_size_limit": self.attachment_size_limit,
        }
        if message is not None:
            payload["message"] = message
        interaction = Interaction(self, payload, channel, user)
        self.interactions[interaction.id] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction


def _options(values: dict[str, Any], declared: list[dict[str, Any]] | None,
             resolved: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Slash-command options as Discord sends them; users, members, roles and channels also go into `resolved`."""
    options = []
    for name, value in values.items():
        spec = next((option for option in declared if option["name"] == name), None) if declared is not None else {}
        if spec is None:
            raise LookupError(f"the published command has no option {name!r}")
        if isinstance(value, Member):
            resolved.setdefault("users", {})[str(value.user.id)] = value.user.payload()
            resolved.setdefault("members", {})[str(value.user.id)] = value.payload(with_user=False, with_permissions=True)
            kind, value = 6, str(value.user.id)
        elif isinstance(value, Role):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            kind, value = 8, str(value.id)
        elif isinstance(value, Channel):
            resolved.setdefault("channels", {})[str(value.id)] = {**value.payload(), "permissions": str((1 << 51) - 1)}
            kind, value = 7, str(value.id)
        else:
            kind = spec.get("type") or (5 if isinstance(value, bool) else 4 if isinstance(value, int)
                                        else 10 if isinstance(value, float) else 3)
            if kind == 3:
                _check_length(name, value, spec)
        options.append({"name": name, "type": kind, "value": value})
    return options


STRING_OPTION_LIMIT = 6000  # Discord's most for any string option, whatever the command declares


def _check_length(name: str, value: str, spec: dict[str, Any]) -> None:
    """Refuse a string Discord's client would not send: over 6000, or outside a published command's bounds."""
    longest = min(spec.get("max_length") or STRING_OPTION_LIMIT, STRING_OPTION_LIMIT)
    shortest = spec.get("min_length") or 0
    if not shortest <= len(value) <= longest:
        raise ValueError(f"option {name!r} is {len(value)} characters long; Discord sends {shortest} to {longest}")


def _find_component(node: Any, custom_id: str) -> dict[str, Any] | None:
    """The component with this custom_id anywhere in a component tree (rows, containers, sections, labels)."""
    if isinstance(node, dict):
        if node.get("custom_id") == custom_id:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _find_component(child, custom_id)
            if found is not None:
                return found
    return None


def _modal_submission(components: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    """What a modal submit carries for the modal the bot sent: action rows or labels around text inputs."""
    def submitted(item: dict[str, Any]) -> dict[str, Any]:
        custom_id = item["custom_id"]
        if item["type"] != 4:  # selects inside labels answer with a list of values
            return {"type": item["type"], "custom_id": custom_id, "values": list(values.pop(custom_id, []))}
        if custom_id not in values and item.get("required", True):
            raise ValueError(f"text input {custom_id!r} is required")
        return {"type": 4, "custom_id": custom_id, "value": values.pop(custom_id, "")}

    result: list[dict[str, Any]] = []
    for row in components:
        if row["type"] == 1:
            result.append({"type": 1, "components": [submitted(item) for item in row["components"]]})
        elif row["type"] == 18:
            result.append({"type": 18, "component": submitted(row["component"])})
    if values:
        raise ValueError(f"the modal has no inputs {sorted(values)}")
    return result
