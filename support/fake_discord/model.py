"""The fake's world: users, guilds, channels, roles, members and messages, as Discord sends them.

Objects are small dataclasses that render themselves as Discord's JSON payloads; messages are
kept as those payloads (plain dicts), so tests read exactly what discord.py read.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
_increment = itertools.count()
_last_snowflake = 0

# Permission bits the default world uses (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = (VIEW_CHANNEL | SEND_MESSAGES | ADD_REACTIONS | EMBED_LINKS | ATTACH_FILES
                        | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS)

# Message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7


def snowflake() -> int:
    """A fresh, increasing id shaped like Discord's (timestamp, worker, process, increment): 19 digits today."""
    global _last_snowflake
    value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17) | (next(_increment) & 0xFFF)
    _last_snowflake = max(value, _last_snowflake + 1)
    return _last_snowflake


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class User:
    id: int
    username: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "username": self.username, "discriminator": "0", "global_name": self.username,
                "avatar": None, "bot": self.bot, "public_flags": 0, "flags": 0}


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "permissions": str(self.permissions), "position": self.position,
                "color": 0, "hoist": False, "managed": False, "mentionable": False, "icon": None,
                "unicode_emoji": None, "flags": 0}


@dataclass
class Channel:
    id: int
    guild_id: int
    name: str
    type: int = 0  # GUILD_TEXT
    position: int = 0

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type, "guild_id": str(self.guild_id), "name": self.name,
                "position": self.position, "permission_overwrites": [], "nsfw": False, "parent_id": None,
                "topic": None, "rate_limit_per_user": 0, "last_message_id": None, "flags": 0}


@dataclass
class Member:
    user: User
    guild: Guild
    roles: list[Role] = field(default_factory=list)
    joined_at: str = field(default_factory=now_iso)

    @property
    def permissions(self) -> int:
        """Guild-level permissions: @everyone plus the member's roles; owners and administrators have all.

        Channel overwrites are not modelled: every channel grants what the guild grants.
        """
        value = self.guild.everyone.permissions
        for role in self.roles:
            value |= role.permissions
        if value & ADMINISTRATOR or self.user.id == self.guild.owner_id:
            return ALL_PERMISSIONS
        return value

    def payload(self, *, with_user: bool = True, with_permissions: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"roles": [str(role.id) for role in self.roles], "joined_at": self.joined_at,
                                "nick": None, "avatar": None, "deaf": False, "mute": False, "flags": 0,
                                "pending": False, "communication_disabled_until": None}
        if with_user:
            data["user"] = self.user.payload()
        if with_permissions:
            data["permissions"] = str(self.permissions)
        return data


@dataclass
class Guild:
    """A guild; its @everyone role shares the guild's id, as on Discord."""

    id: int
    name: str
    owner_id: int
    roles: list[Role] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)

    @property
    def everyone(self) -> Role:
        return self.roles[0]

    def add_role(self, name: str, permissions: int = 0) -> Role:
        role = Role(snowflake(), name, permissions, position=len(self.roles))
        self.roles.append(role)
        return role

    def add_channel(self, name: str, *, type: int = 0) -> Channel:
        channel = Channel(snowflake(), self.id, name, type, position=len(self.channels))
        self.channels.append(channel)
        return channel

    def add_member(self, username: str, *, roles: tuple[Role, ...] = (), bot: bool = False,
                   user: User | None = None) -> Member:
        member = Member(user or User(snowflake(), username, bot=bot), self, list(roles))
        self.members.append(member)
        return member

    def role(self, name: str) -> Role:
        return next(role for role in self.roles if role.name == name)

    def channel(self, name: str) -> Channel:
        return next(channel for channel in self.channels if channel.name == name)

    def member(self, username: str) -> Member:
        return next(member for member in self.members if member.user.username == username)

    def payload(self, *, members: list[Member] | None = None) -> dict[str, Any]:
        """What GUILD_CREATE carries; `members` defaults to all of them."""
        return {"id": str(self.id), "name": self.name, "owner_id": str(self.owner_id), "icon": None, "splash": None,
                "discovery_splash": None, "banner": None, "description": None, "features": [],
                "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
                "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0, "premium_subscription_count": 0,
                "preferred_locale": "en-US", "system_channel_id": None, "system_channel_flags": 0,
                "afk_channel_id": None, "afk_timeout": 300, "vanity_url_code": None, "large": False,
                "unavailable": False, "joined_at": now_iso(), "member_count": len(self.members),
                "roles": [role.payload() for role in self.roles],
                "channels": [channel.payload() for channel in self.channels],
                "members": [member.payload() for member in (self.members if members is None else members)],
                "threads": [], "presences": [], "voice_states": [], "emojis": [], "stickers": [],
                "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": []}


def new_guild(name: str, owner: User) -> Guild:
    guild_id = snowflake()
    guild = Guild(guild_id, name, owner.id, roles=[Role(guild_id, "@everyone", EVERYONE_PERMISSIONS)])
    guild.add_member(owner.username, user=owner)
    return guild


def new_message(channel: Channel, author: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A message payload; `fields` (content, embeds, components, flags, attachments, …) override the defaults."""
    message: dict[str, Any] = {
        "id": str(snowflake()), "channel_id": str(channel.id), "guild_id": str(channel.guild_id),
        "author": author, "content": "", "timestamp": now_iso(), "edited_timestamp": None, "tts": False,
        "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
        "components": [], "pinned": False, "type": 0, "flags": 0,
    }
    message.update(fields)
    return message


_MESSAGE_FIELDS = ("content", "embeds", "components", "flags", "tts", "poll")


def message_fields(body: dict[str, Any], users: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The parts of a create/edit request body that become part of the message; nulls mean 'empty'.

    A new content brings its mentions, resolved as Discord does under the body's `allowed_mentions`.
    """
    empty: dict[str, Any] = {"content": "", "embeds": [], "components": [], "flags": 0, "tts": False, "poll": None}
    fields = {key: (empty[key] if body[key] is None else body[key]) for key in _MESSAGE_FIELDS if key in body}
    if "content" in fields:
        fields.update(resolve_mentions(fields["content"], body.get("allowed_mentions"), users))
    return fields


USER_MENTION = re.compile(r"<@!?(\d{15,20})>")
ROLE_MENTION = re.compile(r"<@&(\d{15,20})>")


def resolve_mentions(content: str, allowed: dict[str, Any] | None, users: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Who a message pings: without `allowed_mentions` everything parses; with it, only what it allows."""
    parse = ["everyone", "users", "roles"] if allowed is None else allowed.get("parse") or []
    allowed_users = {str(user) for user in (allowed or {}).get("users") or []}
    allowed_roles = {str(role) for role in (allowed or {}).get("roles") or []}
    mentioned_users = [users[uid] for uid in dict.fromkeys(USER_MENTION.findall(content))
                       if uid in users and ("users" in parse or uid in allowed_users)]
    mentioned_roles = [rid for rid in dict.fromkeys(ROLE_MENTION.findall(content))
                       if "roles" in parse or rid in allowed_roles]
    return {
        "mention_everyone": "everyone" in parse and ("@everyone" in content or "@here" in content),
        "mentions": mentioned_users,
        "mention_roles": mentioned_roles,
    }


def is_empty(message: dict[str, Any]) -> bool:
    return not (message.get("content") or message.get("embeds") or message.get("attachments")
                or message.get("components") or message.get("poll") or message.get("sticker_items"))


def _embed_length(embed: dict[str, Any]) -> int:
    """Characters counted toward the 6000 limit: title, description, field names and values, footer, author."""
    parts = [embed.get("title"), embed.get("description"), (embed.get("footer") or {}).get("text"),
             (embed.get("author") or {}).get("name")]
    for embed_field in embed.get("fields") or []:
        parts += [embed_field.get("name"), embed_field.get("value")]
    return sum(len(part) for part in parts if part)


def limit_problems(message: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Discord's limits that the spec does not state (it allows 4000 characters, for Nitro users)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if len(message.get("content") or "") > 2000:
        problems.append((("content",), "Must be 2000 or fewer in length."))
    embeds = message.get("embeds") or []
    for index, embed in enumerate(embeds):
        if len(embed.get("description") or "") > 4096:
            problems.append((("embeds", index, "description"), "Must be 4096 or fewer in length."))
    if sum(_embed_length(embed) for embed in embeds) > 6000:
        problems.append((("embeds",), "Embed size exceeds maximum size of 6000"))
    return problems
