"""The reads exports stream: finished, exportable drafts with their feedback, page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.errors import StorageError
from storage.exclusions import Exclusions, count_exclusions
from storage.feedback import FeedbackFilter, FeedbackRecord
from storage.models import Draft, DraftStatus, Erasure, Flag, FlagStatus, Rating, VariantPick
from storage.pseudonyms import member_hash, pseudonym
from storage.repository.base import RepositoryBase
from storage.repository.privacy import TrainingUse


class ExportReadsRepository(RepositoryBase):
    """Reads for exports; no transaction stays open while the caller writes."""

    async def count_feedback(self, filters: FeedbackFilter = FeedbackFilter()) -> int:
        """How many drafts iter_feedback will read with these filters (before the consent rules): a progress bar's total."""
        query = select(func.count()).select_from(Draft).where(*_exportable(filters))
        async with self._sessions() as session:
            return (await session.scalar(query)) or 0

    async def count_exclusions(
        self, filters: FeedbackFilter = FeedbackFilter(), *, consent_default: bool = False,
        pseudonym_key: bytes | None = None,
    ) -> Exclusions:
        """How many drafts each of iter_feedback's rules leaves out (storage.exclusions counts them)."""
        return await count_exclusions(self._sessions, filters, exportable=_exportable, training_use=TrainingUse.load,
                                      consent_default=consent_default, pseudonym_key=pseudonym_key)

    async def iter_feedback(
        self,
        batch_size: int = 500,
        *,
        filters: FeedbackFilter = FeedbackFilter(),
        consent_default: bool = False,
        pseudonym_key: bytes | None = None,
        pseudonymize: bool = True,
        on_page: Callable[[int], None] | None = None,
    ) -> AsyncIterator[FeedbackRecord]:
        """Finished drafts that may be used for training and match `filters`, `batch_size` at a time.

        Left out: drafts a moderator removed or an open or upheld flag holds back, and drafts
        whose author does not allow training use, nor, for a regeneration, the author of the
        original (who wrote the inputs); improvements are kept only from members who allow
        it. A member allows it by their consent, else by `consent_default`; after an erasure
        only by consenting again. The erasure ledger holds keyed hashes, so once it has
        entries the export needs `pseudonym_key`, the key they were made with (StorageError
        otherwise); with a key and `pseudonymize`, each record's `author` is the author's
        pseudonym, else None. `on_page` is told how many drafts each page read, excluded or not.

        Ordered by request (the original draft, then its regenerations) so that the drafts of
        one request arrive together and exports can pair them while streaming. Keyset
        pagination over the request index with a short session per batch, and ratings,
        consents and ledger entries looked up per batch: memory and the time per batch stay
        flat however large the tables, and no transaction stays open while the caller writes.
        """
        request = func.coalesce(Draft.parent_id, Draft.id)
        query = (
            select(Draft)
            .where(*_exportable(filters))
            .order_by(request, Draft.id)
            .limit(batch_size)
            .options(selectinload(Draft.improvements))
        )
        key = pseudonym_key
        if key is None:
            async with self._sessions() as session:
                if await session.scalar(select(Erasure.id).limit(1)) is not None:
                    raise StorageError(
                        "members have asked for erasure: an export needs the pseudonym key "
                        "to leave them out"
                    )
        last_request, last_id = 0, 0
        while True:
            async with self._sessions() as session:
                # (request, id) > (last_request, last_id), spelled so that SQLite seeks along the index
                page = query.where(request >= last_request, or_(request > last_request, Draft.id > last_id))
                drafts = (await session.scalars(page)).all()
                votes = await _votes(session, [draft.id for draft in drafts])
                picks = await _picks(session, [draft.id for draft in drafts if draft.variant_group is not None])
                originals = await _original_authors(session, drafts)
                members = {d.author_id for d in drafts} | set(originals.values())
                members |= {i.member_id for d in drafts for i in d.improvements}
                hashes = {} if key is None else {m: member_hash(key, m) for m in members}
                use = await TrainingUse.load(session, members, consent_default, hashes)
            if on_page is not None:
                on_page(len(drafts))
            for draft in drafts:
                original = originals.get(draft.parent_id) if draft.parent_id else None
                if not use.allows(draft.author_id):
                    continue
                if original is not None and not use.allows(original):
                    continue  # a regeneration repeats the original author's inputs
                ups, downs = votes.get(draft.id, (0, 0))
                yield FeedbackRecord.from_draft(
                    draft, ups=ups, downs=downs,
                    author=pseudonym(key, draft.author_id) if key is not None and pseudonymize else None,
                    improvements=[i for i in draft.improvements if use.allows(i.member_id)],
                    picks=picks.get(draft.id, 0),
                )
            if len(drafts) < batch_size:
                return
            last_request, last_id = drafts[-1].parent_id or drafts[-1].id, drafts[-1].id



def _exportable(filters: FeedbackFilter) -> list[ColumnElement[bool]]:
    """Finished, not removed, not held back by an open or upheld flag, and within the filters."""
    held_back = exists().where(Flag.draft_id == Draft.id, Flag.status.in_((FlagStatus.OPEN, FlagStatus.UPHELD)))
    return [Draft.status == DraftStatus.DONE, Draft.removed_at.is_(None), ~held_back, *filters.conditions()]


async def _votes(session: AsyncSession, draft_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Draft id → (ups, downs), counted by the database rather than loaded rating by rating."""
    if not draft_ids:
        return {}
    rows = await session.execute(
        select(Rating.draft_id, func.count().filter(Rating.value > 0), func.count().filter(Rating.value < 0))
        .where(Rating.draft_id.in_(draft_ids)).group_by(Rating.draft_id)
    )
    return {draft_id: (ups, downs) for draft_id, ups, downs in rows}


async def _picks(session: AsyncSession, draft_ids: Sequence[int]) -> dict[int, int]:
    """Draft id → how many members picked it over the other variants shown with it."""
    if not draft_ids:
        return {}
    rows = await session.execute(
        select(VariantPick.draft_id, func.count()).where(VariantPick.draft_id.in_(draft_ids))
        .group_by(VariantPick.draft_id)
    )
    return {draft_id: count for draft_id, count in rows}


async def _original_authors(session: AsyncSession, drafts: Sequence[Draft]) -> dict[int, str]:
    """Draft id → author of the originals the regenerations among `drafts` repeat."""
    parents = {draft.parent_id for draft in drafts if draft.parent_id is not None}
    if not parents:
        return {}
    rows = await session.execute(select(Draft.id, Draft.author_id).where(Draft.id.in_(parents)))
    return {draft_id: author for draft_id, author in rows}


