"""Checks REST requests against Discord's own OpenAPI description.

The fake answers only what the real API would accept, so a request that names a route
Discord does not have, or carries a body that does not fit the route's request schema,
is reported instead of silently working against the fake and failing against Discord.

The spec (1.2 MB) is loaded once per process; validators are compiled once per route.
It lives in `shared/discord-api-spec/openapi.json` beside the clone, or where
`DISCORD_API_SPEC` points.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:discord-api-spec"
DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "discord-api-spec" / "openapi.json"
_BOOLEAN_WORDS = {"true": True, "1": True, "false": False, "0": False}


def spec_path() -> Path:
    return Path(os.environ.get("DISCORD_API_SPEC") or DEFAULT_SPEC_PATH)


@functools.cache
def load_spec() -> dict[str, Any]:
    """The spec, with `SnowflakeType` widened to what Discord accepts.

    The spec types every snowflake as a string of digits (JSON numbers cannot hold 64 bits
    safely), but Discord also accepts the integer form, and discord.py sends it in places
    (allowed_mentions.users, message_reference.message_id, attachment ids). Anything else
    (letters, negatives, floats, booleans) still fails.
    """
    spec: dict[str, Any] = json.loads(spec_path().read_text(encoding="utf-8"))
    string_form = spec["components"]["schemas"]["SnowflakeType"]
    spec["components"]["schemas"]["SnowflakeType"] = {
        "anyOf": [string_form, {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}],
    }
    return spec


@functools.cache
def _registry() -> Registry:
    registry: Registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(load_spec(), default_specification=DRAFT202012))
    return registry


@functools.cache
def _validator(pointer: str) -> Draft202012Validator:
    """A validator for the schema at a JSON pointer into the spec; `$ref`s resolve inside the spec."""
    return Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=_registry())


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # the spec's path, e.g. "/channels/{channel_id}/messages"
    params: dict[str, str]  # path parameters taken from the request path


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """Spec paths as regexes, literal segments first, so `/users/@me` wins over `/users/{user_id}`."""
    compiled = []
    for template in load_spec()["paths"]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        literals = sum(1 for part in template.split("/") if part and not part.startswith("{"))
        compiled.append((literals, re.compile(f"^{regex}$"), template))
    compiled.sort(key=lambda item: -item[0])
    return [(regex, template) for _, regex, template in compiled]


def match(method: str, path: str) -> Operation | None:
    """The spec operation for a request path relative to `/api/v10`, or None if Discord has none."""
    for regex, template in _templates():
        found = regex.match(path)
        if found and method.lower() in load_spec()["paths"][template]:
            return Operation(method.upper(), template, found.groupdict())
    return None


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _parameters(op: Operation) -> list[tuple[dict[str, Any], str]]:
    """(parameter, pointer to its schema) for the path item's and the operation's parameters."""
    item = load_spec()["paths"][op.template]
    found = []
    for where, params in (((op.template,), item.get("parameters", [])),
                          ((op.template, op.method.lower()), item[op.method.lower()].get("parameters", []))):
        for index, param in enumerate(params):
            found.append((param, _pointer("paths", *where, "parameters", str(index), "schema")))
    return found


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    """Query strings are text; read them as the type the parameter declares."""
    if schema.get("type") == "boolean":
        return _BOOLEAN_WORDS.get(value.lower(), value)
    if schema.get("type") == "integer" and value.lstrip("-").isdigit():
        return int(value)
    return value


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request; `where` is e.g. ("body", "embeds", 0, "description")."""

    where: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.where))}: {self.message}"


def _wrong_kind(error: ValidationError) -> bool:
    """A union branch for another kind of value: the instance's JSON type or its `type` field does not fit."""
    return (not error.relative_path and error.validator == "type") or list(error.relative_path) == ["type"]


def _reason(error: ValidationError) -> ValidationError:
    """The most specific reason: inside an anyOf/oneOf, the branch of the right kind with the fewest errors.

    Discord's unions are told apart by a `type` field, so that is how the meant branch is found.
    """
    while error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        meant = [errors for errors in branches.values() if not any(map(_wrong_kind, errors))]
        if not meant:
            return error
        error = min(meant, key=len)[0]
    return error


def _problem(validator: Draft202012Validator, instance: Any, *where: str) -> list[Problem]:
    problems = []
    for error in map(_reason, validator.iter_errors(instance)):
        message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
        problems.append(Problem((*where, *error.absolute_path), message))
    return problems


def check(op: Operation, query: dict[str, str], body: Any, *, has_body: bool) -> list[Problem]:
    """What is wrong with a request for `op`: path and query parameters, then the JSON body."""
    problems: list[Problem] = []
    declared_query = set()
    for param, pointer in _parameters(op):
        name = param["name"]
        if param["in"] == "path" and name in op.params:
            problems += _problem(_validator(pointer), op.params[name], "path", name)
        elif param["in"] == "query":
            declared_query.add(name)
            if name in query:
                schema = _registry().resolver().lookup(f"{SPEC_URI}#{pointer}").contents
                problems += _problem(_validator(pointer), _coerce(query[name], schema), "query", name)
    problems += [Problem(("query", name), f"not a parameter of {op.method} {op.template}")
                 for name in query if name not in declared_query]

    request_body = load_spec()["paths"][op.template][op.method.lower()].get("requestBody")
    if request_body is None:
        if has_body:
            problems.append(Problem(("body",), f"{op.method} {op.template} takes no body"))
    elif not has_body:
        if request_body.get("required"):
            problems.append(Problem(("body",), f"{op.method} {op.template} requires a JSON body"))
    else:
        pointer = _pointer("paths", op.template, op.method.lower(), "requestBody", "content", "application/json", "schema")
        problems += _problem(_validator(pointer), body, "body")
    return problems
