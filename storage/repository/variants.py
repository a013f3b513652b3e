"""Variants: several drafts asked for in one request, stored together, and each member's pick among them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from storage.errors import DraftNotFound, StorageError
from storage.models import Draft, DraftStatus, VariantPick, utcnow
from storage.repository.base import RepositoryBase


class VariantsRepository(RepositoryBase):
    async def create_variants(self, count: int, *, apart: Sequence[Mapping[str, Any]] = (),
                              **fields: Any) -> list[Draft]:
        """Record `count` queued drafts of one request (fields as `create_draft` takes them) in one transaction;
        `apart[i]`, if given, holds what the i-th differs in (an experiment's variant, its prompt).

        The first is the request's original; the others point at it (`parent_id`), as regenerations do,
        so exports see one request; all share its id as `variant_group`, which a pick refers to.
        """
        if count < 2:
            raise ValueError(f"variants come two or more at a time, not {count}")
        own = [dict(apart[index]) if index < len(apart) else {} for index in range(count)]
        now = utcnow()
        async with self._sessions.begin() as session:
            first = Draft(**{**fields, **own[0]}, status=DraftStatus.QUEUED, output="", created_at=now)
            session.add(first)
            await session.flush()
            first.variant_group = first.id
            others = [Draft(**{**fields, **differs, "parent_id": first.id}, variant_group=first.id,
                            status=DraftStatus.QUEUED, output="", created_at=now) for differs in own[1:]]
            session.add_all(others)
        return [first, *others]

    async def variants_of(self, group_id: int) -> list[Draft]:
        """The drafts of one variant group, in the order they were shown, with their flags (whether each is
        held); ratings and improvements are not loaded."""
        query = (select(Draft).where(Draft.variant_group == group_id).order_by(Draft.id)
                 .options(selectinload(Draft.flags)))
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def pick_variant(self, draft_id: int, member_id: str) -> VariantPick:
        """Record that the member prefers this draft over the other variants shown with it, replacing their
        earlier pick in that group. One upsert statement, so concurrent clicks cannot create a second row."""
        async with self._sessions.begin() as session:
            group_id = await session.scalar(select(Draft.variant_group).where(Draft.id == draft_id))
            if group_id is None:
                if await session.get(Draft, draft_id) is None:
                    raise DraftNotFound(draft_id)
                raise StorageError(f"draft #{draft_id} is not one of several variants")
            now = utcnow()
            insert = self._insert(VariantPick).values(group_id=group_id, member_id=member_id, draft_id=draft_id,
                                                      created_at=now, updated_at=now)
            upsert = insert.on_conflict_do_update(
                index_elements=[VariantPick.group_id, VariantPick.member_id],
                set_={"draft_id": insert.excluded.draft_id, "updated_at": insert.excluded.updated_at},
            )
            pick = await session.scalar(upsert.returning(VariantPick), execution_options={"populate_existing": True})
        assert pick is not None  # RETURNING always yields the inserted or updated row
        return pick
