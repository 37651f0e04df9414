"""The FastAGI front on the real Asterisk: the sandbox's dialplan asks
``agi://127.0.0.1:<fastagi_port>/decide?secret=<the sandbox's secret>`` first (every other
e2e test runs with nothing listening there, so their calls fall through to the Stasis app).
Here the front listens, with that secret: calls are decided over AGI and carried out by
Asterisk's own dialplan, with no ARI app connected unless the test connects one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from callcontrol.console_api import ConsoleApi
from callcontrol.fastagi import AgiFront
from callcontrol.session import Outcome
from dialplan.pipeline import Pipeline
from dialplan.views import TerminalView
from models.billing import BillableCall
from models.cdrs import CdrStore
from models.db import create_engine
from models.directory import SqlDirectory
from tests.e2e.harness import (
    AriRest,
    LiveLink,
    finish_sipp,
    link_config,
    no_channel_left,
    run_sipp,
    serving,
    until,
)
from tests.e2e.sandboxes import AsteriskHandle, free_port
from tests.e2e.sipp import Sipp, SippResult
from tests.e2e.test_calls import ALICE, final_status, first, ok, received, user_of
from tests.e2e.test_console import ended_by_asterisk, listed_then_hung_up
from tests.e2e.test_handback import HELD, carrier_call_held
from tests.e2e.test_notifications import UNKNOWN_DDI, call_with_counter, heard_early_media

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

DAVE = {"user": "e2e-dave", "password": "dave-e2e-secret"}
"""e2e-quiet-client: no features, so nothing in its calls needs the ARI app."""
QUIET_DDI = "+34910000200"


class Front:
    """The FastAGI front on the sandbox's port, its outcomes, and the CDRs it wrote."""

    def __init__(self, front: AgiFront) -> None:
        self.front = front
        self.outcomes: list[Outcome] = []
        front.on_outcome = self.outcomes.append

    async def outcome(self, within: float = 10.0) -> Outcome:
        """The first call's outcome, once its end (CDR, slot) is written: the front hands
        an end to its writer and reports the outcome before the batch is committed."""
        await until(lambda: bool(self.outcomes), within)
        await asyncio.wait_for(self.front.settled(), within)
        return self.outcomes[0]


@pytest.fixture
async def agi(asterisk: AsteriskHandle, rest: AriRest, tmp_path: Path) -> AsyncIterator[Front]:
    config = link_config(asterisk, server="as-agi", fastagi_secret=asterisk.fastagi_secret)
    engine = create_engine(asterisk.database_url)
    try:
        async with CdrStore(engine, tmp_path / "spool") as cdrs:
            front = AgiFront(config, Pipeline(SqlDirectory(engine)), cdrs=cdrs)
            await front.start("127.0.0.1", asterisk.fastagi_port)
            try:
                yield Front(front)
            finally:
                await front.stop()
    finally:
        await engine.dispose()
    assert await rest.lacks_app(asterisk.app)  # no ARI app took part unless a test said so


async def answered_call(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    callee: Sipp,
    dialled: str,
    hold_ms: int,
    who: dict[str, str],
) -> tuple[SippResult, SippResult]:
    """``who`` dials ``dialled``; ``callee`` answers; the caller hangs up after ``hold_ms``."""
    ringing = callee.start(calls=1, timeout=20)
    caller = await asyncio.to_thread(
        sipp("terminal_answered.xml").run,
        asterisk.sip_target,
        service=dialled,
        hold_ms=hold_ms,
        timeout=20,
        **who,
    )
    answered = await finish_sipp(callee, ringing)
    ok(caller)
    ok(answered)
    return caller, answered


async def test_an_external_call_is_dialled_by_the_dialplan_with_the_clients_ddi(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], agi: Front, rest: AriRest
) -> None:
    _, answered = await answered_call(
        asterisk, sipp, sipp("uas_answer.xml", asterisk.carrier_port), "600123123", 800, DAVE
    )
    invite = first(answered, "INVITE")
    assert invite.first_line.startswith("INVITE sip:+34600123123@127.0.0.1:"), invite.text
    for each in received(answered, "INVITE"):
        assert user_of(each.header("From")) == QUIET_DDI, each.text
    assert first(answered, "BYE")  # the caller hung up; Asterisk hung up the carrier
    outcome = await agi.outcome()
    assert (outcome.decision, outcome.result, outcome.answered, outcome.client) == (
        "dial carrier carrier-e2e",
        "answered, caller hung up",
        True,
        "e2e-quiet-client",
    )
    assert 0.5 <= outcome.seconds <= 3
    engine = create_engine(asterisk.database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(BillableCall))).mappings().all()
    finally:
        await engine.dispose()
    [cdr] = [row for row in rows if row["call_id"] == outcome.call_id]
    assert (cdr["callee"], cdr["ddi"], cdr["server"]) == ("+34600123123", "34910000200", "as-agi")
    assert 1 <= cdr["duration"] <= 3
    await no_channel_left(asterisk, rest)


async def test_a_refused_carrier_call_hears_its_locution_from_the_dialplan_then_404(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], agi: Front, rest: AriRest
) -> None:
    result, rtp = await call_with_counter(
        sipp("carrier_refused_early_media.xml", asterisk.carrier_port),
        asterisk.sip_target,
        service=UNKNOWN_DDI,
        timeout=20,
    )
    heard_early_media(result, rtp, 404, "no_client")
    outcome = await agi.outcome()
    assert (outcome.decision, outcome.reason, outcome.cause) == (
        "reject",
        "no_client",
        "unallocated",
    )
    await no_channel_left(asterisk, rest)


async def test_a_call_that_may_be_recorded_is_carried_by_the_ari_app(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], agi: Front, rest: AriRest
) -> None:
    # e2e-client records on demand (*5): the front hands alice's call to the Stasis app.
    async with serving(asterisk, rest, LiveLink(link_config(asterisk))) as live:
        bob = sipp("uas_answer.xml", asterisk.callee_ports["e2e-bob"])
        await answered_call(asterisk, sipp, bob, "102", 500, ALICE)
        outcome = await live.outcome()
    assert (outcome.decision, outcome.result) == (
        "dial terminal e2e-bob",
        "answered, caller hung up",
    )
    assert agi.outcomes == []  # the front decided, the app carried it and wrote its end
    await no_channel_left(asterisk, rest)


async def test_an_operator_hangs_up_a_call_the_fastagi_front_decided(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], agi: Front, rest: AriRest
) -> None:
    # The console API over no ARI link at all: the front's calls, ended through plain ARI.
    application = web.Application()
    ConsoleApi("as-agi", [], agi=agi.front, hang_up=rest.hang_up).install(application)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    console_url = f"http://127.0.0.1:{port}"
    calling, answering = carrier_call_held(asterisk, sipp)
    try:

        async def up() -> bool:
            channels = {c["id"]: c["state"] for c in await rest.channels()}
            return any(channels.get(call_id) == "Up" for call_id in agi.front.decided)

        await until(up, within=10)
        [call_id] = list(agi.front.decided)
        await listed_then_hung_up(console_url, "as-agi", call_id, HELD, asterisk.database_url)
    finally:
        caller, callee = await calling, await answering
        await runner.cleanup()
    ended_by_asterisk(caller, callee, await agi.outcome())
    await no_channel_left(asterisk, rest)


async def test_a_front_without_the_rendered_secret_refuses_the_call_with_a_503(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    rest: AriRest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Whatever listens on the port without the secret Asterisk's URLs carry decides nothing:
    # the call is refused with congestion (SIP 503) and nothing is written for it.
    caplog.set_level(logging.DEBUG)
    config = link_config(asterisk, server="as-agi", fastagi_secret="not-the-rendered-one")
    engine = create_engine(asterisk.database_url)
    try:
        async with CdrStore(engine, tmp_path / "spool") as cdrs:
            front = AgiFront(config, Pipeline(SqlDirectory(engine)), cdrs=cdrs)
            outcomes: list[Outcome] = []
            front.on_outcome = outcomes.append
            await front.start("127.0.0.1", asterisk.fastagi_port)
            try:
                caller = await run_sipp(
                    sipp("terminal_refused.xml"),
                    asterisk.sip_target,
                    service="600123124",
                    timeout=20,
                    **DAVE,
                )
                refused = "refused: wrong secret"
                await until(lambda: sum(refused in m for m in caplog.messages) == 2, within=10)
            finally:
                await front.stop()
        async with engine.connect() as connection:
            ids = (await connection.scalars(select(BillableCall.call_id))).all()
    finally:
        await engine.dispose()
    ok(caller)
    assert final_status(caller) == 503
    assert outcomes == []
    assert front.decided == {}
    # Two requests (the decision, then the refused call's end), one line each, naming the
    # call but neither secret.
    lines = [m for m in caplog.messages if refused in m]
    [call_id] = {re.findall(r"call '([^']+)' from 127.0.0.1", line)[0] for line in lines}
    assert len(lines) == 2, lines
    assert call_id not in ids
    shown = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert not [line for line in shown if asterisk.fastagi_secret in line]
    assert not [line for line in shown if "not-the-rendered-one" in line]
    await no_channel_left(asterisk, rest)


class Slow(SqlDirectory):
    """The directory, two seconds slow to find a terminal: a call is still being decided
    when its caller gives up."""

    async def terminal(self, endpoint: str) -> TerminalView | None:
        await asyncio.sleep(2)
        return await super().terminal(endpoint)


async def test_a_caller_who_leaves_while_the_call_is_decided_ends_it_once(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    rest: AriRest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Asterisk tells the front the caller hung up (HANGUP) as it sets CC: the dialplan will
    # not dial, so the front ends the call itself: one outcome, one CDR, no error.
    caplog.set_level(logging.INFO)
    config = link_config(asterisk, server="as-agi", fastagi_secret=asterisk.fastagi_secret)
    engine = create_engine(asterisk.database_url)
    try:
        async with CdrStore(engine, tmp_path / "spool") as cdrs:
            front = AgiFront(config, Pipeline(Slow(engine)), cdrs=cdrs)
            outcomes: list[Outcome] = []
            front.on_outcome = outcomes.append
            await front.start("127.0.0.1", asterisk.fastagi_port)
            try:
                caller = await run_sipp(
                    sipp("terminal_cancel_deciding.xml"),
                    asterisk.sip_target,
                    service="600123125",
                    timeout=20,
                    **DAVE,
                )
                await until(lambda: bool(outcomes), within=10)
                await no_channel_left(asterisk, rest)
            finally:
                await front.stop()
        [outcome] = outcomes
        async with engine.connect() as connection:
            durations = (
                await connection.scalars(
                    select(BillableCall.duration).where(BillableCall.call_id == outcome.call_id)
                )
            ).all()
    finally:
        await engine.dispose()
    ok(caller)
    assert final_status(caller) == 487
    assert (outcome.decision, outcome.result, outcome.answered) == (
        "dial carrier carrier-e2e",
        "caller hung up before answer",
        False,
    )
    assert durations == [0]
    assert front.decided == {}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
