"""Admission to an engine: a fixed number of slots, shared fairly between members, with places in line."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from generation.errors import GenerationCancelled

QUEUE_REPORT_INTERVAL_S = 1.0


@dataclass(eq=False)
class _Ticket:
    owner: str
    granted: asyncio.Future[None]


@dataclass(frozen=True)
class EngineLoad:
    """How busy an engine is right now: what a health view and the metrics show."""

    running: int  # requests holding a slot
    waiting: int  # requests in line for one
    slots: int


class SlotQueue:
    """`size` slots shared fairly between owners (members), telling each waiter its place.

    A released slot goes to the waiting request whose owner holds the fewest slots counting
    their own earlier waiters; among equals, to the owner served longest ago, then the oldest.
    So members take turns, and one with ten drafts in line does not keep another member's
    first draft waiting behind all ten. One owner alone is served first come, first served.
    Both engines admit requests through it.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._free = size
        self._waiting: list[_Ticket] = []  # in arrival order, none granted yet
        self._held: Counter[str] = Counter()  # owner → slots held
        self._grants = 0
        self._last_served: dict[str, int] = {}  # owner → number of the grant they last got

    async def take(self, request_id: str, cancelled: asyncio.Event, owner: str = "") -> AsyncGenerator[int, None]:
        """Wait for a slot, yielding how many requests will be served first (at once, then about once a second).

        Returns holding the slot, at once and without yielding when one is free. Raises
        GenerationCancelled, holding nothing, when `cancelled` is set first; closing the iterator
        early also gives back a slot granted meanwhile.
        """
        if self._free:  # never while anyone waits: a released slot goes to a waiter first
            self._free -= 1
            self._grant(owner)
            return
        ticket = _Ticket(owner, asyncio.get_running_loop().create_future())
        self._waiting.append(ticket)
        try:
            while not ticket.granted.done():
                if cancelled.is_set():
                    raise GenerationCancelled(f"request {request_id} was cancelled while queued")
                yield self._service_order().index(ticket)
                woken = asyncio.ensure_future(cancelled.wait())
                try:
                    either: set[asyncio.Future[Any]] = {ticket.granted, woken}
                    await asyncio.wait(either, timeout=QUEUE_REPORT_INTERVAL_S,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
        except BaseException:
            if ticket.granted.done():
                self.release(owner)  # granted while being cancelled or closed: pass it on
            raise
        finally:
            if not ticket.granted.done():
                self._waiting.remove(ticket)

    def load(self) -> EngineLoad:
        return EngineLoad(running=sum(self._held.values()), waiting=len(self._waiting), slots=self._size)

    def release(self, owner: str = "") -> None:
        self._held[owner] -= 1
        if not self._held[owner]:
            del self._held[owner]
        if not self._waiting:
            self._free += 1
            return
        ticket = self._service_order()[0]
        self._waiting.remove(ticket)
        self._grant(ticket.owner)
        ticket.granted.set_result(None)

    def _grant(self, owner: str) -> None:
        self._held[owner] += 1
        self._grants += 1
        self._last_served[owner] = self._grants

    def _service_order(self) -> list[_Ticket]:
        """The waiters in the order they will get slots (see the class)."""
        ahead_of_own: Counter[str] = Counter()
        ranked = []
        for arrival, ticket in enumerate(self._waiting):
            standing = self._held[ticket.owner] + ahead_of_own[ticket.owner]
            ranked.append((standing, self._last_served.get(ticket.owner, 0), arrival, ticket))
            ahead_of_own[ticket.owner] += 1
        return [entry[-1] for entry in sorted(ranked, key=lambda entry: entry[:3])]
