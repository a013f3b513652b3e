"""Errors the storage layer raises, so callers never need to catch SQLAlchemy's own."""


class StorageError(Exception):
    """The database cannot be opened, migrated or written."""


class DraftNotFound(StorageError):
    """The draft id names no row (never created, or deleted since)."""

    def __init__(self, draft_id: int) -> None:
        super().__init__(f"draft {draft_id} does not exist")
        self.draft_id = draft_id
