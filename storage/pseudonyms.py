"""Keyed hashes of member ids: for the erasure ledger and for pseudonyms in exports.

Keyed (HMAC-SHA256), so nobody without the key can test a known id against them.
"""

from __future__ import annotations

import hashlib
import hmac


def member_hash(key: bytes, member_id: str) -> str:
    """64 hex digits; the form the erasure ledger stores."""
    if not key:
        raise ValueError("a pseudonym key must not be empty")
    return hmac.new(key, member_id.encode(), hashlib.sha256).hexdigest()


def pseudonym(key: bytes, member_id: str) -> str:
    """What an export shows instead of a member id: stable for one key, unlinkable without it."""
    return "m_" + member_hash(key, member_id)[:16]
