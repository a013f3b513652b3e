"""A draft's life, in one place: its states, the moves between them, and why a stopped draft stopped.

A draft is a row before generation starts (queued), becomes running with its first token, and
ends once, in one of four final states; a final state never changes again. `TRANSITIONS` is the
one table of the moves allowed; the repository makes every status change through `check`, and the
README's "A draft's life" shows the same table (a test keeps the two equal).

A draft that ends without being finished says why in its `stop_reason`; each reason belongs to
one final state (`STOPPED_AS`), so the reason decides the status. Finished drafts have none.

Two facts about a draft are derived rather than stored, and are defined on `storage.Draft`:
- held (`Draft.held`): it has an open automatic flag, so its text waits for a moderator;
- member told (`Draft.member_told`): it has a `message_id`, the message that shows it, so an
  interruption needs no announcement after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from storage.errors import StorageError


class DraftStatus(StrEnum):
    """How far a draft got; queued and running are the only states that still change."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the process stopped (shutdown or crash) before the draft was finished


class StopReason(StrEnum):
    """Why a draft ended unfinished; rows stopped before migration 0004 may have none."""

    MEMBER = "member"  # its member (or a moderator) withdrew it
    ABANDONED = "abandoned"  # whoever followed it stopped reading (its task was cancelled)
    DEADLINE = "deadline"  # still unfinished at the deadline
    ERROR = "error"  # the engine, or copydesk itself, failed; `error` says which and how
    SHUTDOWN = "shutdown"  # the process was stopping
    CRASH = "crash"  # found unfinished at start: the process that wrote it died


_FINAL: frozenset[DraftStatus] = frozenset()
_ENDINGS = frozenset({DraftStatus.DONE, DraftStatus.FAILED, DraftStatus.CANCELLED, DraftStatus.INTERRUPTED})

# status → the statuses it may move to
TRANSITIONS: Mapping[DraftStatus, frozenset[DraftStatus]] = {
    DraftStatus.QUEUED: frozenset({DraftStatus.RUNNING}) | _ENDINGS,  # done even without a token
    DraftStatus.RUNNING: _ENDINGS,
    DraftStatus.DONE: _FINAL,
    DraftStatus.FAILED: _FINAL,
    DraftStatus.CANCELLED: _FINAL,
    DraftStatus.INTERRUPTED: _FINAL,
}

# stop reason → the final status a draft stopped for it ends in
STOPPED_AS: Mapping[StopReason, DraftStatus] = {
    StopReason.MEMBER: DraftStatus.CANCELLED,
    StopReason.ABANDONED: DraftStatus.CANCELLED,
    StopReason.DEADLINE: DraftStatus.FAILED,
    StopReason.ERROR: DraftStatus.FAILED,
    StopReason.SHUTDOWN: DraftStatus.INTERRUPTED,
    StopReason.CRASH: DraftStatus.INTERRUPTED,
}

# The states that still change: the only ones progress may be saved in.
ACTIVE: frozenset[DraftStatus] = frozenset(status for status, targets in TRANSITIONS.items() if targets)


class IllegalTransition(StorageError):
    """A status change the lifecycle table does not list, asked for a draft that can still change."""

    def __init__(self, draft_id: int, current: DraftStatus, wanted: DraftStatus) -> None:
        super().__init__(f"draft #{draft_id} is {current}; it cannot become {wanted}")
        self.draft_id, self.current, self.wanted = draft_id, current, wanted


def sources(wanted: DraftStatus) -> frozenset[DraftStatus]:
    """The statuses a draft may be in to move to `wanted`."""
    return frozenset(status for status, targets in TRANSITIONS.items() if wanted in targets)


def check(draft_id: int, current: DraftStatus, wanted: DraftStatus) -> bool:
    """Whether a draft in `current` may become `wanted`.

    False for a draft that already ended (its generation lost a race with a cancel, say: it stays
    as it ended); IllegalTransition for any other move the table does not list, which is a bug.
    """
    if wanted in TRANSITIONS[current]:
        return True
    if current not in ACTIVE:
        return False
    raise IllegalTransition(draft_id, current, wanted)
