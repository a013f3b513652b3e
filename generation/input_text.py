"""What members type, made safe to store and to hand to the model: no control characters, no hidden text.

Removed: C0 and C1 control characters except tab and newline (NUL among them), lone surrogates
(they cannot be encoded, so they could never be stored), bidirectional embeddings, overrides and
isolates (they reorder what readers see), and tag characters (invisible text that models still read,
a way to smuggle instructions past the people who read the input).
"""

from __future__ import annotations

import re

UNSTORABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
HIDDEN = re.compile(r"[\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]")
# Characters that show nothing on their own: an input made of them only is empty.
INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]")


def storable(text: str) -> str:
    """The text without control characters and lone surrogates; line ends become "\\n".

    Enough for what members write to moderators (flag reasons, improvements): there the hidden
    characters are kept, stored raw and shown escaped, so moderators see exactly what was sent.
    """
    return UNSTORABLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def clean(text: str) -> str:
    """The text without any of the characters above: what a prompt may be built from."""
    return HIDDEN.sub("", storable(text))


def is_blank(text: str) -> bool:
    """True when nothing visible is left: only whitespace and invisible characters."""
    return not INVISIBLE.sub("", text).strip()
