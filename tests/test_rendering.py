"""Fitting drafts into Discord messages: limits, balanced code fences, nothing empty."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.discord.rendering import EMPTY_OUTPUT, MESSAGE_LIMIT, MIN_LIMIT, split_message, streaming_preview


def test_short_text_is_one_message() -> None:
    assert split_message("Buy our boots.") == ["Buy our boots."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_nothing_empty_is_ever_sent(text: str) -> None:
    assert split_message(text) == [EMPTY_OUTPUT]


def test_long_text_splits_on_lines_within_the_limit() -> None:
    text = "\n".join(f"Line {i}: " + "word " * 30 for i in range(100))
    chunks = split_message(text)
    assert len(chunks) > 1
    assert all(0 < len(chunk) <= 2000 for chunk in chunks)
    assert "\n".join(chunks) == text


def test_a_line_longer_than_a_message_is_cut() -> None:
    chunks = split_message("x" * 4500, limit=2000)
    assert all(len(chunk) <= 2000 for chunk in chunks) and "".join(chunks).replace("\n", "") == "x" * 4500


def test_code_fences_stay_balanced_and_keep_their_language() -> None:
    code = "\n".join(f"print('row {i}')" + " " * 40 for i in range(120))
    chunks = split_message(f"Here is the script:\n```python\n{code}\n```\nThat is all.", limit=1500)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert len(chunk) <= 1500
        assert chunk.count("```") % 2 == 0, chunk
    assert all(chunk.startswith("```python") for chunk in chunks[1:-1])
    assert chunks[-1].rstrip().endswith("That is all.")


def test_the_streaming_preview_fits_and_shows_the_newest_text() -> None:
    text = "start " + "middle " * 500 + "newest words"
    preview = streaming_preview(text, "-# draft #1")
    assert len(preview) <= 2000
    assert preview.startswith("-# draft #1\n…") and preview.endswith("newest words ▌")
    assert streaming_preview("", "-# draft #1").endswith("writing…")
    assert streaming_preview("```py\nx = 1", "h").count("```") == 2


# --- every text: the limits hold, and nothing is lost --------------------------------------------

FENCE_RUN = re.compile("```")
REOPENER = re.compile(r"```\w*\n")
FRAGMENTS = st.one_of(
    st.sampled_from([
        "```", "```python\n", "```js", "\n```\n", "see ```inline``` code", "``", "`", "````", "`````` ",
        "<@123456789012345678>", "@everyone", "<#42>", "👩‍💻", "👨‍👩‍👧‍👦", "👍🏽", "🇫🇷🇩🇪", "é", "e\u0301", "漢字かなカナ한국어",
        " ", "\n", "\n\n", "\t", "   \n   ", "word ", "- item\n", "> quote\n",
    ]),
    st.text(max_size=40),
    st.builds(lambda unit, count: unit * count, st.sampled_from(["x", "漢", "🙂", "👩‍👩‍👧", " ", "\n", "ab ", "`"]),
              st.integers(1, 2500)),
    st.builds(lambda word: "```" + word + "\n", st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=1500)),
)
TEXTS = st.lists(FRAGMENTS, max_size=25).map("".join)
LIMITS = st.one_of(st.integers(MIN_LIMIT, 300), st.sampled_from([1800, MESSAGE_LIMIT]))


def inside_a_block(text: str, position: int) -> bool:
    """Whether `position` of the input lies inside a code block: every ``` toggles, as in Discord."""
    return sum(match.end() <= position for match in FENCE_RUN.finditer(text)) % 2 == 1


def reassembles(text: str, pieces: list[str]) -> bool:
    """Whether the pieces are the input, once the fences split_message added are taken off.

    Added are: a first line ```lang when a piece starts inside a code block of the input, and a last
    "\\n```" when it ends inside one. What is left of the pieces must be consecutive stretches of the
    input, and between two of them (and before the first, after the last) the input may hold only
    whitespace: the newline a piece was ended at, or a stretch of blanks that would have been a piece
    of its own, and empty (Discord trims whitespace at a message's edges and refuses blank messages).
    """

    @functools.cache
    def from_here(index: int, position: int) -> bool:
        if index == len(pieces):
            return not text[position:].strip()
        piece = pieces[index]
        gap = position
        while True:
            rest = piece
            if inside_a_block(text, gap):
                reopener = REOPENER.match(piece)
                if reopener is None:
                    return False
                rest = piece[reopener.end():]
            bodies = [rest, rest[: -len("\n```")]] if rest.endswith("\n```") else [rest]
            for body in bodies:
                closed = body is not rest
                if (body.strip() and text.startswith(body, gap) and closed == inside_a_block(text, gap + len(body))
                        and from_here(index + 1, gap + len(body))):
                    return True
            if gap == len(text) or not text[gap].isspace():
                return False
            gap += 1

    return from_here(0, 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, LIMITS)
def test_every_text_splits_into_balanced_pieces_within_the_limit_that_are_the_text(text: str, limit: int) -> None:
    pieces = split_message(text, limit=limit)
    assert pieces
    for piece in pieces:
        assert 0 < len(piece) <= limit and piece.strip(), piece
        assert len(FENCE_RUN.findall(piece)) % 2 == 0, piece
    if text.strip():
        assert reassembles(text, pieces), pieces
    else:
        assert pieces == [EMPTY_OUTPUT]


def test_a_long_language_line_is_not_reopened_beyond_the_limit() -> None:
    text = "```" + "y" * 997 + "\n" + ("z" * 1000 + "\n") * 3 + "```"
    pieces = split_message(text, limit=2000)
    assert len(pieces) > 1 and all(len(piece) <= 2000 for piece in pieces)
    assert reassembles(text, pieces)


def test_a_long_line_is_cut_between_words_and_never_inside_an_emoji() -> None:
    words = split_message("word " * 1000, limit=100)
    assert all(piece.endswith("word ") for piece in words[:-1])
    family = "👨‍👩‍👧‍👦"
    emoji = split_message(family * 300, limit=100)
    assert all(piece.startswith(family) and len(piece.replace(family, "")) == 0 for piece in emoji)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, st.sampled_from(["-# draft #1", "h", "-# a longer header: draft #12345 by someone"]), LIMITS)
def test_the_streaming_preview_holds_its_limit_and_shows_the_end_of_every_text(text: str, header: str, room: int) -> None:
    limit = len(header) + len("\n ▌") + room
    preview = streaming_preview(text, header, limit=limit)
    assert len(preview) <= limit and preview.startswith(header + "\n")
    assert len(FENCE_RUN.findall(preview)) % 2 == 0, preview
    if not text.strip():
        assert preview.endswith("writing…")
        return
    body = preview[len(header) + 1: -len(" ▌")]
    assert preview.endswith(" ▌")
    if inside_a_block(text, len(text)):
        assert body.endswith("\n```")
        body = body[: -len("\n```")]
    if body != text:
        reopener = REOPENER.match(body)
        shown = body[reopener.end():] if reopener else body
        assert shown.startswith("…") and text.endswith(shown[1:]), preview
        assert (reopener is not None) == inside_a_block(text, len(text) - len(shown) + 1)
