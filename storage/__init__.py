"""Persistence for copydesk: schema, migrations, and the repository the service uses.

Knows nothing of Discord or the model; takes plain parameters.
"""

from storage.backup import backup_database, restore_database
from storage.database import Database, clean_text, open_database
from storage.dataset import DatasetOptions, DatasetSummary, DatasetWriter
from storage.errors import (
    DatabaseInUse,
    DraftNotFound,
    FlagAlreadyResolved,
    FlagNotFound,
    StorageError,
    VersionNotFound,
)
from storage.exclusions import Reason
from storage.export import EXPORT_CHOICES, EXPORT_FORMATS, RowRules, export_rows, formats_help, formats_list
from storage.feedback import FeedbackFilter, FeedbackRecord
from storage.lifecycle import STOPPED_AS, TRANSITIONS, DraftStatus, IllegalTransition, StopReason
from storage.models import (
    BASE_VERSION,
    Assignment,
    Base,
    Consent,
    Delivery,
    Draft,
    Erasure,
    Experiment,
    ExperimentState,
    ExperimentVariant,
    Flag,
    FlagSource,
    FlagStatus,
    Improvement,
    ModelVersion,
    ModerationAction,
    Moderator,
    Rating,
    TaskDefault,
    TemplateVersion,
    VariantPick,
    VersionState,
)
from storage.pseudonyms import member_hash, pseudonym
from storage.repository import Activity, Arm, Choice, DraftVotes, ExperimentNotFound, Repository, VersionTally

__all__ = [
    "Arm",
    "Choice",
    "ExperimentNotFound",
    "Assignment",
    "Experiment",
    "ExperimentState",
    "ExperimentVariant",
    "TaskDefault",
    "TemplateVersion",
    "Activity",
    "DraftVotes",
    "BASE_VERSION",
    "ModelVersion",
    "VersionNotFound",
    "VersionState",
    "VersionTally",
    "EXPORT_CHOICES",
    "EXPORT_FORMATS",
    "Base",
    "Consent",
    "Database",
    "Delivery",
    "DatabaseInUse",
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
    "IllegalTransition",
    "Improvement",
    "ModerationAction",
    "Moderator",
    "Rating",
    "Reason",
    "Repository",
    "RowRules",
    "STOPPED_AS",
    "StopReason",
    "StorageError",
    "TRANSITIONS",
    "VariantPick",
    "backup_database",
    "clean_text",
    "export_rows",
    "formats_help",
    "formats_list",
    "member_hash",
    "open_database",
    "pseudonym",
    "restore_database",
]
