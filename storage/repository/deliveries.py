"""Deliveries: the first to claim an id acts, every repeat of it is dropped."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from storage.models import Delivery, utcnow
from storage.repository.base import RepositoryBase, rowcount


class DeliveriesRepository(RepositoryBase):
    async def claim_delivery(self, delivery_id: str, kind: str) -> bool:
        """True for the first claim of `delivery_id`; False for every later one, also a concurrent one.

        One INSERT … ON CONFLICT DO NOTHING: the primary key decides, whatever the order of arrival.
        """
        claim = self._insert(Delivery).values(id=delivery_id, kind=kind, claimed_at=utcnow())
        async with self._sessions.begin() as session:
            return await rowcount(session, claim.on_conflict_do_nothing(index_elements=[Delivery.id])) == 1

    async def forget_deliveries(self, before: datetime) -> int:
        """Drop claims older than any repeat can be (Discord's interaction tokens live 15 minutes)."""
        async with self._sessions.begin() as session:
            return await rowcount(session, delete(Delivery).where(Delivery.claimed_at < before))
