"""Calls handed back to the rendered dialplan, on the real Asterisk with SIPp at both ends:
the service sets one variable and continues the call (two ARI requests); Asterisk dials
the carrier natively with the client's DDI; the ``h`` extension reports the end, so the
outcome and the CDR are the same as a bridged call's; an operator ends such a call from
the console like any other.

e2e-quiet-client (dave) has no recordings, so nothing in its calls needs the ARI app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from models.billing import BillableCall
from models.cdrs import CdrStore
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
from tests.e2e.sandboxes import AsteriskHandle
from tests.e2e.sipp import Sipp, SippResult
from tests.e2e.test_calls import first, ok, sent_requests, user_of
from tests.e2e.test_console import (  # noqa: F401 (fixture)
    console_url,
    ended_by_asterisk,
    listed_then_hung_up,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

DAVE = {"user": "e2e-dave", "password": "dave-e2e-secret"}
QUIET_DDI = "+34910000200"
ADOPTION = ("applications.filter", "channels.list", "bridges.list")


HELD = ["external", "101", "→", "+34600123123", "dialplan"]
"""How the console shows dave's call to the carrier while the dialplan carries it."""


def carrier_call_held(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp]
) -> tuple[asyncio.Task[SippResult], asyncio.Task[SippResult]]:
    """dave calls 600123123; the carrier answers and both wait for Asterisk's BYE: the
    tasks that end with the caller's and the carrier's results."""
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    ringing = carrier.start(calls=1, timeout=30)
    calling = asyncio.create_task(
        run_sipp(
            sipp("terminal_answered_remote_bye.xml"),
            asterisk.sip_target,
            service="600123123",
            timeout=30,
            **DAVE,
        )
    )
    return calling, asyncio.create_task(finish_sipp(carrier, ringing))


async def test_a_handed_back_call_reaches_the_carrier_and_reports_its_end(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], rest: AriRest, tmp_path: Path
) -> None:
    live = LiveLink(link_config(asterisk), journal=True)
    async with CdrStore(live.engine, tmp_path / "spool") as store:
        live.link.cdrs = store
        async with serving(asterisk, rest, live):
            carrier = sipp("uas_answer.xml", asterisk.carrier_port)
            ringing = carrier.start(calls=1, timeout=20)
            caller = await run_sipp(
                sipp("terminal_answered.xml"),
                asterisk.sip_target,
                service="600123123",
                hold_ms=1500,
                timeout=20,
                **DAVE,
            )
            answered = await finish_sipp(carrier, ringing)
            outcome = await live.outcome()  # logged once its CDR is written
            async with live.engine.connect() as connection:
                rows = (await connection.execute(select(BillableCall))).mappings().all()
    ok(caller)
    ok(answered)
    invite = first(answered, "INVITE")
    assert invite.first_line.startswith("INVITE sip:+34600123123@127.0.0.1:"), invite.text
    assert user_of(invite.header("From")) == QUIET_DDI
    assert "BYE" in sent_requests(caller)
    assert first(answered, "BYE")
    journal = live.link.journal
    assert journal is not None
    assert [name for name, _ in journal if name not in ADOPTION] == [
        "channels.setChannelVar",
        "channels.continueInDialplan",
    ]
    assert (outcome.decision, outcome.result, outcome.answered) == (
        "dial carrier carrier-e2e",
        "answered, caller hung up",
        True,
    )
    assert 1.0 <= outcome.seconds <= 5.0
    [cdr] = [row for row in rows if row["call_id"] == outcome.call_id]
    assert (cdr["callee"], cdr["ddi"], cdr["price"]) == ("+34600123123", "34910000200", None)
    assert 1 <= cdr["duration"] <= 5
    assert cdr["start_time"] <= cdr["answer_time"] <= cdr["end_time"]
    await no_channel_left(asterisk, rest)


async def test_an_operator_hangs_up_a_handed_back_call_from_the_console(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    service: LiveLink,
    rest: AriRest,
    console_url: str,  # noqa: F811 (fixture)
) -> None:
    calling, answering = carrier_call_held(asterisk, sipp)
    try:

        async def up() -> bool:
            sessions = [s for s in service.link.sessions if s.handed_back]
            channels = {c["id"]: c["state"] for c in await rest.channels()}
            return bool(sessions) and channels.get(sessions[0].call_id) == "Up"

        await until(up, within=10)
        [session] = service.link.sessions
        await listed_then_hung_up(
            console_url, "as-e2e", session.call_id, HELD, asterisk.database_url
        )
    finally:
        caller, callee = await calling, await answering
    ended_by_asterisk(caller, callee, await service.outcome())
    await no_channel_left(asterisk, rest)
