"""Fields that break their limit are written again, a bounded number of times, then marked.

Every round asks for all the failing fields at once (the engine batches them); a field that still
does not fit after FIELD_TRIES rounds keeps its best try and says that it is over its limit (or
missing): a draft never claims a field fits when it does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from generation.platforms.layout import FieldStatus, PlatformDraft, clean_field, field_prompt, measure
from generation.platforms.specs import get_platform
from generation.prompt import Prompt

FIELD_TRIES = 2  # rounds of regeneration for the fields that do not fit, after the first draft
TOKENS_PER_CHARACTER = 0.3  # a field's token budget: English runs about 4 characters a token; CJK fewer
FIELD_TOKEN_MARGIN = 8

Complete = Callable[[Prompt, int], Awaitable[str | None]]  # (prompt, max new tokens) → text, None if it failed


async def fit(draft: PlatformDraft, request: str, complete: Complete, tries: int = FIELD_TRIES) -> PlatformDraft:
    """Write again each field of `draft` that does not fit, up to `tries` rounds; `request` is the
    member's request as the model saw it."""
    platform = get_platform(draft.platform)
    for _ in range(tries):
        failing = [position for position, field in enumerate(draft.fields) if field.status != FieldStatus.FITS]
        if not failing:
            break

        async def again(position: int) -> None:
            nonlocal draft
            field = draft.fields[position]
            spec = platform.field(field.key)
            prompt = field_prompt(platform, spec, request, field.text or None)
            written = await complete(prompt, int(spec.target * TOKENS_PER_CHARACTER) + FIELD_TOKEN_MARGIN)
            text = _first_line(written or "", spec.label)
            candidate = measure(platform, spec, field.index, text, field.regenerations + 1)
            # Keep the better of the two: one that fits, else the shorter overrun; an empty answer never wins.
            better = candidate.status == FieldStatus.FITS or (
                candidate.status == FieldStatus.OVER and (field.status == FieldStatus.MISSING or candidate.count < field.count))
            kept = candidate if better else measure(platform, spec, field.index, field.text, field.regenerations + 1)
            draft = draft.replace_field(position, kept)

        await asyncio.gather(*(again(position) for position in failing))
    return draft


def _first_line(text: str, label: str) -> str:
    """The field in a one-field answer: its first non-empty line, without a repeated label."""
    for line in text.splitlines():
        line = clean_field(line)
        if line.lower().startswith(label.lower()):
            line = clean_field(line[len(label):].lstrip(" 0123456789").lstrip(":："))
        if line:
            return line
    return ""
