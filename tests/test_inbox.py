"""A call's inbox: its events in order, for its one task, and none lost to a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from callcontrol.session import Inbox


async def test_events_come_out_in_the_order_they_were_put_waiting_or_not() -> None:
    inbox = Inbox()
    inbox.put({"type": "first"})
    reader = asyncio.create_task(inbox.get())
    assert (await reader)["type"] == "first"
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)  # the reader now waits for the next event
    assert not waiting.done()
    inbox.put({"type": "second"})
    inbox.put({"type": "third"})
    assert (await waiting)["type"] == "second"
    assert (await inbox.get())["type"] == "third"


async def test_an_event_put_as_its_reader_is_cancelled_stays_for_the_next_get() -> None:
    inbox = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put({"type": "StasisStart"})  # wakes the reader...
    reader.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert (await asyncio.wait_for(inbox.get(), 1))["type"] == "StasisStart"


async def test_a_reader_that_times_out_leaves_the_inbox_usable() -> None:
    inbox = Inbox()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await inbox.get()
    inbox.put({"type": "late"})
    assert (await inbox.get())["type"] == "late"
