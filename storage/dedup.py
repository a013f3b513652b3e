"""Duplicate detection for exports that stream: exact and near-exact, in memory fixed in advance.

- Text is normalized first (Unicode NFKC, case folded, punctuation dropped, whitespace
  collapsed), so "Great tea!" and "great  tea" are the same text.
- Exact duplicates: the same normalized prompt and answer(s).
- Near-exact duplicates: the same normalized prompt and answers whose character 5-grams have a
  Jaccard similarity of about 0.8 or more (a word or two changed), found with MinHash (64
  hashes) and locality-sensitive hashing (8 bands of 8): two answers with similarity 0.9 share
  a band 99 % of the time, 0.8: 77 %, 0.6: 14 %, 0.5: 3 %.
- What was seen is kept in a Bloom filter of fixed size, not in a set: memory is the same for a
  thousand rows or ten million. The price is a small chance that a unique row is taken for a
  duplicate; `false_positive_rate()` estimates it (with the default 16 MiB per format, below
  0.01 % up to 300k rows and about 1 % at a million; give more bits for larger exports).

Everything is deterministic (no per-process hash seed), so the same data exports the same rows.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
from collections.abc import Sequence
from enum import StrEnum

import numpy as np

SHINGLE_CHARS = 5
BANDS, ROWS_PER_BAND = 8, 8
BLOOM_HASHES = 7
DEFAULT_BLOOM_BITS = 1 << 27  # 16 MiB

_NOT_WORD = re.compile(r"[\W_]+")
_PRIME = np.uint64(1_099_511_628_211)  # FNV's 64-bit prime, for rolling the 5-grams' code points
_GENERATOR = np.random.default_rng(20261128)  # fixed: the same text has the same signature in every run
_MULTIPLIERS = _GENERATOR.integers(1, 2**63, size=BANDS * ROWS_PER_BAND, dtype=np.uint64) | np.uint64(1)
_OFFSETS = _GENERATOR.integers(0, 2**63, size=BANDS * ROWS_PER_BAND, dtype=np.uint64)


class Duplicate(StrEnum):
    EXACT = "exact"
    NEAR = "near"


@functools.lru_cache(maxsize=4096)  # a prompt is normalized for every row made from it; bounded, so memory stays flat
def normalize(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def digest(*parts: str | bytes) -> bytes:
    """A 128-bit hash of the parts, kept apart by a separator no normalized text contains."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\x1f")
    return hasher.digest()


def minhash(text: str) -> np.ndarray:
    """The MinHash signature of a normalized text's character 5-grams (64 unsigned 64-bit values)."""
    points = np.frombuffer((text or " ").encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = min(SHINGLE_CHARS, len(points))
    shingles = np.zeros(len(points) - width + 1, dtype=np.uint64)
    for offset in range(width):  # a polynomial hash of each 5-gram, wrapping at 2**64
        shingles = shingles * _PRIME + points[offset:len(points) - width + 1 + offset]
    return (shingles[:, None] * _MULTIPLIERS + _OFFSETS).min(axis=0)


class BloomFilter:
    """A set of 128-bit keys that answers "maybe seen" or "never seen", in `bits` bits.

    Keys must be uniformly distributed (`digest` values): their two halves are the two hashes.
    """

    def __init__(self, bits: int = DEFAULT_BLOOM_BITS) -> None:
        if bits < 64 or bits & (bits - 1):
            raise ValueError(f"a Bloom filter's size is a power of two of at least 64 bits, not {bits}")
        self._bytes = np.zeros(bits // 8, dtype=np.uint8)
        self._mask = np.uint64(bits - 1)
        self.bits, self.added = bits, 0

    def _positions(self, keys: Sequence[bytes]) -> np.ndarray:
        halves = np.frombuffer(b"".join(keys), dtype="<u8").reshape(len(keys), 2)
        steps = np.arange(BLOOM_HASHES, dtype=np.uint64)
        return (halves[:, :1] + steps * (halves[:, 1:] | np.uint64(1))) & self._mask  # double hashing

    def seen(self, keys: Sequence[bytes]) -> np.ndarray:
        """For each key, whether it may have been added (False: certainly not)."""
        positions = self._positions(keys)
        hits = self._bytes[positions >> np.uint64(3)] & (np.uint8(1) << (positions & np.uint64(7)).astype(np.uint8))
        return hits.all(axis=1)

    def add(self, keys: Sequence[bytes]) -> None:
        positions = self._positions(keys).ravel()
        np.bitwise_or.at(self._bytes, positions >> np.uint64(3), np.uint8(1) << (positions & np.uint64(7)).astype(np.uint8))
        self.added += len(keys)

    def false_positive_rate(self) -> float:
        """The chance that one key never added is reported as seen, at the current fill."""
        return (1 - math.exp(-BLOOM_HASHES * self.added / self.bits)) ** BLOOM_HASHES


class Deduplicator:
    """Remembers the rows of one format and tells whether a new one repeats one already kept."""

    def __init__(self, bits: int = DEFAULT_BLOOM_BITS) -> None:
        self._seen = BloomFilter(bits)

    def check(self, prompt: str, answers: Sequence[str]) -> Duplicate | None:
        """None for a new row (now remembered), else which kind of duplicate it is (not remembered)."""
        normalized_prompt = normalize(prompt)
        normalized_answers = [normalize(answer) for answer in answers]
        exact = digest("exact", normalized_prompt, *normalized_answers)
        if self._seen.seen([exact])[0]:
            return Duplicate.EXACT
        signature = minhash("\x1e".join(normalized_answers)).reshape(BANDS, ROWS_PER_BAND)
        prompt_key = digest(normalized_prompt)
        bands = [digest("band", prompt_key, bytes([index]), band.tobytes()) for index, band in enumerate(signature)]
        if self._seen.seen(bands).any():
            return Duplicate.NEAR
        self._seen.add([exact, *bands])
        return None

    def false_positive_rate(self) -> float:
        """The chance that a unique row is taken for a near duplicate (any of its bands)."""
        return 1 - (1 - self._seen.false_positive_rate()) ** (BANDS + 1)
