"""Persistence for copydesk: schema, migrations, and the repository the service uses.

Knows nothing of Discord or the model; takes plain parameters.
"""

from storage.database import Database, open_database
from storage.dataset import DatasetOptions, DatasetSummary, DatasetWriter
from storage.errors import (
    DraftNotFound,
    FlagAlreadyResolved,
    FlagNotFound,
    StorageError,
)
from storage.export import EXPORT_FORMATS, RowRules, export_rows
from storage.feedback import FeedbackFilter, FeedbackRecord
from storage.models import (
    Base,
    Consent,
    Draft,
    DraftStatus,
    Erasure,
    Flag,
    FlagSource,
    FlagStatus,
    Improvement,
    ModerationAction,
    Moderator,
    Rating,
)
from storage.pseudonyms import member_hash, pseudonym
from storage.repository import Activity, Repository

__all__ = [
    "Activity",
    "EXPORT_FORMATS",
    "Base",
    "Consent",
    "Database",
    "DatasetOptions",
    "DatasetSummary",
    "DatasetWriter",
    "Draft",
    "DraftNotFound",
    "DraftStatus",
    "Erasure",
    "FeedbackFilter",
    "FeedbackRecord",
    "Flag",
    "FlagAlreadyResolved",
    "FlagNotFound",
    "FlagSource",
    "FlagStatus",
    "Improvement",
    "ModerationAction",
    "Moderator",
    "Rating",
    "Repository",
    "RowRules",
    "StorageError",
    "export_rows",
    "member_hash",
    "open_database",
    "pseudonym",
]
