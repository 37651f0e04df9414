"""Deadlines on coarse ticks: what the block inside sees is what ``asyncio.timeout`` gives."""

from __future__ import annotations

import asyncio

import pytest

from dialplan.deadlines import _TICKS, TICK, deadline


async def test_a_block_done_in_time_keeps_its_result_and_leaves_nothing_waiting() -> None:
    async with deadline(5.0) as limit:
        await asyncio.sleep(0)
        result = 42
    assert result == 42
    assert not limit.expired
    # The tick's timer may still be scheduled, but nothing waits on it.
    assert all(not due for due in _TICKS[asyncio.get_running_loop()].waiting.values())


async def test_a_block_past_its_deadline_is_a_timeout_never_early() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with deadline(0.12) as limit:
            await asyncio.sleep(10)
    waited = loop.time() - started
    assert limit.expired
    assert waited >= 0.12
    assert waited < 0.12 + TICK + 2.0  # late by a tick, and whatever a loaded machine adds


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def wait() -> None:
        async with deadline(5.0):
            await asyncio.sleep(10)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_deadline_waits_as_long_as_the_block_takes() -> None:
    async with deadline(None) as limit:
        await asyncio.sleep(TICK * 2)
    assert not limit.expired


async def test_an_inner_deadline_expires_alone_and_the_outer_block_goes_on() -> None:
    steps = []
    async with deadline(5.0) as outer:
        try:
            async with deadline(0.05):
                await asyncio.sleep(10)
        except TimeoutError:
            steps.append("inner timed out")
        await asyncio.sleep(0)
        steps.append("outer went on")
    assert steps == ["inner timed out", "outer went on"]
    assert not outer.expired


async def test_waits_ending_in_the_same_tick_share_one_timer() -> None:
    loop = asyncio.get_running_loop()
    release = asyncio.Event()

    async def wait() -> None:
        async with deadline(30.0):
            await release.wait()

    before = len(loop._scheduled)  # type: ignore[attr-defined]
    tasks = [asyncio.create_task(wait()) for _ in range(500)]
    await asyncio.sleep(0)
    added = len(loop._scheduled) - before  # type: ignore[attr-defined]
    release.set()
    await asyncio.gather(*tasks)
    assert added <= 2  # one tick, or two when the tasks straddle a tick's edge


async def test_a_block_that_swallows_the_cancellation_ends_without_a_timeout() -> None:
    # As with asyncio.timeout: the deadline cancelled the block, the block chose to go on.
    swallowed = False
    async with deadline(0.05) as limit:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            swallowed = True
    assert swallowed
    assert limit.expired
    await asyncio.sleep(0)  # and no cancellation is left pending for the task
