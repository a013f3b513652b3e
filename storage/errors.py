"""Errors the storage layer raises, so callers never need to catch SQLAlchemy's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.models import Flag


class StorageError(Exception):
    """The database cannot be opened, migrated or written."""


class DatabaseInUse(StorageError):
    """Another process already serves this database (see Database.claim)."""


class DraftNotFound(StorageError):
    """The draft id names no row (never created, or deleted since)."""

    def __init__(self, draft_id: int) -> None:
        super().__init__(f"draft {draft_id} does not exist")
        self.draft_id = draft_id


class FlagNotFound(StorageError):
    """The flag id names no row (never created, or deleted with its draft)."""

    def __init__(self, flag_id: int) -> None:
        super().__init__(f"flag {flag_id} does not exist")
        self.flag_id = flag_id


class FlagAlreadyResolved(StorageError):
    """Another moderator decided the flag first; `flag` says how, who and when."""

    def __init__(self, flag: Flag) -> None:
        super().__init__(f"flag {flag.id} was already {flag.status} by {flag.resolved_by}")
        self.flag = flag
        self.status = flag.status
        self.resolved_by = flag.resolved_by
        self.resolved_at = flag.resolved_at


class VersionNotFound(StorageError):
    """No model version has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"there is no model version named {name!r} (`copydesk models list` shows them)")
        self.name = name
