"""Persistence for copydesk: schema, migrations, and the repository the service uses.

Knows nothing of Discord or the model; takes plain parameters.
"""

from storage.database import Database, open_database
from storage.errors import DraftNotFound, StorageError
from storage.export import EXPORT_FORMATS, export_rows
from storage.feedback import FeedbackRecord
from storage.models import (
    Base,
    Draft,
    DraftStatus,
    Flag,
    FlagSource,
    FlagStatus,
    Improvement,
    Rating,
)
from storage.repository import Repository

__all__ = [
    "EXPORT_FORMATS",
    "Base",
    "Database",
    "Draft",
    "DraftNotFound",
    "DraftStatus",
    "FeedbackRecord",
    "Flag",
    "FlagSource",
    "FlagStatus",
    "Improvement",
    "Rating",
    "Repository",
    "StorageError",
    "export_rows",
    "open_database",
]
