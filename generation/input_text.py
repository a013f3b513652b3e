"""What members type, made safe to store and to hand to the model: no control characters, no hidden text.

Removed: C0 and C1 control characters except tab and newline (NUL among them), lone surrogates
(they cannot be encoded, so they could never be stored), bidirectional embeddings, overrides and
isolates (they reorder what readers see), and tag characters (invisible text that models still read,
a way to smuggle instructions past the people who read the input).
"""

from __future__ import annotations

import re

UNWANTED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]")
# Characters that show nothing on their own: an input made of them only is empty.
INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]")


def clean(text: str) -> str:
    """The text without the characters above; line ends become "\\n"."""
    return UNWANTED.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def is_blank(text: str) -> bool:
    """True when nothing visible is left: only whitespace and invisible characters."""
    return not INVISIBLE.sub("", text).strip()
