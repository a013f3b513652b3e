"""Fitting model output into Discord's limits: 2000 characters a message, fences balanced, never empty."""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass

MESSAGE_LIMIT = 2000
EMPTY_OUTPUT = "*(the model wrote nothing — try Regenerate)*"
MIN_LIMIT = len(EMPTY_OUTPUT)  # also room enough for a reopened and closed code block around a few characters
FENCE = "```"
CLOSER = "\n" + FENCE
LANGUAGE = re.compile(r"\w*")
CURSOR = " ▌"
WRITING = "✍️ writing…"
CUT_MARK = "…"
ZERO_WIDTH_JOINER = "\u200d"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split into pieces of at most `limit` characters, none blank, each with its code fences balanced.

    Pieces end at a line break where one fits (the break itself is dropped), else after a space, else
    between two characters that render apart. A code block cut by a split is closed at the end of one
    piece and reopened (with its language, unless that line would crowd the piece) at the start of the
    next. As in Discord, a fence opens or closes a block wherever it stands in a line. Apart from those
    fences, the pieces are the text: consecutive stretches of it, with only whitespace between them.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"a message limit below {MIN_LIMIT} characters cannot hold every piece")
    if not text.strip():
        return [EMPTY_OUTPUT]
    fences = _Fences.of(text)
    pieces: list[str] = []
    start = 0
    while start < len(text):
        reopener = _reopener(fences.open_at(start), limit)
        end, next_start = _piece_end(text, start, limit - len(reopener), fences)
        body = text[start:end]
        if body.strip():  # a blank stretch would be an empty message
            pieces.append(reopener + body + (CLOSER if fences.open_at(end) else ""))
        start = next_start
    return pieces


def streaming_preview(text: str, header: str, limit: int = MESSAGE_LIMIT) -> str:
    """What the message shows while the draft is still being written: the header and the newest text.

    Text cut off at the front is marked with "…"; a code block it cuts is reopened, one still open
    at the end is closed, so the preview renders as the draft will.
    """
    room = limit - len(header) - len("\n") - len(CURSOR)
    if room < MIN_LIMIT:
        raise ValueError(f"a header of {len(header)} characters leaves too little of {limit} for the text")
    if not text.strip():
        return f"{header}\n{WRITING}"
    fences = _Fences.of(text)
    closer = CLOSER if fences.open_at(len(text)) else ""
    if len(text) + len(closer) <= room:
        return f"{header}\n{text}{closer}{CURSOR}"

    def fits(start: int) -> bool:
        return len(_reopener(fences.open_at(start), room)) + len(CUT_MARK) + len(text) - start + len(closer) <= room

    earliest = max(1, len(text) - room)  # at least one character is cut, or there is nothing to mark
    start = next(
        (start for prefer in (_between_graphemes, _anywhere) for start in range(earliest, len(text))
         if fits(start) and fences.outside_any(start) and prefer(text, start)),
    )
    reopener = _reopener(fences.open_at(start), room)
    return f"{header}\n{reopener}{CUT_MARK}{text[start:]}{closer}{CURSOR}"


@dataclass(frozen=True)
class _Fences:
    """Where a text's code fences stand: every ``` toggles a block, wherever it is in a line."""

    starts: list[int]
    ends: list[int]
    openers: list[str]  # each fence with the language after it (as it would reopen its block)

    @classmethod
    def of(cls, text: str) -> _Fences:
        matches = list(re.finditer(FENCE, text))
        openers = []
        for index, match in enumerate(matches):
            line_end = text.find("\n", match.end())
            line_end = len(text) if line_end < 0 else line_end
            after = text[match.end(): min(line_end, matches[index + 1].start() if index + 1 < len(matches) else line_end)]
            openers.append(FENCE + (after if LANGUAGE.fullmatch(after) else ""))
        return cls([m.start() for m in matches], [m.end() for m in matches], openers)

    def open_at(self, position: int) -> str | None:
        """The opener of the block `position` lies in, or None outside code blocks."""
        passed = bisect.bisect_right(self.ends, position)
        return self.openers[passed - 1] if passed % 2 else None

    def outside_any(self, position: int) -> bool:
        """Whether a cut here leaves every fence whole (a cut inside ``` would change which fences there are)."""
        index = bisect.bisect_left(self.starts, position) - 1  # the last fence that starts before it
        return index < 0 or position >= self.ends[index]


def _reopener(opener: str | None, limit: int) -> str:
    """The line that reopens a cut block: its own opener unless fences would fill over half the piece."""
    if opener is None:
        return ""
    return opener + "\n" if len(opener) + 1 + len(CLOSER) <= limit // 2 else FENCE + "\n"


def _piece_end(text: str, start: int, room: int, fences: _Fences) -> tuple[int, int]:
    """Where the piece from `start` ends and the next begins: a cut that leaves at most `room`
    characters for the text and its closing fence, at the best kind of place there is."""

    def fits(end: int) -> bool:
        return end - start + (len(CLOSER) if fences.open_at(end) else 0) <= room

    if fits(len(text)):
        return len(text), len(text)
    ends = range(min(len(text) - 1, start + room), start, -1)
    line_break = next((end for end in ends if text[end] == "\n" and fits(end)), None)
    if line_break is not None:
        return line_break, line_break + 1
    end = next(end for prefer in (_after_space, _between_graphemes, _anywhere) for end in ends
               if fits(end) and fences.outside_any(end) and prefer(text, end))
    return end, end


def _after_space(text: str, position: int) -> bool:
    return text[position - 1].isspace() and _between_graphemes(text, position)


def _between_graphemes(text: str, position: int) -> bool:
    """Whether a cut here keeps together what renders as one character: an accent and its letter,
    an emoji and its skin tone, variation or tags, a ZWJ sequence, a flag's two letters."""
    after, before = text[position], text[position - 1]
    if before == ZERO_WIDTH_JOINER or after == ZERO_WIDTH_JOINER or unicodedata.category(after) in ("Mn", "Me", "Mc"):
        return False
    if "\U0001f3fb" <= after <= "\U0001f3ff" or "\U000e0020" <= after <= "\U000e007f":
        return False
    indicators = 0
    while position - indicators > 0 and _regional_indicator(text[position - indicators - 1]):
        indicators += 1
    return not (_regional_indicator(after) and indicators % 2)


def _regional_indicator(character: str) -> bool:
    return "\U0001f1e6" <= character <= "\U0001f1ff"


def _anywhere(text: str, position: int) -> bool:
    return True

