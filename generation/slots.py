"""Admission to an engine: a fixed number of slots, first come first served, with places in line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from generation.errors import GenerationCancelled

QUEUE_REPORT_INTERVAL_S = 1.0


class SlotQueue:
    """`size` slots handed out strictly first come first served, telling each waiter its place.

    A released slot goes straight to the oldest waiter, so a newcomer can never overtake the
    queue. Both engines admit requests through it.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: list[asyncio.Future[None]] = []  # oldest first, none of them granted yet

    async def take(self, request_id: str, cancelled: asyncio.Event) -> AsyncIterator[int]:
        """Wait for a slot, yielding how many requests are ahead (at once, then about once a second).

        Returns holding the slot, at once and without yielding when one is free. Raises
        GenerationCancelled, holding nothing, when `cancelled` is set first; closing the iterator
        early also gives back a slot granted meanwhile.
        """
        if self._free:  # never while anyone waits: a released slot goes to a waiter first
            self._free -= 1
            return
        ticket = asyncio.get_running_loop().create_future()
        self._waiting.append(ticket)
        try:
            while not ticket.done():
                if cancelled.is_set():
                    raise GenerationCancelled(f"request {request_id} was cancelled while queued")
                yield self._waiting.index(ticket)
                woken = asyncio.ensure_future(cancelled.wait())
                try:
                    await asyncio.wait({ticket, woken}, timeout=QUEUE_REPORT_INTERVAL_S,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
        except BaseException:
            if ticket.done():
                self.release()  # granted while being cancelled or closed: pass it on
            raise
        finally:
            if not ticket.done():
                self._waiting.remove(ticket)

    def release(self) -> None:
        if self._waiting:
            self._waiting.pop(0).set_result(None)
        else:
            self._free += 1
