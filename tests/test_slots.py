"""Admission to an engine: slots shared fairly between members, places in line, cancellation."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from generation import GenerationCancelled
from generation.slots import EngineLoad, SlotQueue


async def waiter(slots: SlotQueue, request_id: str, owner: str, granted: list[str],
                 cancelled: asyncio.Event | None = None, places: list[int] | None = None) -> None:
    async with aclosing(slots.take(request_id, cancelled or asyncio.Event(), owner)) as line:
        async for ahead in line:
            if places is not None:
                places.append(ahead)
    granted.append(request_id)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_member_flooding_the_queue_does_not_delay_another_members_first_draft() -> None:
    slots, granted = SlotQueue(2), []
    await waiter(slots, "a1", "alice", granted)
    await waiter(slots, "a2", "alice", granted)
    flood = [asyncio.create_task(waiter(slots, f"a{i}", "alice", granted)) for i in range(3, 13)]
    await settle()
    bobs_places: list[int] = []
    bob = asyncio.create_task(waiter(slots, "b1", "bob", granted, places=bobs_places))
    await settle()
    assert bobs_places == [0], "bob's first draft is next in line, ahead of alice's ten"
    assert slots.load() == EngineLoad(running=2, waiting=11, slots=2)
    slots.release("alice")
    await settle()
    assert granted[-1] == "b1"
    for owner in ["bob"] + ["alice"] * 9:
        slots.release(owner)
        await settle()
    await asyncio.gather(bob, *flood)
    assert granted[3:] == [f"a{i}" for i in range(3, 13)], "one member alone is served in arrival order"


async def test_members_take_turns() -> None:
    slots, granted = SlotQueue(1), []
    await waiter(slots, "first", "alice", granted)
    tasks = [asyncio.create_task(waiter(slots, name, owner, granted))
             for name, owner in [("a1", "alice"), ("a2", "alice"), ("b1", "bob"), ("b2", "bob"), ("c1", "carol")]]
    await settle()
    for owner in ["alice", "bob", "carol", "alice", "bob"]:
        slots.release(owner)
        await settle()
    await asyncio.gather(*tasks)
    assert granted == ["first", "b1", "c1", "a1", "b2", "a2"]
    slots.release("alice")
    assert slots.load() == EngineLoad(running=0, waiting=0, slots=1)


async def test_a_cancelled_waiter_leaves_the_line_and_a_slot_granted_meanwhile_passes_on() -> None:
    slots, granted = SlotQueue(1), []
    await waiter(slots, "holder", "alice", granted)
    stop = asyncio.Event()
    leaving = asyncio.create_task(waiter(slots, "leaving", "bob", granted, cancelled=stop))
    staying = asyncio.create_task(waiter(slots, "staying", "carol", granted))
    await settle()
    stop.set()
    with pytest.raises(GenerationCancelled, match="cancelled while queued"):
        await leaving
    slots.release("alice")
    await staying
    assert slots.load() == EngineLoad(running=1, waiting=0, slots=1), "the one who left is not counted"
    assert granted == ["holder", "staying"]
