"""Fitting model output into Discord's limits: 2000 characters a message, fences balanced, never empty."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 2000
EMPTY_OUTPUT = "*(the model wrote nothing — try Regenerate)*"
FENCE = "```"
LANGUAGE = re.compile(r"\w*")


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split on line boundaries into chunks of at most `limit` characters.

    A code block cut by a split is closed at the end of one chunk and reopened (with its
    language) at the start of the next, so every chunk renders on its own. As in Discord, a fence
    opens or closes a block wherever it stands in a line.
    """
    if not text.strip():
        return [EMPTY_OUTPUT]
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    opener: str | None = None  # the fence (with its language) of the code block we are inside
    for line in _lines_within(text, limit // 2):
        closing = len(_close(_opener_after(line, opener)))
        if current and size + len(line) + 1 + closing > limit:
            chunks.append("\n".join(current) + _close(opener))
            current, size = ([opener], len(opener) + 1) if opener else ([], 0)
        current.append(line)
        size += len(line) + 1
        opener = _opener_after(line, opener)
    chunks.append("\n".join(current) + _close(opener))
    return [chunk for chunk in chunks if chunk.strip()]


def _opener_after(line: str, opener: str | None) -> str | None:
    """The fence (with its language) of the block a line leaves open, or None: every fence toggles."""
    for after in line.split(FENCE)[1:]:
        opener = None if opener else FENCE + (after if LANGUAGE.fullmatch(after) else "")
    return opener


def _close(opener: str | None) -> str:
    return "\n" + FENCE if opener else ""


def _lines_within(text: str, width: int) -> list[str]:
    """Lines, with any line longer than `width` cut into pieces that fit."""
    lines: list[str] = []
    for line in text.split("\n"):
        while len(line) > width:
            lines.append(line[:width])
            line = line[width:]
        lines.append(line)
    return lines


def streaming_preview(text: str, header: str, limit: int = MESSAGE_LIMIT) -> str:
    """What the message shows while the draft is still being written: the header and the newest text."""
    room = limit - len(header) - 10  # newline, cursor and a closing fence
    body = text if len(text) <= room else "…" + text[-(room - 1):]
    if body.count(FENCE) % 2:
        body += "\n" + FENCE
    return f"{header}\n{body} ▌" if body.strip() else f"{header}\n✍️ writing…"
