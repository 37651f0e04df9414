"""Calls handed back to the dialplan (callcontrol.handback), against the simulated
Asterisk: a dialled call that cannot be recorded costs two ARI requests, its end comes
back through the ``h`` extension's StasisStart, and callers see what a bridged call
gives them (ringing, answer, the callee's busy). A call that may be recorded stays
bridged in the app.

acme-south (prepaid) and thames-consulting have no on-demand recording; acme-north has.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.bench_measure import RoundTrips
from callcontrol.guards import Guards
from callcontrol.handback import Ended, ended, pack, reason_of, result_of
from callcontrol.service import AsteriskLink
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from callcontrol.simulator.settings import Behaviour
from dialplan.decisions import Dial
from dialplan.pipeline import Pipeline
from models.billing import ActiveCallSlot
from models.cdrs import CdrStore
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET, load_file
from models.slots import SlotKeeper, acquire
from models.tenants import Client
from tests.simulator_helpers import AppSocket, Rest, fast_config
from tests.test_service import CONFIG, Running, _has_app, bridged, until

pytest_plugins = ["tests.test_service"]

ADOPTION = ["applications.filter", "channels.list", "bridges.list"]
HAND_BACK = ["channels.setChannelVar", "channels.continueInDialplan"]


async def handing_back(sim: Simulator, engine: AsyncEngine, **changes: object) -> Running:
    link = AsteriskLink(sim.url, replace(CONFIG, **changes), Pipeline(SqlDirectory(engine)))
    link.journal = []
    running = Running(link)
    async with ControlClient(sim.url) as control:
        await until(lambda: _has_app(control))
    return running


def operations(running: Running) -> list[str]:
    journal = running.link.journal
    assert journal is not None
    return [name for name, _ in journal if name not in ADOPTION]


async def test_an_unrecordable_call_costs_two_requests_and_reports_its_end(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    running = await handing_back(sim, demo_engine)
    try:
        caller = str((await control.call("thames-george", "2002"))["id"])
        await bridged(control, caller)  # the dialplan's own bridge
        await asyncio.sleep(0.3)
        await control.hang_up(caller)
        outcome = await running.outcome(caller)
    finally:
        await running.stop()
    assert operations(running) == HAND_BACK
    assert (outcome.decision, outcome.result, outcome.answered) == (
        "dial terminal thames-harriet",
        "answered, caller hung up",
        True,
    )
    assert outcome.seconds >= 0.2


async def test_on_an_asterisk_that_cannot_filter_events_a_call_is_handed_back_the_same(
    tmp_path: Path, demo_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # An Asterisk older than 13.26 and 16.3 sends every event: StasisEnd included.
    caplog.set_level(logging.INFO, "callcontrol.service")
    async with Simulator(fast_config(tmp_path / "recordings", event_filters=False)) as sim:
        running = await handing_back(sim, demo_engine)
        try:
            async with ControlClient(sim.url) as control:
                caller = str((await control.call("thames-george", "2002"))["id"])
                await bridged(control, caller)
                await control.hang_up(caller)
                outcome = await running.outcome(caller)
        finally:
            await running.stop()
        delivered = {event["type"] for event in sim.hub.log if event["delivered"]}
    assert "cannot filter events; receiving all" in caplog.text
    assert {"StasisEnd", "ChannelVarset"} <= delivered
    assert operations(running) == HAND_BACK
    assert (outcome.result, outcome.answered) == ("answered, caller hung up", True)


async def test_the_callee_hanging_up_is_told_from_the_caller(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    running = await handing_back(sim, demo_engine)
    try:
        caller = str((await control.call("thames-george", "2002"))["id"])
        joined = await bridged(control, caller)
        [callee] = [
            c["id"]
            for c in await control.channels()
            if c["id"] != caller and c.get("bridge_id") == joined["bridge_id"]
        ]
        await control.hang_up(callee)
        outcome = await running.outcome(caller)
        gone = await control.wait_gone(caller, within=3)
    finally:
        await running.stop()
    assert (outcome.result, outcome.answered, gone["cause"]) == (
        "answered, callee hung up",
        True,
        16,
    )


async def test_a_busy_callee_gets_the_caller_its_busy(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    sim.config.behaviours["thames-harriet"] = Behaviour(answer="busy", after=0.05)
    running = await handing_back(sim, demo_engine)
    try:
        caller = str((await control.call("thames-george", "2002"))["id"])
        outcome = await running.outcome(caller)
        gone = await control.wait_gone(caller, within=3)
    finally:
        await running.stop()
    assert operations(running) == HAND_BACK
    assert (outcome.result, outcome.cause, outcome.answered) == ("callee failed", "busy", False)
    assert gone["cause"] == 17  # SIP 486


async def test_the_console_lists_a_handed_back_call_and_an_operator_ends_it(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    running = await handing_back(sim, demo_engine)
    try:
        caller = str((await control.call("thames-george", "2002"))["id"])
        await bridged(control, caller)
        [session] = list(running.link.sessions)
        await until(lambda: session.handed_back)
        snapshot = session.snapshot()
        assert (snapshot["id"], snapshot["state"], snapshot["client"]) == (
            caller,
            "dialplan",
            "thames-consulting",
        )
        await session.hang_up_by_operator()
        outcome = await running.outcome(caller)
    finally:
        await running.stop()
    assert (outcome.result, outcome.answered) == ("answered, operator hung up", True)


async def test_a_prepaid_call_handed_back_ends_when_its_balance_has_paid_all_it_can(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    # standard-eur prices the US at 0.02/min in 1/1 increments: 0.001 EUR pays 3 seconds.
    async with demo_engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.name == "acme-south").values(balance=Decimal("0.001"))
        )
    running = await handing_back(sim, demo_engine)
    try:
        caller = str((await control.call("acme-south-dario", "0012125550100"))["id"])
        outcome = await running.outcome(caller, within=15)
    finally:
        await running.stop()
    assert operations(running) == HAND_BACK
    assert (outcome.result, outcome.answered) == ("answered, balance ran out", True)
    assert outcome.seconds >= 2.5


async def test_a_call_that_may_be_recorded_stays_bridged_in_the_app(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    running = await handing_back(sim, demo_engine)
    try:
        caller = str((await control.call("acme-north-ana", "102"))["id"])
        await bridged(control, caller)
        await control.hang_up(caller)
        await running.outcome(caller)
    finally:
        await running.stop()
    assert "channels.continueInDialplan" not in operations(running)
    assert "bridges.create" in operations(running)


async def test_an_end_unknown_to_this_process_frees_its_slot(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    keeper = SlotKeeper(demo_engine, "as-1", replace(CONFIG, slot_lease=60.0, slot_heartbeat=20.0))
    async with demo_engine.connect() as connection:
        client_id = await connection.scalar(select(Client.id).where(Client.name == "acme-south"))
    assert client_id is not None
    taken = await acquire(
        demo_engine,
        client_id=client_id,
        max_calls=0,
        call_id="left-by-a-previous-run",
        server="as-1",
        direction="outbound",
        now=datetime.now(UTC),
        lease=60.0,
    )
    assert taken.taken
    guards = Guards(demo_engine, "as-1", 60.0, keeper)
    link = AsteriskLink(sim.url, CONFIG, Pipeline(SqlDirectory(demo_engine)), guards=guards)
    link.deliver(
        {
            "type": "StasisStart",
            "args": ["end", "ANSWER", "5000", "16", ""],
            "channel": {"id": "left-by-a-previous-run"},
        }
    )

    async def freed() -> bool:
        async with demo_engine.connect() as connection:
            held = await connection.scalar(select(func.count()).select_from(ActiveCallSlot))
        return held == 0

    await until(freed)
    await link.stop(0.1)


def test_the_packed_decision_survives_any_caller_name() -> None:
    decision = Dial(
        "carrier-telco-es",
        "carrier",
        caller_id="+34910000100",
        caller_name='Smith, "J" \x00\n(boss)',
        number="+34600123123",
        max_duration=90,
        diversion="+34910000101",
    )
    fields = pack(decision, 30, "callcontrol/destination_unreachable", "es").split(".")
    assert fields[0] == "dial"
    assert fields[2] == "30"
    texts = [base64.b64decode(field).decode() for field in fields[1:2] + fields[3:]]
    assert texts == [
        "PJSIP/+34600123123@carrier-telco-es",
        "gS(90)",
        "+34910000100",
        'Smith, "J" (boss)',
        "<tel:+34910000101>;reason=unconditional",
        "callcontrol/destination_unreachable",
        "es",
    ]


@pytest.mark.parametrize(
    ("args", "by_operator", "expected"),
    [
        (["end", "ANSWER", "61000", "16", ""], False, ("answered, caller hung up", "normal", True)),
        (
            ["end", "ANSWER", "1000", "16", "callee"],
            False,
            ("answered, callee hung up", "normal", True),
        ),
        (
            ["end", "ANSWER", "89700", "16", "callee"],
            False,
            ("answered, balance ran out", "normal", True),
        ),
        (["end", "ANSWER", "1000", "16", ""], True, ("answered, operator hung up", "normal", True)),
        (["end", "CANCEL", "", "16", ""], False, ("caller hung up before answer", "normal", False)),
        (
            ["end", "CANCEL", "", "16", ""],
            True,
            ("hung up by operator before answer", "normal", False),
        ),
        (["end", "BUSY", "", "17", "callee"], False, ("callee failed", "busy", False)),
        (["end", "NOANSWER", "", "19", "callee"], False, ("callee failed", "no_answer", False)),
        (
            ["end", "CHANUNAVAIL", "", "19", "callee"],
            False,
            ("callee unreachable", "no_answer", False),
        ),
        (
            ["end", "CHANUNAVAIL", "", "34", "relay"],
            False,
            ("callee's media relay unavailable", "congestion", False),
        ),
    ],
)
def test_the_end_reported_reads_as_a_bridged_calls_would(
    args: list[str], by_operator: bool, expected: tuple[str, str, bool]
) -> None:
    assert result_of(ended(args), 90, by_operator) == expected


def test_only_a_callee_without_a_contact_or_a_media_relay_is_a_reason_of_ours() -> None:
    assert reason_of(ended(["end", "CHANUNAVAIL", "", "19", "callee"])) == (
        "destination_unreachable"
    )
    # The edge-mode dialplan's report of a leg the edge had no media relay for.
    assert reason_of(ended(["end", "CHANUNAVAIL", "", "34", "relay"])) == "service_unavailable"
    for status in ("ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION"):
        assert reason_of(ended(["end", status, "", "16", ""])) is None


def test_a_garbled_report_still_reads_as_an_end() -> None:
    assert ended(["end", "ANSWER", "nan", "x"]) == Ended(
        "ANSWER", 0.0, 16, False, "'nan' ms is not a duration: 0 s"
    )
    assert ended(["end", "CANCEL", "", "1e999"]) == Ended("CANCEL", 0.0, 16, False)


@pytest.mark.parametrize(
    ("reported", "cap", "elapsed", "seconds"),
    [
        ("65400", None, 70.0, 65.4),  # believed
        ("65400", 60, 70.0, 60.0),  # more than the cap
        ("65400", None, 10.0, 12.0),  # more than the time since the decision, and slack
        ("65400", 60, -5.0, 2.0),  # a clock gone backwards: the slack at most
        ("inf", 60, 3600.0, 60.0),
        ("1e300", None, None, 1e6),  # nothing bounds it: a million seconds, not forever
        ("-1", 60, 70.0, 0.0),
        ("0x10", 60, 70.0, 0.0),
    ],
)
def test_the_answered_time_is_believed_up_to_the_cap_and_the_time_elapsed(
    reported: str, cap: int | None, elapsed: float | None, seconds: float
) -> None:
    end = ended(["end", "ANSWER", reported, "16", ""], cap, elapsed)
    assert end.answered_seconds == pytest.approx(seconds)
    assert bool(end.clamped) == (reported != "65400" or seconds != 65.4)


async def test_a_callee_asterisk_cannot_reach_is_unreachable_with_a_480(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    sim.config.behaviours["thames-harriet"] = Behaviour(answer="unreachable")
    running = await handing_back(sim, demo_engine)
    try:
        caller = str((await control.call("thames-george", "2002"))["id"])
        outcome = await running.outcome(caller)
        gone = await control.wait_gone(caller, within=3)
    finally:
        await running.stop()
    assert (outcome.result, outcome.reason, outcome.cause, gone["cause"]) == (
        "callee unreachable",
        "destination_unreachable",
        "no_answer",
        19,
    )


async def test_the_simulated_dialplan_fails_a_call_continued_there_without_a_decision(
    sim: Simulator, control: ControlClient
) -> None:
    async with aiohttp.ClientSession() as session:
        app = await AppSocket.connect(session, sim.url)
        rest = Rest(session, sim.url)
        try:
            caller = str((await control.call("thames-george", "2002"))["id"])
            await app.next("StasisStart", caller)
            status, _ = await rest(
                "POST", f"/channels/{caller}/continue", context="callcontrol-dial", extension="s"
            )
            assert status == 204
            gone = await control.wait_gone(caller, within=3)
            report = await app.next("StasisStart", caller)
        finally:
            await app.close()
    assert gone["cause"] == 38  # Dial() of nothing: a failure
    assert report["args"] == ["end", "", "", "38", ""]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_external_call_is_admitted_in_one_round_trip_on_postgresql(
    sim: Simulator, control: ControlClient, engine: AsyncEngine, tmp_path: Path
) -> None:
    # thames-george calls a London number: every guard of the pipeline asks the database.
    await load_file(engine, DEMO_DATASET)
    config = CONFIG
    keeper = SlotKeeper(engine, "as-1", replace(config, slot_lease=60.0, slot_heartbeat=20.0))
    directory = SqlDirectory(engine)
    await directory.snapshots.current()  # the service loads its configuration at start
    pipeline = Pipeline(directory)
    async with CdrStore(engine, tmp_path / "spool") as cdrs:
        link = AsteriskLink(
            sim.url, config, pipeline, cdrs=cdrs, guards=Guards(engine, "as-1", 60.0, keeper)
        )
        link.journal = []
        running = Running(link)
        trips = RoundTrips(engine)
        try:
            await until(lambda: _has_app(control))
            counts = []
            # The configuration is in memory: a destination never seen costs no more. (The
            # first call opens the pool's connection, whose set-up queries are not the call's.)
            calls = [("thames-george", n) for n in ("02079460123", "02079460124", "02079460999")]
            calls.append(("acme-south-dario", "600123123"))  # prepaid: it holds its cap too
            for terminal, number in calls:
                before, sent = trips.count, len(link.journal)
                call = str((await control.call(terminal, number))["id"])
                await until(lambda sent=sent: len(link.journal) >= sent + 2)  # variable, continue
                counts.append(trips.count - before)
                await control.hang_up(call)
                await running.outcome(call)
        finally:
            await running.stop()
    # The slot is taken with the client's counters, in one statement; a prepaid call then
    # reserves the price of its cap from the balance, in one more.
    assert counts[1:] == [1, 1, 2]
