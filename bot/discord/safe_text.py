"""Text shown to moderators, made safe to read: invisible and direction-changing characters escaped.

The stored text stays raw; only what moderators read is escaped, so they see exactly what is there.
"""

from __future__ import annotations

import re

import discord

# Bidirectional overrides and isolates, zero-width and other invisible format characters, tag characters.
HIDDEN = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]")


def reveal(text: str, limit: int) -> str:
    """Escape what would hide or reorder text, neutralise markdown, and cut to `limit` characters."""
    shown = HIDDEN.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    shown = discord.utils.escape_markdown(discord.utils.escape_mentions(shown))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
