"""Recording through the service against the simulated Asterisk (DESIGN §3.8).

acme-north of the demo records on demand by DTMF and by service code, with code 5;
bruno's DDI +34910000101 records its inbound calls; thames-consulting has no
``recordings`` feature. Segments land in a RecordingStore on a temporary folder.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.service import AsteriskLink
from callcontrol.session import CallSession
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from dialplan.pipeline import Pipeline
from models.directory import SqlDirectory
from models.recordings import RecordingStore, StoredRecording, list_recordings
from tests.simulator_helpers import Rest, fast_config
from tests.test_service import CONFIG, Running, bridged, until

pytest_plugins = ["tests.test_service"]


class Recorded(Running):
    """A link writing segments under ``folder``, and the outcomes it logged."""

    def __init__(self, sim: Simulator, engine: AsyncEngine, folder: Path) -> None:
        self.folder = folder
        self.sim_url = sim.url
        super().__init__(
            AsteriskLink(
                sim.url,
                replace(CONFIG, teardown_timeout=5.0),
                Pipeline(SqlDirectory(engine)),
                recordings=RecordingStore(engine, folder),
            )
        )


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(fast_config(tmp_path / "asterisk-recordings")) as running:
        yield running


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[ControlClient]:
    async with ControlClient(sim.url) as client:
        yield client


@pytest.fixture
async def recorded(
    sim: Simulator, demo_engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Recorded]:
    line = Recorded(sim, demo_engine, tmp_path / "recordings")
    await until(lambda: line.link.state == "connected")
    yield line
    await line.stop()


async def answered(line: Recorded, caller: str) -> None:
    """Once the call is bridged (and a recording from answer, if any, has started)."""
    # A call that cannot be recorded is handed back: answered in the dialplan, unseen.
    await until(
        lambda: any(s.a == caller and (s.answered_at or s.handed_back) for s in line.link.sessions),
        5,
    )
    session = next(s for s in line.link.sessions if s.a == caller)
    async with ControlClient(line.sim_url) as control:
        await bridged(control, caller)
    if session.recorder is not None and session.recorder.plan.from_answer:
        await until(lambda: session.recorder is not None and session.recorder.live is not None)


def _live(session: CallSession) -> bool:
    return session.recorder is not None and session.recorder.live is not None


async def _count(engine: AsyncEngine, call_id: str, expected: int) -> bool:
    return len(await list_recordings(engine, call_id=call_id)) == expected


def seconds_of(folder: Path, recording: StoredRecording) -> float:
    with wave.open(str(folder / recording.file_path), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels()) == (8000, 1)
        return audio.getnframes() / audio.getframerate()


async def test_star_code_toggles_segments_start_stop_start(
    recorded: Recorded, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    caller = str((await control.call("acme-north-ana", "600123123"))["id"])
    await answered(recorded, caller)
    session = next(s for s in recorded.link.sessions if s.a == caller)
    # Each segment is timed from the moment its recording is live, not from the key press:
    # on a loaded machine the code takes a while to reach the recorder.
    await control.press(caller, "*5")  # start
    await until(lambda: _live(session))
    began = time.monotonic()
    await asyncio.sleep(1.0)
    await control.press(caller, "*5")  # stop
    await until(lambda: not _live(session))
    first_lasted = time.monotonic() - began
    # A stopped segment is listed while the call goes on.
    await until(lambda: _count(demo_engine, caller, 1))
    await control.press(caller, "*5")  # start again
    await until(lambda: _live(session))
    began = time.monotonic()
    await asyncio.sleep(0.6)
    await control.hang_up(caller)  # ends the second segment
    outcome = await recorded.outcome(caller)
    second_lasted = time.monotonic() - began
    rows = await list_recordings(demo_engine, call_id=caller)
    assert outcome.answered
    assert [r.segment.segment for r in rows] == [1, 2]
    first, second = rows
    assert (first.segment.recorder, first.segment.caller, first.segment.callee) == (
        "ana",
        "101",
        "+34600123123",
    )
    # At least the time between the presses; at most the time this test saw it live.
    assert 0.9 <= float(first.segment.duration) <= first_lasted + 0.1
    assert 0.5 <= float(second.segment.duration) <= second_lasted + 0.1
    assert first.file_path.startswith("acme-north/")
    assert all((recorded.folder / r.file_path).is_file() for r in rows)
    # the length listed is the file's own, to the millisecond
    for row in rows:
        assert abs(seconds_of(recorded.folder, row) - float(row.segment.duration)) <= 0.001


async def test_the_service_code_records_from_answer_and_is_not_dialled(
    recorded: Recorded, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    caller = str((await control.call("acme-north-ana", "*5600123123"))["id"])
    await answered(recorded, caller)
    session = next(s for s in recorded.link.sessions if s.a == caller)
    assert session.recorder is not None
    assert session.recorder.live is not None
    await asyncio.sleep(0.8)
    await control.hang_up(caller)
    await recorded.outcome(caller)
    [row] = await list_recordings(demo_engine, call_id=caller)
    assert (row.segment.segment, row.segment.recorder, row.segment.callee) == (
        1,
        None,
        "+34600123123",
    )


async def test_a_ddi_that_records_inbound_calls_records_them_from_answer(
    recorded: Recorded, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    carrier = {"args": ["carrier"], "caller_id": "<+34600111222>"}
    inbound = str((await control.call("carrier-telco-es", "+34910000101", **carrier))["id"])
    plain = str((await control.call("carrier-telco-es", "+34910000100", **carrier))["id"])
    await answered(recorded, inbound)
    await answered(recorded, plain)
    await asyncio.sleep(0.5)
    await control.hang_up(inbound)
    await control.hang_up(plain)
    await recorded.outcome(inbound)
    await recorded.outcome(plain)
    # bruno's DDI records inbound calls; ana's (+34910000100) records none.
    [row] = await list_recordings(demo_engine, call_id=inbound)
    assert (row.segment.segment, row.segment.caller, row.segment.callee) == (
        1,
        "+34600111222",
        "102",
    )
    assert await list_recordings(demo_engine, call_id=plain) == []


async def test_without_the_feature_the_code_starts_nothing(
    recorded: Recorded, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    caller = str((await control.call("thames-george", "02079460123"))["id"])
    await answered(recorded, caller)
    await control.press(caller, "*5")
    await asyncio.sleep(0.5)
    await control.hang_up(caller)
    assert (await recorded.outcome(caller)).answered
    assert await list_recordings(demo_engine, call_id=caller) == []


async def test_a_segment_that_cannot_be_saved_is_cleaned_up_and_the_call_goes_on(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the recordings folder should be")
    line = Recorded(sim, demo_engine, blocked)
    try:
        await until(lambda: line.link.state == "connected")
        caller = str((await control.call("acme-north-ana", "600123123"))["id"])
        await answered(line, caller)
        await control.press(caller, "*5")
        await asyncio.sleep(0.3)
        await control.press(caller, "*5")  # stopped: saving fails
        await asyncio.sleep(0.5)
        session = next(s for s in line.link.sessions if s.a == caller)
        assert session.answered_at is not None  # the call is still up
        await control.hang_up(caller)
        outcome = await line.outcome(caller)
    finally:
        await line.stop()
    assert (outcome.answered, outcome.result) == (True, "answered, caller hung up")
    assert await list_recordings(demo_engine, call_id=caller) == []
    async with aiohttp.ClientSession() as http:
        status, stored = await Rest(http, sim.url)("GET", "/recordings/stored")
    assert (status, stored) == (200, [])  # the Asterisk-side file was deleted too
