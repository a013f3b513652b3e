"""Use-case-sized database operations, one module per concern; each is one session and one transaction.

`Repository` is all of them over one database: the service holds one and calls what it needs.
"""

from storage.repository.deliveries import DeliveriesRepository
from storage.repository.draft_reads import Activity, DraftReadsRepository
from storage.repository.drafts import DraftsRepository
from storage.repository.experiments import Arm, Choice, ExperimentNotFound, ExperimentsRepository
from storage.repository.export_reads import ExportReadsRepository
from storage.repository.feedback import FeedbackRepository
from storage.repository.moderation import ModerationRepository
from storage.repository.privacy import PrivacyRepository
from storage.repository.templates import TemplatesRepository
from storage.repository.variants import VariantsRepository
from storage.repository.version_stats import DraftVotes, VersionStatsRepository, VersionTally
from storage.repository.versions import VersionsRepository


class Repository(
    DraftsRepository,
    DraftReadsRepository,
    FeedbackRepository,
    ModerationRepository,
    PrivacyRepository,
    ExportReadsRepository,
    DeliveriesRepository,
    VariantsRepository,
    VersionsRepository,
    VersionStatsRepository,
    ExperimentsRepository,
    TemplatesRepository,
):
    """The storage use cases the service calls; returned objects are detached and safe to keep."""


__all__ = ["Activity", "Arm", "Choice", "DraftVotes", "ExperimentNotFound", "Repository", "VersionTally"]
