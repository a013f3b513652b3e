"""Fitting drafts into Discord messages: limits, balanced code fences, nothing empty."""

from __future__ import annotations

import pytest

from bot.discord.rendering import EMPTY_OUTPUT, split_message, streaming_preview


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
