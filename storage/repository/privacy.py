"""Each member's choices about training use, what is stored of them, and their erasure."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import Consent, Draft, Erasure, Flag, Improvement, Moderator, Rating, VariantPick, utcnow
from storage.repository.base import RepositoryBase, rowcount


class PrivacyRepository(RepositoryBase):
    """Consent, the member's summary and erasure; the rule they share with exports is TrainingUse."""

    async def set_consent(self, member_id: str, granted: bool) -> Consent:
        """Record a member's choice about training use, replacing their earlier one."""
        insert = self._insert(Consent).values(
            member_id=member_id, granted=granted, updated_at=utcnow()
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[Consent.member_id],
            set_={"granted": insert.excluded.granted, "updated_at": insert.excluded.updated_at},
        )
        async with self._sessions.begin() as session:
            consent = await session.scalar(
                upsert.returning(Consent), execution_options={"populate_existing": True}
            )
        assert consent is not None  # RETURNING always yields the inserted or updated row
        return consent

    async def get_consent(self, member_id: str) -> bool | None:
        """The member's choice, or None when they never made one."""
        async with self._sessions() as session:
            return await session.scalar(
                select(Consent.granted).where(Consent.member_id == member_id)
            )

    async def training_allowed(
        self, member_id: str, member_hash: str, *, consent_default: bool
    ) -> bool:
        """Whether exports would use what the member writes: their consent, else the default;
        after an erasure only a consent given since. `member_hash` as for erase_member."""
        async with self._sessions() as session:
            use = await TrainingUse.load(
                session, [member_id], consent_default, {member_id: member_hash}
            )
        return use.allows(member_id)

    async def member_summary(self, member_id: str) -> dict[str, int]:
        """What is stored of a member: drafts written, ratings given, improvements, flags raised."""
        query = select(
            select(func.count()).where(Draft.author_id == member_id).scalar_subquery(),
            select(func.count()).where(Rating.member_id == member_id).scalar_subquery(),
            select(func.count()).where(Improvement.member_id == member_id).scalar_subquery(),
            select(func.count()).where(Flag.member_id == member_id).scalar_subquery(),
        )
        async with self._sessions() as session:
            drafts, ratings, improvements, flags = (await session.execute(query)).one()
        return {"drafts": drafts, "ratings": ratings, "improvements": improvements, "flags": flags}

    async def erase_member(self, member_id: str, member_hash: str) -> dict[str, int]:
        """Delete everything a member wrote or gave, and enter them in the erasure ledger.

        One transaction. Deleted: the member's ratings, improvements, variant picks and flags on any draft;
        their drafts, with the regenerations others made of them (those repeat the member's
        inputs) and all feedback on those; their consent and their moderator row (re-created
        the next time they moderate). Kept: the moderation log, and `resolved_by` /
        `removed_by` on others' flags and drafts (records of moderation, not their content).
        `member_hash` is the caller's keyed hash of the id (see storage.pseudonyms); the
        ledger keeps later exports free of the member's new drafts until they consent again.
        Returns how many of the member's rows went, per kind; feedback others gave on the
        deleted drafts is not counted.
        """
        now = utcnow()
        own = aliased(Draft)  # not correlated with the outer DELETE's drafts
        own_drafts = select(own.id).where(own.author_id == member_id)
        ledger = self._insert(Erasure).values(member_hash=member_hash, erased_at=now)
        ledger = ledger.on_conflict_do_update(
            index_elements=[Erasure.member_hash], set_={"erased_at": ledger.excluded.erased_at}
        )
        given: dict[str, type[Rating] | type[Improvement] | type[Flag] | type[VariantPick]] = {
            "ratings": Rating, "improvements": Improvement, "flags": Flag, "picks": VariantPick}
        counts: dict[str, int] = {}
        async with self._sessions.begin() as session:
            for kind, model in given.items():
                counts[kind] = await rowcount(
                    session,
                    delete(model)
                    .where(model.member_id == member_id)
                    .execution_options(synchronize_session=False),
                )
            counts["drafts"] = await rowcount(
                session,
                delete(Draft)
                .where(or_(Draft.author_id == member_id, Draft.parent_id.in_(own_drafts)))
                .execution_options(synchronize_session=False),
            )
            await session.execute(delete(Consent).where(Consent.member_id == member_id))
            await session.execute(delete(Moderator).where(Moderator.member_id == member_id))
            await session.execute(ledger)
        return {kind: counts[kind] for kind in ("drafts", "ratings", "improvements", "flags")}


@dataclass(frozen=True, slots=True)
class TrainingUse:
    """Which of some members allow training use: their consents and ledger entries.

    The one rule, for exports and for what /privacy shows: a member's consent, else the
    default; once in the erasure ledger, only a consent given after the erasure.
    """

    default: bool
    consents: dict[str, tuple[bool, datetime]]  # member id → (granted, updated_at)
    erased: dict[str, datetime]  # member id → erased_at, for members in the ledger

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        members: Collection[str],
        default: bool,
        hashes: Mapping[str, str],  # member id → ledger hash, for those that can be checked
    ) -> TrainingUse:
        consents: dict[str, tuple[bool, datetime]] = {}
        erased: dict[str, datetime] = {}
        if members:
            rows = await session.execute(
                select(Consent.member_id, Consent.granted, Consent.updated_at).where(
                    Consent.member_id.in_(members)
                )
            )
            consents = {member: (granted, at) for member, granted, at in rows}
        if hashes:
            by_hash = {hashed: member for member, hashed in hashes.items()}
            ledger = await session.execute(
                select(Erasure.member_hash, Erasure.erased_at).where(
                    Erasure.member_hash.in_(by_hash)
                )
            )
            erased = {by_hash[hashed]: at for hashed, at in ledger}
        return cls(default, consents, erased)

    def allows(self, member_id: str) -> bool:
        granted, updated_at = self.consents.get(member_id, (None, None))
        erased_at = self.erased.get(member_id)
        if erased_at is not None:
            return bool(granted) and updated_at is not None and updated_at > erased_at
        return self.default if granted is None else granted


