"""Fitting model output into Discord's limits: 2000 characters a message, fences balanced, never empty."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 2000
EMPTY_OUTPUT = "*(the model wrote nothing — try Regenerate)*"
FENCE = re.compile(r"^\s*(```+|~~~+)(.*)$")


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split on line boundaries into chunks of at most `limit` characters.

    A code block cut by a split is closed at the end of one chunk and reopened (with its
    language) at the start of the next, so every chunk renders on its own.
    """
    if not text.strip():
        return [EMPTY_OUTPUT]
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    opener: str | None = None  # the fence line of the code block we are inside
    for line in _lines_within(text, limit // 2):
        closing = len(_close(opener)) if opener else 0
        if current and size + len(line) + 1 + closing > limit:
            chunks.append("\n".join(current) + _close(opener))
            current, size = ([opener], len(opener) + 1) if opener else ([], 0)
        current.append(line)
        size += len(line) + 1
        match = FENCE.match(line)
        if match:
            opener = None if opener else line.strip()
    chunks.append("\n".join(current) + _close(opener))
    return [chunk for chunk in chunks if chunk.strip()]


def _close(opener: str | None) -> str:
    return "\n" + FENCE.match(opener).group(1) if opener else ""


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
    if body.count("```") % 2:
        body += "\n```"
    return f"{header}\n{body} ▌" if body.strip() else f"{header}\n✍️ writing…"
