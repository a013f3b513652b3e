"""The fake's gateway: one bot session over an aiohttp websocket.

It speaks the parts of the gateway protocol a bot relies on: HELLO, heartbeats and their
ACKs, IDENTIFY → READY + one GUILD_CREATE per guild, RESUME → replay of missed events +
RESUMED (or INVALID_SESSION when the session is unknown), op 7 RECONNECT on request, and
dispatches. Events dispatched while no socket is open are kept and replayed on RESUME, as
Discord does. With the GUILD_MEMBERS intent, GUILD_CREATE carries every member, so discord.py
never needs to request member chunks (op 8), which the fake does not answer.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import zlib
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .server import FakeDiscord

HELLO, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HEARTBEAT_ACK = 10, 1, 2, 6, 7, 9, 11
DISPATCH = 0
AUTHENTICATION_FAILED = 4004
GUILD_MEMBERS = 1 << 1
GUILD_MESSAGES = 1 << 9


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.session_id: str | None = None
        self.intents = 0
        self.shard: list[int] | None = None
        self.received: list[dict[str, Any]] = []  # every payload the bot sent, heartbeats included
        self.connections: list[str] = []  # the path and query of every websocket the bot opened
        self.connected = asyncio.Event()  # set once READY or RESUMED went out, cleared on disconnect
        self._sent: list[dict[str, Any]] = []  # dispatched events, for replay on RESUME
        self._ws: web.WebSocketResponse | None = None
        self._zlib: Any = None

    @property
    def sequence(self) -> int:
        return len(self._sent)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self._ws is not None:
            await self._ws.close(code=4000)
        self._ws = ws
        self.connections.append(request.path_qs)
        # Discord compresses the whole transport when asked; discord.py reads plain text frames either way.
        self._zlib = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        await self._send({"op": HELLO, "d": {"heartbeat_interval": int(self.fake.heartbeat_interval * 1000)}})
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await self._received(json.loads(message.data))
        if self._ws is ws:
            self._ws = None
            self.connected.clear()
        return ws

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event now, or keep it for the RESUME if the bot is not connected."""
        payload = {"op": DISPATCH, "t": event, "s": self.sequence + 1, "d": data}
        self._sent.append(payload)
        if self.connected.is_set():
            await self._send(payload)

    async def disconnect(self, code: int = 4000) -> None:
        """Drop the socket with a resumable close code, as when Discord restarts a gateway node."""
        if self._ws is not None:
            self.connected.clear()
            await self._ws.close(code=code)

    async def request_reconnect(self) -> None:
        """Op 7: tell the bot to reconnect and resume."""
        await self._send({"op": RECONNECT, "d": None})

    async def _received(self, payload: dict[str, Any]) -> None:
        self.received.append(payload)
        op, data = payload.get("op"), payload.get("d") or {}
        if op == HEARTBEAT:
            await self._send({"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(data)
        elif op == RESUME:
            await self._resume(data)
        await self.fake.changed()

    async def _identify(self, data: dict[str, Any]) -> None:
        if data.get("token") != self.fake.token:
            await self._close(AUTHENTICATION_FAILED)
            return
        self.session_id, self.intents, self._sent = secrets.token_hex(16), data.get("intents", 0), []
        self.shard = data.get("shard")  # [id, count] from a sharded client; this fake serves one shard of one
        fake = self.fake
        ready = {"v": 10, "user": {**fake.bot_user.payload(), "verified": True, "mfa_enabled": False},
                 "guilds": [{"id": str(guild.id), "unavailable": True} for guild in fake.guilds],
                 "session_id": self.session_id, "session_type": "normal",
                 "resume_gateway_url": fake.resume_gateway_url,
                 "application": {"id": str(fake.application_id), "flags": 0},
                 "private_channels": [], "relationships": [], "presences": [], "geo_ordered_rtc_regions": [],
                 **({"shard": self.shard} if self.shard else {})}
        self.connected.set()
        await self.dispatch("READY", ready)
        for guild in fake.guilds:
            # Without the privileged GUILD_MEMBERS intent, Discord sends only the bot's own member.
            members = None if self.intents & GUILD_MEMBERS else [m for m in guild.members if m.user.id == fake.bot_user.id]
            await self.dispatch("GUILD_CREATE", guild.payload(members=members))

    async def _resume(self, data: dict[str, Any]) -> None:
        if data.get("token") != self.fake.token:
            await self._close(AUTHENTICATION_FAILED)
            return
        if data.get("session_id") != self.session_id:
            await self._send({"op": INVALID_SESSION, "d": False})
            return
        for payload in self._sent[data.get("seq") or 0:]:
            await self._send(payload)
        self.connected.set()
        await self.dispatch("RESUMED", {})

    async def _send(self, payload: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            return
        text = json.dumps(payload)
        if self._zlib is None:
            await self._ws.send_str(text)
        else:
            await self._ws.send_bytes(self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH))

    async def _close(self, code: int) -> None:
        if self._ws is not None:
            await self._ws.close(code=code)
