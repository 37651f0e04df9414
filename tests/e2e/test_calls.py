"""Calls through the service on the real Asterisk sandbox, SIPp at both ends.

Each test runs the service's :class:`AsteriskLink` in-process against the sandbox, places one
call with SIPp terminals and a SIPp carrier (the platform of ``dataset.yaml``) and asserts both
what SIPp saw (final responses, the caller id presented, who sent the BYE) and the outcome the
service logged; then that Asterisk holds no channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from models.billing import BillableCall
from models.cdrs import CdrStore
from tests.e2e.harness import (
    DIAL_TIMEOUT,
    AriRest,
    LiveLink,
    finish_sipp,
    link_config,
    no_channel_left,
    run_sipp,
    serving,
    until,
)
from tests.e2e.sandboxes import GHOST, AsteriskHandle
from tests.e2e.sipp import Message, Sipp, SippResult

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

ALICE = {"user": "e2e-alice", "password": "alice-e2e-secret"}
CAROL = {"user": "e2e-carol", "password": "carol-e2e-secret"}
CLIENT_DDI = "+34910000100"
"""The client's outgoing DDI (alice's too): presented on external calls."""


def received(result: SippResult, method: str) -> list[Message]:
    """Every request ``method`` a SIPp role received, in order."""
    return [
        message
        for message in result.messages
        if message.direction == "received" and message.first_line.startswith(f"{method} ")
    ]


def first(result: SippResult, method: str) -> Message:
    """The first request ``method`` a SIPp role received."""
    found = received(result, method)
    assert found, f"no {method} received:\n{result.describe()}"
    return found[0]


def sent_requests(result: SippResult) -> list[str]:
    return [
        m.first_line.split()[0]
        for m in result.messages
        if m.direction == "sent" and m.status is None
    ]


def final_status(result: SippResult) -> int:
    """The final response the caller got to its (authenticated) INVITE."""
    finals = [s for s in result.received_statuses() if s >= 200 and s != 401]
    assert finals, result.describe()
    return finals[-1]


def user_of(header: str | None) -> str:
    """``"x" <sip:+3491…@host>;tag=…`` → ``+3491…``."""
    assert header is not None
    return header.split("sip:", 1)[1].split("@", 1)[0]


def ok(result: SippResult) -> None:
    assert (result.returncode, result.successful, result.failed) == (0, 1, 0), result.describe()


async def call_while_bridged(
    rest: AriRest, caller: Sipp, target: str, **options: object
) -> SippResult:
    """Run the caller; meanwhile, check Asterisk bridges the two legs."""
    running = asyncio.create_task(run_sipp(caller, target, **options))
    try:
        await until(rest.bridged_pair, within=10)
    finally:
        result = await running
    return result


async def test_a_terminal_calls_a_terminal_that_answers_and_the_caller_hangs_up_first(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    bob = sipp("uas_answer.xml", asterisk.callee_ports["e2e-bob"])
    ringing = bob.start(calls=1, timeout=20)
    caller = await call_while_bridged(
        rest,
        sipp("terminal_answered.xml"),
        asterisk.sip_target,
        service="102",
        hold_ms=1000,
        timeout=20,
        **ALICE,
    )
    callee = await finish_sipp(bob, ringing)
    ok(caller)
    ok(callee)
    assert final_status(caller) == 200
    assert sent_requests(caller)[-1] == "BYE"  # the caller hung up ...
    assert first(callee, "BYE")  # ... and the callee was hung up
    invite = first(callee, "INVITE")
    assert invite.first_line.startswith("INVITE sip:e2e-bob@127.0.0.1:")
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.answered) == (
        "dial terminal e2e-bob",
        "answered, caller hung up",
        True,
    )
    assert outcome.seconds >= 0.8
    await no_channel_left(asterisk, rest)


async def test_an_internal_call_presents_the_callers_extension(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    bob = sipp("uas_answer.xml", asterisk.callee_ports["e2e-bob"])
    ringing = bob.start(calls=1, timeout=20)
    caller = await run_sipp(
        sipp("terminal_answered.xml"),
        asterisk.sip_target,
        service="102",
        hold_ms=200,
        timeout=20,
        **ALICE,
    )
    callee = await finish_sipp(bob, ringing)
    ok(caller)
    assert user_of(first(callee, "INVITE").header("From")) == "101"
    assert (await service.outcome()).answered
    await no_channel_left(asterisk, rest)


async def test_the_callee_hangs_up_first_and_the_caller_gets_a_bye(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    bob = sipp("uas_answer_bye.xml", asterisk.callee_ports["e2e-bob"])
    ringing = bob.start(calls=1, timeout=20, hold_ms=1000)
    caller = await call_while_bridged(
        rest,
        sipp("terminal_answered_remote_bye.xml"),
        asterisk.sip_target,
        service="102",
        timeout=20,
        **ALICE,
    )
    callee = await finish_sipp(bob, ringing)
    ok(caller)
    ok(callee)
    assert sent_requests(callee)[-1] == "BYE"
    assert first(caller, "BYE")
    assert "BYE" not in sent_requests(caller)
    outcome = await service.outcome()
    assert (outcome.result, outcome.answered) == ("answered, callee hung up", True)
    await no_channel_left(asterisk, rest)


async def external_call(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    rest: AriRest,
    dialled: str = "600123123",  # national: +34600123123 in the client's country
    hold_ms: int = 500,
) -> tuple[SippResult, SippResult]:
    """alice dials ``dialled``; the SIPp carrier answers; alice hangs up after ``hold_ms``."""
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    ringing = carrier.start(calls=1, timeout=20)
    caller = await call_while_bridged(
        rest,
        sipp("terminal_answered.xml"),
        asterisk.sip_target,
        service=dialled,
        hold_ms=hold_ms,
        timeout=20,
        **ALICE,
    )
    answered = await finish_sipp(carrier, ringing)
    ok(caller)
    ok(answered)
    return caller, answered


async def test_an_external_call_reaches_the_carrier_as_an_e164_number(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    _, answered = await external_call(asterisk, sipp, rest)
    invite = first(answered, "INVITE")
    assert invite.first_line.startswith("INVITE sip:+34600123123@127.0.0.1:"), invite.text
    assert first(answered, "BYE")
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.answered) == (
        "dial carrier carrier-e2e",
        "answered, caller hung up",
        True,
    )
    await no_channel_left(asterisk, rest)


async def test_an_external_call_presents_the_clients_ddi_to_the_carrier(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    _, answered = await external_call(asterisk, sipp, rest)
    await no_channel_left(asterisk, rest)
    # Every INVITE of the dialog (re-INVITEs update the connected line) presents the DDI.
    for invite in received(answered, "INVITE"):
        assert user_of(invite.header("From")) == CLIENT_DDI, invite.text
        assert user_of(invite.header("P-Asserted-Identity")) == CLIENT_DDI, invite.text


async def test_the_outgoing_ddi_rule_chooses_what_the_carrier_sees(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    # e2e-presentation: 111* before the number forces carol's DDI; the prefix is stripped.
    _, answered = await external_call(asterisk, sipp, rest, "111*600123123", hold_ms=300)
    invite = first(answered, "INVITE")
    assert invite.first_line.startswith("INVITE sip:+34600123123@127.0.0.1:"), invite.text
    for each in received(answered, "INVITE"):
        assert user_of(each.header("From")) == "+34910000103", each.text
        assert user_of(each.header("P-Asserted-Identity")) == "+34910000103", each.text
    await no_channel_left(asterisk, rest)


async def test_a_forwarded_call_reaches_the_carrier_with_a_diversion(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    # Extension 190 forwards to +34600000190: the caller's DDI is presented and the
    # forwarding client's DDI is named in a Diversion header.
    _, answered = await external_call(asterisk, sipp, rest, "190", hold_ms=300)
    invite = first(answered, "INVITE")
    assert invite.first_line.startswith("INVITE sip:+34600000190@127.0.0.1:"), invite.text
    assert user_of(invite.header("From")) == CLIENT_DDI, invite.text
    diversion = invite.header("Diversion") or ""
    assert "+34910000100" in diversion, invite.text
    assert "reason=unconditional" in diversion, invite.text
    await no_channel_left(asterisk, rest)


async def test_a_short_answered_external_call_writes_one_cdr_with_its_price(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], rest: AriRest, tmp_path: Path
) -> None:
    live = LiveLink(link_config(asterisk))
    async with CdrStore(live.engine, tmp_path / "spool") as store:
        live.link.cdrs = store
        async with serving(asterisk, rest, live):
            await external_call(asterisk, sipp, rest, hold_ms=1500)
            outcome = await live.outcome()  # logged once its CDR is written
            async with live.engine.connect() as connection:
                rows = (await connection.execute(select(BillableCall))).mappings().all()
    assert outcome.answered
    [cdr] = [row for row in rows if row["call_id"] == outcome.call_id]
    assert (cdr["direction"], cdr["callee"], cdr["ddi"]) == (
        "outbound",
        "+34600123123",
        "34910000100",
    )
    assert 1 <= cdr["duration"] <= 3
    # e2e-eur, Spain: 0.01 connection fee + 0.06/min in 60/60 increments: one minute.
    assert (cdr["billed_seconds"], Decimal(cdr["price"]), cdr["currency"]) == (
        60,
        Decimal("0.0700"),
        "EUR",
    )
    assert (cdr["rating_plan"], cdr["matched_prefix"]) == ("e2e-eur", "34")
    assert cdr["start_time"] <= cdr["answer_time"] <= cdr["end_time"]
    await no_channel_left(asterisk, rest)


async def test_a_carrier_call_to_a_ddi_rings_its_users_terminal(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    carol = sipp("uas_answer.xml", asterisk.callee_ports["e2e-carol"])
    ringing = carol.start(calls=1, timeout=20)
    caller = await call_while_bridged(
        rest,
        sipp("carrier_answered.xml", asterisk.carrier_port),
        asterisk.sip_target,
        service="+34910000103",
        user="+34600111222",  # the calling number, in From
        timeout=20,
    )
    callee = await finish_sipp(carol, ringing)
    ok(caller)
    ok(callee)
    assert 401 not in caller.received_statuses()  # a carrier is known by its address
    invite = first(callee, "INVITE")
    assert invite.first_line.startswith("INVITE sip:e2e-carol@127.0.0.1:")
    assert user_of(invite.header("From")) == "+34600111222", invite.text
    for update in received(caller, "INVITE"):  # connected-line updates to the carrier
        assert "e2e-" not in (update.header("P-Asserted-Identity") or ""), update.text
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result) == (
        "dial terminal e2e-carol",
        "answered, caller hung up",
    )
    await no_channel_left(asterisk, rest)


async def test_a_busy_callee_gets_the_caller_a_486(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    bob = sipp("uas_busy.xml", asterisk.callee_ports["e2e-bob"])
    ringing = bob.start(calls=1, timeout=20)
    caller = await run_sipp(
        sipp("terminal_refused.xml"), asterisk.sip_target, service="102", timeout=20, **ALICE
    )
    callee = await finish_sipp(bob, ringing)
    ok(caller)
    ok(callee)
    assert final_status(caller) == 486
    outcome = await service.outcome()
    assert (outcome.result, outcome.cause, outcome.answered) == ("callee failed", "busy", False)
    await no_channel_left(asterisk, rest)


async def test_a_callee_that_does_not_answer_in_time_gets_the_caller_a_480(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    # docs/asterisk.md: hanging up with no_answer (cause 19) sends 480. Asterisk ends the dial
    # with no Dial(NOANSWER): the leg's ChannelDestroyed (cause 19, tech_cause 480) tells.
    bob = sipp("uas_noanswer.xml", asterisk.callee_ports["e2e-bob"])
    ringing = bob.start(calls=1, timeout=20)
    started = time.monotonic()
    caller = await run_sipp(
        sipp("terminal_refused.xml"), asterisk.sip_target, service="102", timeout=20, **ALICE
    )
    elapsed = time.monotonic() - started
    callee = await finish_sipp(bob, ringing)
    ok(caller)
    ok(callee)
    assert 180 in caller.received_statuses()  # it rang ...
    assert final_status(caller) == 480, service.story()  # ... until the dial timed out
    assert DIAL_TIMEOUT <= elapsed < DIAL_TIMEOUT + 4
    assert first(callee, "CANCEL")
    outcome = await service.outcome()
    assert (outcome.result, outcome.cause) == ("callee failed", "no_answer")
    await no_channel_left(asterisk, rest)


async def test_the_caller_hanging_up_while_it_rings_cancels_the_callee(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    bob = sipp("uas_noanswer.xml", asterisk.callee_ports["e2e-bob"])
    ringing = bob.start(calls=1, timeout=20)
    caller = await run_sipp(
        sipp("terminal_cancel.xml"), asterisk.sip_target, service="102", timeout=20, **ALICE
    )
    callee = await finish_sipp(bob, ringing)
    ok(caller)
    ok(callee)
    assert final_status(caller) == 487
    assert first(callee, "CANCEL")
    outcome = await service.outcome()
    assert (outcome.result, outcome.answered) == ("caller hung up before answer", False)
    await no_channel_left(asterisk, rest)


async def test_a_terminal_that_belongs_to_no_client_gets_404(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    caller = await run_sipp(
        sipp("terminal_refused.xml"),
        asterisk.sip_target,
        service="102",
        user=GHOST,
        password="ghost-e2e-secret",
        timeout=20,
    )
    ok(caller)
    assert final_status(caller) == 404
    outcome = await service.outcome()
    assert (outcome.decision, outcome.reason, outcome.cause) == (
        "reject",
        "no_client",
        "unallocated",
    )
    await no_channel_left(asterisk, rest)


async def test_a_carrier_call_to_an_unknown_ddi_gets_404(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    caller = await run_sipp(
        sipp("carrier_refused.xml", asterisk.carrier_port),
        asterisk.sip_target,
        service="+34910000999",
        timeout=20,
    )
    ok(caller)
    assert final_status(caller) == 404
    outcome = await service.outcome()
    assert (outcome.decision, outcome.reason, outcome.cause) == (
        "reject",
        "no_client",
        "unallocated",
    )
    await no_channel_left(asterisk, rest)


async def test_a_number_the_callers_acl_denies_gets_403(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    caller = await run_sipp(
        sipp("terminal_refused.xml"), asterisk.sip_target, service="803123456", timeout=20, **CAROL
    )
    ok(caller)
    assert final_status(caller) == 403
    refusal = next(m for m in caller.messages if m.status == 403)
    assert refusal.header("Reason") == "Q.850;cause=21"
    outcome = await service.outcome()
    assert (outcome.decision, outcome.reason, outcome.cause) == (
        "reject",
        "not_allowed",
        "rejected",
    )
    await no_channel_left(asterisk, rest)
