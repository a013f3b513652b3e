"""How each platform counts characters: one rule per platform, each with its source beside it.

A limit means nothing unless the text is counted the way the platform counts it: Google counts
East Asian wide characters twice, X weighs code points, emoji and URLs by its published table.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import regex

GRAPHEME = regex.compile(r"\X")


@dataclass(frozen=True)
class CountingRule:
    """A way of counting a field's characters, named after its source so a reader can check it."""

    name: str
    source: str
    count: Callable[[str], int]


def graphemes(text: str) -> list[str]:
    """What a reader sees as single characters: an emoji with its modifiers, a letter with its accents."""
    return GRAPHEME.findall(unicodedata.normalize("NFC", text))


def plain_length(text: str) -> int:
    # Meta and LinkedIn publish their limits in "characters" with no weighting rule; a character is
    # what a reader sees as one (a grapheme cluster), after NFC normalization.
    return len(graphemes(text))


def double_width_length(text: str) -> int:
    # Google Ads: "double-width characters (Chinese, Japanese, Korean) count as 2" against a text
    # limit (support.google.com/google-ads/answer/7684791; AdMob states it in answer/6177141 and
    # Microsoft Advertising in its ad-text rules). Double-width is Unicode's East Asian Width
    # property W (wide) or F (fullwidth), UAX #11; a grapheme counts 2 when any of its code points is.
    return sum(2 if any(unicodedata.east_asian_width(point) in "WF" for point in cluster) else 1
               for cluster in graphemes(text))


# X (developer.x.com/en/docs/counting-characters; twitter-text's config v3): the text is NFC-normalized,
# every URL counts 23 (transformed_url_length), every emoji counts 2 however many code points it has
# (emoji_parsing_enabled), and every other code point counts 1 inside these ranges, 2 outside
# (default_weight 200 on a scale of 100). The `twitter-text-parser` package implements the same table
# but does not import on setuptools >= 82 (it imports pkg_resources) and its emoji list is Emoji 12.0
# (2019), so copydesk counts with this table and Unicode's current emoji properties (the `regex` module).
X_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
X_URL_WEIGHT = 23
X_HEAVY_WEIGHT = 2
# twitter-text extracts URLs with a scheme, and bare domains under a known top-level domain; copydesk
# takes addresses with a scheme or "www.", and bare domains under the commonest generic TLDs or any
# two-letter country code (its full TLD list is not shipped here).
X_URL = regex.compile(
    r"(?<![\w@.])(?:https?://[^\s<>\"]+|(?:www\.)?(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    r"(?:com|net|org|info|biz|io|ai|app|dev|shop|store|online|site|xyz|[a-z]{2})\b(?:/[^\s<>\"]*)?)",
    regex.IGNORECASE,
)
X_URL_TRAILING = ".,;:!?)]}'\"。、！？"
EMOJI = regex.compile(
    r"\p{Regional_Indicator}{2}|[#*0-9]\uFE0F?\u20E3|\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F"
    r"|\p{Extended_Pictographic}[\u200D\p{Emoji_Modifier}]"
)


def x_weighted_length(text: str) -> int:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    total, position = 0, 0
    for match in X_URL.finditer(text):
        url = match.group().rstrip(X_URL_TRAILING)
        total += _x_plain(text[position:match.start()]) + X_URL_WEIGHT
        position = match.start() + len(url)
    return total + _x_plain(text[position:])


def _x_plain(text: str) -> int:
    total = 0
    for cluster in GRAPHEME.findall(text):
        if EMOJI.match(cluster):
            total += X_HEAVY_WEIGHT
        else:
            total += sum(1 if any(low <= ord(point) <= high for low, high in X_LIGHT_RANGES) else X_HEAVY_WEIGHT
                         for point in cluster)
    return total


PLAIN = CountingRule("characters", "the platform's published limits, in characters as a reader sees them",
                     plain_length)
DOUBLE_WIDTH = CountingRule("double-width count 2", "support.google.com/google-ads/answer/7684791",
                            double_width_length)
X_WEIGHTED = CountingRule("X weighted characters", "developer.x.com/en/docs/counting-characters",
                          x_weighted_length)
