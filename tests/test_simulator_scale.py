"""The simulator holds thousands of concurrent calls on one event loop."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import aiohttp

from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from tests.simulator_helpers import AppSocket, Rest, until

pytest_plugins = ["tests.simulator_fixtures"]

CALLS = 2_000


async def test_two_thousand_concurrent_calls_are_answered_and_torn_down(
    sim: Simulator, session: aiohttp.ClientSession, control: ControlClient, rest: Rest
) -> None:
    threads = threading.active_count()
    app = await AppSocket.connect(session, sim.url)
    async with asyncio.timeout(120):  # a bound against a hang, not a performance target
        placed = await asyncio.gather(
            *(control.call(f"t{index}", "1002", caller_id=str(index)) for index in range(CALLS))
        )
        ids = [channel["id"] for channel in placed]
        answers = await asyncio.gather(*(rest("POST", f"/channels/{i}/answer") for i in ids))
        assert {status for status, _ in answers} == {204}
        live = await control.channels()
        assert len(live) == CALLS
        assert {channel["state"] for channel in live} == {"Up"}
        assert threading.active_count() == threads  # no thread per call
        by_app, by_far_end = ids[: CALLS // 2], ids[CALLS // 2 :]
        await asyncio.gather(
            *(rest("DELETE", f"/channels/{i}") for i in by_app),
            *(control.hang_up(i) for i in by_far_end),
        )

        async def all_ended() -> bool:
            return Counter(e["type"] for e in app.history)["StasisEnd"] == CALLS

        await until(all_ended, within=60)
    assert await control.channels() == []
    counts = Counter(event["type"] for event in app.history)
    for kind in ("StasisStart", "ChannelStateChange", "ChannelHangupRequest", "StasisEnd"):
        assert counts[kind] == CALLS, kind
    soft = sum(1 for e in app.history if e["type"] == "ChannelHangupRequest" and e.get("soft"))
    assert soft == CALLS // 2
    await app.close()
