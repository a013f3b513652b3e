"""The fake's REST API under /api/v10: every request is recorded, checked, then answered as Discord does.

Order of work for a request: record it; 401 without the bot token (webhook and interaction
routes use their token instead); an injected 429; route and body against the OpenAPI spec
(400, code 50035, and a violation on mismatch); then the route's handler. A route that the
spec has but the fake does not implement answers 501 and is a violation too, so a test
never passes on a call the fake silently ignored.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, hdrs, web

from . import openapi
from .gateway import GUILD_MESSAGES
from .model import (
    EPHEMERAL,
    LOADING,
    Channel,
    is_empty,
    limit_problems,
    message_fields,
    new_message,
    now_iso,
    snowflake,
)
from .openapi import Problem

if TYPE_CHECKING:
    from .server import FakeDiscord, Interaction


@dataclass
class UploadedFile:
    field: str  # the multipart field name, e.g. "files[0]"
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request the bot made, and what the fake answered."""

    method: str
    path: str  # relative to /api/v10, e.g. "/channels/123/messages"
    route: str | None  # the spec's template, e.g. "/channels/{channel_id}/messages"; None if Discord has no such route
    query: dict[str, str]
    json: Any  # the JSON body, or a multipart request's payload_json; None without a body
    files: list[UploadedFile] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic)
    status: int = 0
    response: Any = None
    problems: list[Problem] = field(default_factory=list)


class DiscordError(Exception):
    """An error answer in Discord's shape: {"message": …, "code": …, "errors"?: …}."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code, **({"errors": errors} if errors else {})}


Handler = Callable[["FakeDiscord", RecordedRequest, dict[str, str]], Awaitable[tuple[int, Any]]]
ROUTES: dict[tuple[str, str], Handler] = {}
_TOKEN_ROUTES = ("/webhooks/{webhook_id}/{webhook_token}", "/interactions/")  # authorised by the URL's token


def route(method: str, *templates: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for template in templates:
            ROUTES[(method, template)] = handler
        return handler
    return register


def invalid(fake: FakeDiscord, request: RecordedRequest, problems: list[Problem]) -> DiscordError:
    """Record a violation and build Discord's 50035 answer, with errors nested by JSON path."""
    request.problems += problems
    fake.violations.append(request)
    errors: dict[str, Any] = {}
    for problem in problems:
        node = errors
        for part in problem.where[1:] if problem.where[:1] == ("body",) else problem.where:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": "BASE_TYPE_INVALID", "message": problem.message})
    return DiscordError(400, 50035, "Invalid Form Body", errors)


async def handle(fake: FakeDiscord, request: web.Request) -> web.Response:
    path = "/" + request.match_info["tail"]
    operation = openapi.match(request.method, path)
    recorded = RecordedRequest(request.method, path, operation.template if operation else None, dict(request.query), None)
    fake.requests.append(recorded)
    # discord.py retries a 429 only when it came through Discord's proxy (Via), and parses JSON only
    # when the content type is exactly "application/json", without a charset.
    headers = {"Via": "1.1 google"}
    try:
        recorded.json, recorded.files, has_body = await _read_body(fake, recorded, request)
        status, data = await _answer(fake, recorded, request, operation, has_body, headers)
    except DiscordError as error:
        status, data = error.status, error.body
    recorded.status, recorded.response = status, data
    await fake.changed()
    if status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(status=status, body=json.dumps(data).encode(),
                        headers={**headers, hdrs.CONTENT_TYPE: "application/json"})


async def _read_body(fake: FakeDiscord, recorded: RecordedRequest, request: web.Request) -> tuple[Any, list[UploadedFile], bool]:
    """JSON, or multipart with the JSON in `payload_json` and files in `files[n]`, as discord.py sends them."""
    text: str | None = None
    files = []
    if request.content_type == "multipart/form-data":
        async for part in await request.multipart():
            assert isinstance(part, BodyPartReader)  # discord.py never nests multiparts
            if part.name == "payload_json":
                text = await part.text()
            else:
                content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                files.append(UploadedFile(part.name or "", part.filename or "", content_type, bytes(await part.read())))
    else:
        text = (await request.text()) or None
    if text is None:
        return None, files, False
    try:
        return json.loads(text), files, True
    except ValueError:
        raise invalid(fake, recorded, [Problem(("body",), "The request body contains invalid JSON.")]) from None


async def _answer(fake: FakeDiscord, recorded: RecordedRequest, request: web.Request,
                  operation: openapi.Operation | None, has_body: bool, headers: dict[str, str]) -> tuple[int, Any]:
    if operation is None:
        recorded.problems.append(Problem(("path",), f"Discord has no route {recorded.method} {recorded.path}"))
        fake.violations.append(recorded)
        return 404, {"message": "404: Not Found", "code": 0}
    if not operation.template.startswith(_TOKEN_ROUTES) and request.headers.get("Authorization") != f"Bot {fake.token}":
        return 401, {"message": "401: Unauthorized", "code": 0}
    retry_after = fake.take_rate_limit(recorded)
    if retry_after is not None:
        headers.update({"Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                        "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": operation.template,
                        "X-RateLimit-Scope": "user"})
        return 429, {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    problems = openapi.check(operation, recorded.query, recorded.json, has_body=has_body)
    if problems:
        raise invalid(fake, recorded, problems)
    handler = ROUTES.get((operation.method, operation.template))
    if handler is None:
        recorded.problems.append(Problem(("path",), f"the fake does not implement {operation.method} {operation.template}"))
        fake.violations.append(recorded)
        return 501, {"message": "Not implemented by the fake Discord", "code": 0}
    return await handler(fake, recorded, operation.params)


# Helpers shared by the handlers.

def _truthy(request: RecordedRequest, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def _channel(fake: FakeDiscord, channel_id: str) -> Channel:
    for guild in fake.guilds:
        for channel in guild.channels:
            if str(channel.id) == channel_id:
                return channel
    raise DiscordError(404, 10003, "Unknown Channel")


def _message(fake: FakeDiscord, message_id: int | str, channel_id: str | None = None) -> dict[str, Any]:
    message = fake.messages.get(int(message_id))
    if message is None or (channel_id is not None and message["channel_id"] != channel_id):
        raise DiscordError(404, 10008, "Unknown Message")
    return message


def _attachments(fake: FakeDiscord, request: RecordedRequest, body: dict[str, Any],
                 current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attachments after a create or edit: those the body keeps (by id), plus one per uploaded file."""
    listed = body.get("attachments")
    kept_ids = {str(item.get("id")) for item in listed or []}
    kept = list(current) if listed is None else [item for item in current if item["id"] in kept_ids]
    for index, upload in enumerate(request.files):
        if len(upload.data) > fake.attachment_size_limit:
            request.problems.append(Problem(("body", upload.field), f"{upload.filename} is {len(upload.data)} bytes, "
                                                                     f"over the limit of {fake.attachment_size_limit}"))
            fake.violations.append(request)
            raise DiscordError(413, 40005, "Request entity too large")
        number = upload.field[len("files["):-1] if upload.field.startswith("files[") else str(index)
        meta: dict[str, Any] = next((item for item in listed or [] if str(item.get("id")) == number), {})
        attachment_id = str(snowflake())
        filename = meta.get("filename") or upload.filename
        fake.attachment_data[attachment_id] = upload.data
        url = f"{fake.url}/attachments/{attachment_id}/{filename}"
        kept.append({"id": attachment_id, "filename": filename, "size": len(upload.data), "url": url,
                     "proxy_url": url, "content_type": upload.content_type,
                     **({"description": meta["description"]} if meta.get("description") else {})})
    return kept


async def _save(fake: FakeDiscord, request: RecordedRequest, message: dict[str, Any], *, created: bool) -> dict[str, Any]:
    """Store a message after Discord's own checks, and tell the gateway as Discord would."""
    problems = [Problem(("body", *where), text) for where, text in limit_problems(message)]
    if problems:
        raise invalid(fake, request, problems)
    if is_empty(message) and not message["flags"] & LOADING:
        request.problems.append(Problem(("body",), "Cannot send an empty message"))
        fake.violations.append(request)
        raise DiscordError(400, 50006, "Cannot send an empty message")
    fake.messages[int(message["id"])] = message
    if not message["flags"] & EPHEMERAL and fake.gateway.intents & GUILD_MESSAGES:
        await fake.gateway.dispatch("MESSAGE_CREATE" if created else "MESSAGE_UPDATE", message)
    return message


def _edited(fake: FakeDiscord, request: RecordedRequest, message: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A new version of `message` with the body's fields; editing a loading message fills it in.

    Flags can be added, not removed: a message never stops being ephemeral.
    """
    fields = message_fields(body, fake.known_users())
    loading = bool(message["flags"] & LOADING)
    flags = (message["flags"] & ~LOADING) | fields.pop("flags", 0)
    return {**message, **fields, "flags": flags, "attachments": _attachments(fake, request, body, message["attachments"]),
            "edited_timestamp": None if loading else now_iso()}


async def _delete(fake: FakeDiscord, message: dict[str, Any]) -> tuple[int, None]:
    del fake.messages[int(message["id"])]
    if not message["flags"] & EPHEMERAL and fake.gateway.intents & GUILD_MESSAGES:
        await fake.gateway.dispatch("MESSAGE_DELETE", {key: message[key] for key in ("id", "channel_id", "guild_id")})
    return 204, None


# Login and gateway discovery.

@route("GET", "/users/@me")
async def get_current_user(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return 200, {**fake.bot_user.payload(), "verified": True, "mfa_enabled": False, "locale": "en-US"}


@route("GET", "/oauth2/applications/@me", "/applications/@me")
async def get_application(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return 200, {"id": str(fake.application_id), "name": fake.bot_user.username, "description": "", "icon": None,
                 "bot_public": False, "bot_require_code_grant": False, "owner": fake.owner.payload(),
                 "verify_key": "0" * 64, "flags": 0, "team": None, "bot": fake.bot_user.payload(),
                 "interactions_endpoint_url": None, "redirect_uris": []}


@route("GET", "/gateway", "/gateway/bot")
async def get_gateway(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return 200, {"url": fake.gateway_url, "shards": 1, "session_start_limit": {
        "total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}}


# Application commands: stored per scope (None = global, else the guild id) so tests can read what was published.

def _command_scope(fake: FakeDiscord, params: dict[str, str]) -> int | None:
    if params["application_id"] != str(fake.application_id):
        raise DiscordError(403, 50001, "Missing Access")
    if "guild_id" not in params:
        return None
    if not any(str(guild.id) == params["guild_id"] for guild in fake.guilds):
        raise DiscordError(404, 10004, "Unknown Guild")
    return int(params["guild_id"])


@route("GET", "/applications/{application_id}/commands", "/applications/{application_id}/guilds/{guild_id}/commands")
async def get_commands(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return 200, fake.commands.get(_command_scope(fake, params), [])


@route("PUT", "/applications/{application_id}/commands", "/applications/{application_id}/guilds/{guild_id}/commands")
async def put_commands(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    """Bulk overwrite: a command keeps its id when its name and type stay, as on Discord."""
    scope = _command_scope(fake, params)
    previous = {(command["name"], command["type"]): command for command in fake.commands.get(scope, [])}
    published = []
    for body in request.json or []:
        kind = body.get("type") or 1
        old = previous.get((body["name"], kind))
        published.append({"description": "", "options": [], "default_member_permissions": None, "nsfw": False,
                          "contexts": None, "integration_types": [0], **body, "type": kind,
                          "id": old["id"] if old else str(snowflake()), "application_id": str(fake.application_id),
                          "version": str(snowflake()), **({"guild_id": str(scope)} if scope else {})})
    fake.commands[scope] = published
    return 200, published


# Channel messages, sent with the bot token.

@route("POST", "/channels/{channel_id}/messages")
async def create_message(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    channel = _channel(fake, params["channel_id"])
    body = request.json or {}
    fields = message_fields(body, fake.known_users())
    reference = body.get("message_reference")
    if reference:
        referenced = _message(fake, reference["message_id"])
        fields.update(type=19, referenced_message=referenced, message_reference={
            "message_id": referenced["id"], "channel_id": referenced["channel_id"], "guild_id": referenced["guild_id"]})
    message = new_message(channel, fake.bot_user.payload(), **fields, attachments=_attachments(fake, request, body, []))
    return 200, await _save(fake, request, message, created=True)


@route("GET", "/channels/{channel_id}")
async def get_channel(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return 200, _channel(fake, params["channel_id"]).payload()


@route("GET", "/channels/{channel_id}/messages/{message_id}")
async def get_message(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return 200, _message(fake, params["message_id"], params["channel_id"])


@route("PATCH", "/channels/{channel_id}/messages/{message_id}")
async def edit_message(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    message = _message(fake, params["message_id"], params["channel_id"])
    if message["author"]["id"] != str(fake.bot_user.id):
        raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
    return 200, await _save(fake, request, _edited(fake, request, message, request.json or {}), created=False)


@route("DELETE", "/channels/{channel_id}/messages/{message_id}")
async def delete_message(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return await _delete(fake, _message(fake, params["message_id"], params["channel_id"]))


# Interactions: the callback (within the response window, once), then the token's webhook (until it expires).

@route("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
async def interaction_callback(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    interaction = fake.interactions.get(int(params["interaction_id"]))
    if interaction is None or interaction.token != params["interaction_token"]:
        raise DiscordError(404, 10062, "Unknown interaction")
    if interaction.response is not None:
        raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
    if time.monotonic() - interaction.created_at > fake.interaction_response_window:
        raise DiscordError(404, 10062, "Unknown interaction")
    body = request.json
    kind, data = body["type"], body.get("data") or {}
    message: dict[str, Any] | None = None
    if kind in (4, 5):  # CHANNEL_MESSAGE_WITH_SOURCE, DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
        fields = message_fields(data, fake.known_users()) if kind == 4 else {"flags": (data.get("flags") or 0) & EPHEMERAL}
        flags = fields.pop("flags", 0) | (LOADING if kind == 5 else 0)
        message = new_message(interaction.channel, fake.bot_user.payload(), **fields, flags=flags,
                              type=20 if interaction.type == 2 else 0, webhook_id=str(fake.application_id),
                              application_id=str(fake.application_id), interaction_metadata=interaction.metadata(),
                              attachments=_attachments(fake, request, data, []))
        await _save(fake, request, message, created=True)
    elif kind in (6, 7):  # DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE: the message the component is on
        if "message" not in interaction.payload:
            raise invalid(fake, request, [Problem(("body", "type"), "This interaction has no message to update.")])
        message = _message(fake, interaction.payload["message"]["id"])
        if kind == 7:
            message = await _save(fake, request, _edited(fake, request, message, data), created=False)
    elif kind not in (8, 9):  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT, MODAL
        raise invalid(fake, request, [Problem(("body", "type"), f"Unsupported callback type {kind}.")])
    interaction.response, interaction.responded_at = body, time.monotonic()
    interaction.original_id = int(message["id"]) if message else None
    if not _truthy(request, "with_response"):
        return 204, None
    resource: dict[str, Any] = {"type": kind, **({"message": message} if message else {})}
    return 200, {"interaction": {"id": str(interaction.id), "type": interaction.type,
                                 "response_message_id": message and message["id"],
                                 "response_message_loading": kind == 5,
                                 "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL)},
                 "resource": resource}


def _webhook_interaction(fake: FakeDiscord, params: dict[str, str]) -> Interaction:
    interaction = next((item for item in fake.interactions.values() if item.token == params["webhook_token"]), None)
    if interaction is None or params["webhook_id"] != str(fake.application_id):
        raise DiscordError(404, 10015, "Unknown Webhook")
    if interaction.expired:
        raise DiscordError(401, 50027, "Invalid Webhook Token")
    if interaction.response is None:
        raise DiscordError(404, 10015, "Unknown Webhook")  # the webhook exists once the interaction is acknowledged
    return interaction


def _webhook_message(fake: FakeDiscord, interaction: Interaction, message_id: str) -> dict[str, Any]:
    wanted = interaction.original_id if message_id == "@original" else int(message_id)
    if wanted is None or (wanted != interaction.original_id and wanted not in interaction.followup_ids):
        raise DiscordError(404, 10008, "Unknown Message")
    return _message(fake, wanted)


@route("POST", "/webhooks/{webhook_id}/{webhook_token}")
async def create_followup(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    """A followup; the first one after a "thinking" defer fills in the loading message instead, as on Discord."""
    interaction = _webhook_interaction(fake, params)
    body = request.json or {}
    original = fake.messages.get(interaction.original_id or 0)
    if original is not None and original["flags"] & LOADING:  # it stays as ephemeral as the defer said
        body = {**body, "flags": (body.get("flags") or 0) & ~EPHEMERAL}
        message = await _save(fake, request, _edited(fake, request, original, body), created=False)
    else:
        fields = message_fields(body, fake.known_users())
        message = new_message(interaction.channel, fake.bot_user.payload(), **fields,
                              webhook_id=str(fake.application_id), application_id=str(fake.application_id),
                              interaction_metadata=interaction.metadata(),
                              attachments=_attachments(fake, request, body, []))
        await _save(fake, request, message, created=True)
    interaction.followup_ids.append(int(message["id"]))
    return (200, message) if _truthy(request, "wait") else (204, None)


_WEBHOOK_MESSAGE = ("/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                    "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")


@route("GET", *_WEBHOOK_MESSAGE)
async def get_webhook_message(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return 200, _webhook_message(fake, _webhook_interaction(fake, params), params.get("message_id", "@original"))


@route("PATCH", *_WEBHOOK_MESSAGE)
async def edit_webhook_message(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    message = _webhook_message(fake, _webhook_interaction(fake, params), params.get("message_id", "@original"))
    return 200, await _save(fake, request, _edited(fake, request, message, request.json or {}), created=False)


@route("DELETE", *_WEBHOOK_MESSAGE)
async def delete_webhook_message(fake: FakeDiscord, request: RecordedRequest, params: dict[str, str]) -> tuple[int, Any]:
    return await _delete(fake, _webhook_message(fake, _webhook_interaction(fake, params), params.get("message_id", "@original")))
