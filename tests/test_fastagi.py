"""The FastAGI front: decisions as dialplan variables (plain data), and the server spoken to
over a real socket by a stand-in for Asterisk's AGI client, on the demo platform."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from panoramisk.utils import parse_agi_result
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.cli import app
from callcontrol.fastagi import (
    ACCEPTED,
    HEADER_LIMIT,
    AgiFront,
    AgiRequest,
    _environment,
    agi_variables,
    quoted,
    read_request,
)
from callcontrol.geoip import GeoIp
from callcontrol.guards import Guards
from callcontrol.handback import packed, unpack
from callcontrol.service import Service
from callcontrol.session import Outcome
from callcontrol.simulator import Simulator
from callcontrol.writer import EndWriter
from dialplan.decisions import Dial, Reject, RunService
from dialplan.errors import ConfigError
from dialplan.pipeline import Pipeline
from dialplan.reasons import Reason
from dialplan.recording import RecordingPlan
from dialplan.views import ClientView, TerminalView
from models.billing import ActiveCallSlot, BillableCall
from models.cdrs import Cdr, CdrStore
from models.db import create_engine
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET
from models.slots import SlotKeeper, acquire
from models.tenants import Client, ClientGeoipCountry
from tests.ports import free_port
from tests.test_service import CONFIG, until

pytest_plugins = ["tests.test_service"]


def test_a_refusal_is_a_cause_a_locution_and_a_language() -> None:
    notified = Reject(Reason.NOT_ALLOWED, notify=True, language="es")
    assert agi_variables(notified, 30, "callcontrol/not_allowed") == {
        "CC_ACTION": "reject",
        "CC_CAUSE": "21",
        "CC_SOUND": "callcontrol/not_allowed",
        "CC_LANG": "es",
    }
    silent = Reject(Reason.INVALID_NUMBER, notify=False)
    assert agi_variables(silent, 30, "callcontrol/invalid_number")["CC_SOUND"] == ""
    assert agi_variables(silent, 30)["CC_CAUSE"] == "28"
    assert agi_variables(Reject(Reason.NO_CLIENT), 30)["CC_CAUSE"] == "1"
    inbound = Reject(Reason.MAX_CALLS_REACHED, direction="inbound")
    assert agi_variables(inbound, 30)["CC_CAUSE"] == "17"  # busy
    assert agi_variables(RunService("5", "record"), 30)["CC_CAUSE"] == "1"


def test_a_dial_is_a_dial_string_a_caller_id_and_options() -> None:
    terminal = Dial("acme-north-bruno", "terminal", "102", caller_id="101", caller_name="Ana")
    assert agi_variables(terminal, 20.0) == {
        "CC_ACTION": "dial",
        "CC_DIAL": "PJSIP/acme-north-bruno",
        "CC_TIMEOUT": "20",
        "CC_OPTIONS": "g",
        "CC_CALLERID": "101",
        "CC_CALLERNAME": "Ana",
        "CC_DIVERSION": "",
        "CC_UNREACHABLE": "",
        "CC_LANG": "en",
    }
    # what the caller hears when the callee has no contact: the sound and its language
    heard = agi_variables(terminal, 20.0, "callcontrol/destination_unreachable", "es")
    assert (heard["CC_UNREACHABLE"], heard["CC_LANG"]) == (
        "callcontrol/destination_unreachable",
        "es",
    )
    carrier = Dial(
        "carrier-telco-es",
        "carrier",
        "+34600123123",
        caller_id="+34910000100",
        max_duration=42,
        diversion="+34910000101",
    )
    variables = agi_variables(carrier, 30)
    assert variables["CC_DIAL"] == "PJSIP/+34600123123@carrier-telco-es"
    assert variables["CC_OPTIONS"] == "gS(42)"  # a prepaid call is cut when its balance is
    assert variables["CC_DIVERSION"] == "<tel:+34910000101>;reason=unconditional"


TOGGLED = RecordingPlan(from_answer=False, dtmf_code="5", why="*5 toggles")


def test_a_call_that_may_be_recorded_is_handed_to_the_ari_app() -> None:
    never = RecordingPlan(from_answer=False, dtmf_code=None, why="nothing records")
    assert agi_variables(Dial("x", "terminal", "1", recording=TOGGLED), 30) == {
        "CC_ACTION": "stasis"
    }
    assert agi_variables(Dial("x", "terminal", "1", recording=never), 30)["CC_ACTION"] == "dial"


def test_the_decision_travels_packed_in_one_variable() -> None:
    carrier = Dial("carrier-x", "carrier", "+34600123123", caller_name='A, "b"\n')
    for variables in (
        agi_variables(carrier, 30),
        agi_variables(carrier, 30, "callcontrol/destination_unreachable", "es"),
        agi_variables(Reject(Reason.NOT_ALLOWED, notify=True, language="es"), 30, "x/y"),
        agi_variables(Dial("x", "terminal", "1", recording=TOGGLED), 30),
    ):
        assert unpack(packed(variables)) == variables
    assert unpack(packed(agi_variables(carrier, 30)))["CC_CALLERNAME"] == 'A, "b"'
    with pytest.raises(ValueError, match="not a packed decision"):
        unpack("dial.only-two")


def test_arguments_are_quoted_on_one_line() -> None:
    assert quoted('Ana "the boss" \\ x') == '"Ana \\"the boss\\" \\\\ x"'
    assert quoted("two\nlines") == '"two lines"'


@pytest.mark.parametrize(
    "line",
    [ACCEPTED, b"200 result=1 (timeout)\n", b"200 result=0\n", b"510 Invalid or unknown command\n"],
)
async def test_an_answer_from_asterisk_reads_as_panoramisk_parses_it(line: bytes) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(line)
    reader.feed_eof()
    answer = await AgiRequest(None, {}, reader, None)._read_result()
    assert answer == parse_agi_result(line.decode().rstrip("\n"))


class FakeAsterisk:
    """Asterisk's side of one FastAGI request: the environment (its URL with ``secret``,
    when given), then "200 result=1" to every command, recorded."""

    def __init__(
        self,
        port: int,
        secret: str = "",
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.port = port
        self.secret = secret
        self.settled = settled
        """Awaited after each end report: the front closes the report's connection before
        it writes the call's end (Asterisk need not wait for the CDR)."""

    def environment(self, script: str, call_id: str, **values: str) -> bytes:
        url = f"{script}?secret={self.secret}" if self.secret else script
        env = {
            "agi_network": "yes",
            "agi_network_script": url,
            "agi_request": f"agi://127.0.0.1:{self.port}/{url}",
            "agi_uniqueid": call_id,
            "agi_language": "en",
        } | values
        # surrogateescape: a test may send bytes that are not UTF-8 ("\udcff" is 0xff).
        text = "".join(f"{k}: {v}\n" for k, v in env.items())
        return text.encode("utf-8", "surrogateescape")

    async def request(self, script: str, call_id: str, **values: str) -> list[str]:
        return await self.send(self.environment(script, call_id, **values) + b"\n")

    async def send(self, data: bytes, *, answer: bytes = b"200 result=1\n") -> list[str]:
        """``data``, then ``answer`` to every command (b"": close instead) until the
        front closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        await writer.drain()
        commands = []
        try:
            while line := await asyncio.wait_for(reader.readline(), 5):
                commands.append(line.decode().rstrip("\n"))
                if not answer:
                    break
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return commands

    def call(self, call_id: str, endpoint: str, dialled: str, **values: str) -> bytes:
        """The whole ``decide`` request of ``endpoint``'s call to ``dialled``."""
        return (
            self.environment(
                "decide",
                call_id,
                **{
                    "agi_channel": f"PJSIP/{endpoint}-00000001",
                    "agi_extension": dialled,
                    "agi_callerid": endpoint,
                    "agi_arg_1": "terminal",
                    "agi_arg_2": "127.0.0.1:5060",
                }
                | values,
            )
            + b"\n"
        )

    async def decide(
        self, call_id: str, endpoint: str, dialled: str, **values: str
    ) -> dict[str, str]:
        return told(await self.send(self.call(call_id, endpoint, dialled, **values)))

    async def end(self, call_id: str, *report: str) -> list[str]:
        """The ``h`` extension's report: ``dial``/``reject``, status, ms, cause, by."""
        args = {f"agi_arg_{n}": value for n, value in enumerate(report, start=1)}
        commands = await self.request("end", call_id, agi_extension="h", **args)
        if self.settled is not None:
            await self.settled()
        return commands


def told(commands: list[str]) -> dict[str, str]:
    """The decision in the one command a ``decide`` answers: SET VARIABLE CC "<packed>"."""
    [command] = commands
    name, _, value = command.removeprefix("SET VARIABLE ").partition(" ")
    assert name == "CC"
    return unpack(value.strip('"'))


CONGESTION = {"CC_ACTION": "reject", "CC_CAUSE": "34", "CC_SOUND": "", "CC_LANG": "en"}
INVALID = {"CC_ACTION": "reject", "CC_CAUSE": "28", "CC_SOUND": "", "CC_LANG": "en"}


class Clock:
    """The front's monotonic clock, moved on by the test (a call talks for minutes)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Front:
    def __init__(self, front: AgiFront, clock: Clock, secret: str = "") -> None:
        self.front = front
        self.clock = clock
        self.outcomes: list[Outcome] = []
        front.on_outcome = self.outcomes.append
        self.asterisk = FakeAsterisk(front.port, secret, front.settled)


@asynccontextmanager
async def serving(
    engine: AsyncEngine,
    tmp_path: Path,
    guards: type[Guards] = Guards,
    geoip: GeoIp | None = None,
    **settings: Any,
) -> AsyncIterator[Front]:
    """A front of server as-agi on ``engine`` (``settings`` over the tests' own), with its
    CDR store, its guards, ``geoip`` and a clock of the test's."""
    config = replace(CONFIG, server="as-agi", **settings)
    keeper = SlotKeeper(engine, "as-agi", config)
    clock = Clock()
    async with CdrStore(engine, tmp_path / "spool") as cdrs:
        front = AgiFront(
            config,
            Pipeline(SqlDirectory(engine)),
            cdrs=cdrs,
            guards=guards(engine, "as-agi", 60.0, keeper),
            clock=clock,
            geoip=geoip,
        )
        await front.start("127.0.0.1", 0)
        try:
            yield Front(front, clock, config.fastagi_secret)
        finally:
            await front.stop()


@pytest.fixture
async def served(demo_engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Front]:
    # The default agi_timeout: a first decision on a loaded machine may take a second.
    async with serving(demo_engine, tmp_path) as front:
        yield front


async def slots(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(ActiveCallSlot)) or 0)


async def test_an_external_call_is_decided_dialled_and_ended_with_its_cdr_and_slot(
    served: Front, demo_engine: AsyncEngine
) -> None:
    # thames-consulting (London, pseudoprepaid, no recordings) calls a London number.
    variables = await served.asterisk.decide("as-agi-1.1", "thames-george", "02079460123")
    assert variables["CC_ACTION"] == "dial"
    assert variables["CC_DIAL"] == "PJSIP/+442079460123@carrier-uk"
    assert variables["CC_CALLERID"] == "+442079460100"  # the client's DDI
    assert await slots(demo_engine) == 1
    served.clock.now += 70  # the call rings and talks
    assert await served.asterisk.end("as-agi-1.1", "dial", "ANSWER", "65400", "16", "") == []
    assert await slots(demo_engine) == 0
    [outcome] = served.outcomes
    assert (outcome.result, outcome.answered, outcome.seconds, outcome.client) == (
        "answered, caller hung up",
        True,
        65.4,
        "thames-consulting",
    )
    async with demo_engine.connect() as connection:
        [cdr] = (await connection.execute(select(BillableCall))).mappings().all()
    assert (cdr["call_id"], cdr["duration"], cdr["server"]) == ("as-agi-1.1", 65, "as-agi")
    assert cdr["price"] is not None
    assert Decimal(cdr["price"]) > 0


async def test_stopping_refuses_new_calls_and_still_hears_the_live_ones_end(
    served: Front, demo_engine: AsyncEngine
) -> None:
    front, asterisk = served.front, served.asterisk
    assert (await asterisk.decide("as-agi-2.1", "thames-george", "02079460123"))["CC_ACTION"] == (
        "dial"
    )
    stopping = asyncio.create_task(front.stop(grace=10.0))
    await asyncio.sleep(0.1)
    assert not stopping.done()  # a live call: its end is awaited
    refused = await asterisk.decide("as-agi-2.2", "thames-george", "02079460123")
    assert refused == {"CC_ACTION": "reject", "CC_CAUSE": "34", "CC_SOUND": "", "CC_LANG": "en"}
    served.clock.now += 5
    assert await asterisk.end("as-agi-2.1", "dial", "ANSWER", "3000", "16") == []
    await asyncio.wait_for(stopping, 5)
    assert await slots(demo_engine) == 0
    async with demo_engine.connect() as connection:
        ids = (await connection.scalars(select(BillableCall.call_id))).all()
    assert ids == ["as-agi-2.1"]
    assert [o.result for o in served.outcomes] == [
        "refused, server stopping",
        "answered, caller hung up",
    ]


async def test_a_call_acme_north_may_record_goes_to_the_ari_app_and_its_end_is_not_ours(
    served: Front, demo_engine: AsyncEngine
) -> None:
    # acme-north records on demand by *5: only the ARI app can hear the code.
    variables = await served.asterisk.decide("as-agi-4.1", "acme-north-ana", "600123123")
    assert variables == {"CC_ACTION": "stasis"}
    assert await slots(demo_engine) == 0  # the ARI app takes it when it decides again
    assert served.front.decided == {}


async def test_a_refusal_names_its_locution_and_the_end_writes_its_reason(
    served: Front, demo_engine: AsyncEngine
) -> None:
    # bruno's ACL denies premium numbers; acme-north speaks its refusals in Spanish.
    variables = await served.asterisk.decide("as-agi-2.1", "acme-north-bruno", "803123456")
    assert variables == {
        "CC_ACTION": "reject",
        "CC_CAUSE": "21",
        "CC_SOUND": "callcontrol/not_allowed",
        "CC_LANG": "es",
    }
    await served.asterisk.request("end", "as-agi-2.1", agi_arg_1="reject", agi_arg_2="")
    [outcome] = served.outcomes
    assert (outcome.decision, outcome.reason, outcome.cause) == (
        "reject",
        "not_allowed",
        "rejected",
    )


async def test_a_terminal_is_judged_by_the_country_of_its_source(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # seine-studio allows its studio's networks; here France too, by GeoIP.
    async with demo_engine.begin() as connection:
        seine = await connection.scalar(select(Client.id).where(Client.name == "seine-studio"))
        await connection.execute(insert(ClientGeoipCountry).values(client_id=seine, country="FR"))
    from tests.geoip_fixtures import write_mmdb  # here: a plugin module elsewhere

    places = {"90.0.0.0/8": "FR", "8.8.8.0/24": "US"}
    records = {network: {"country": {"iso_code": code}} for network, code in places.items()}
    geoip = GeoIp(str(write_mmdb(tmp_path / "countries.mmdb", "GeoIP2-Country", records)))
    try:
        async with serving(demo_engine, tmp_path, geoip=geoip) as front:
            actions = {
                source: (
                    await front.asterisk.decide(
                        f"geo-{n}", "seine-margaux", "22", agi_arg_2=f"{source}:5060"
                    )
                )["CC_ACTION"]
                for n, source in enumerate(["90.1.2.3", "8.8.8.8", "198.51.100.7", "203.0.113.9"])
            }
            for n, action in enumerate(actions.values()):
                report = (
                    ("dial", "ANSWER", "1000", "16", "") if action == "dial" else ("reject", "")
                )
                await front.asterisk.end(f"geo-{n}", *report)
    finally:
        geoip.close()
    # France by GeoIP, the studio's network by address; the US and an unknown place refused.
    assert actions == {
        "90.1.2.3": "dial",
        "8.8.8.8": "reject",
        "198.51.100.7": "dial",
        "203.0.113.9": "reject",
    }
    refused = {o.call_id: o.reason for o in front.outcomes if o.decision == "reject"}
    assert refused == {"geo-1": "ip_not_allowed", "geo-3": "ip_not_allowed"}


async def test_the_last_slot_taken_elsewhere_turns_a_dial_into_a_refusal(
    served: Front, demo_engine: AsyncEngine
) -> None:
    async with demo_engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.name == "thames-consulting").values(max_calls=1)
        )
    first = await served.asterisk.decide("as-agi-3.1", "thames-george", "02079460123")
    second = await served.asterisk.decide("as-agi-3.2", "thames-george", "02079460124")
    assert first["CC_ACTION"] == "dial"
    # The pipeline counted one live slot and refused: max_calls_reached, in English.
    assert (second["CC_ACTION"], second["CC_SOUND"], second["CC_LANG"]) == (
        "reject",
        "callcontrol/max_calls_reached",
        "en",
    )
    served.clock.now += 5
    assert await served.asterisk.end("as-agi-3.1", "dial", "ANSWER", "3000") == []
    assert await slots(demo_engine) == 0


async def test_a_connection_that_stalls_or_ends_early_is_dropped(
    demo_engine: AsyncEngine,
) -> None:
    front = AgiFront(replace(CONFIG, agi_timeout=1.0), Pipeline(SqlDirectory(demo_engine)))
    ended: list[Outcome] = []
    front.on_outcome = ended.append
    await front.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(b"agi_network: yes\nagi_network_script: decide\n")  # never the blank line
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after agi_timeout
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(b"agi_network: yes\nagi_netw")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert await FakeAsterisk(front.port).request("nonsense", "x") == []
    finally:
        await front.stop()
    assert ended == []


async def test_with_the_database_gone_the_dialplan_refuses_with_service_unavailable(
    tmp_path: Path,
) -> None:
    gone = create_engine(f"sqlite:///{tmp_path / 'missing' / 'platform.db'}")
    front = AgiFront(CONFIG, Pipeline(SqlDirectory(gone)))
    await front.start("127.0.0.1", 0)
    try:
        variables = await FakeAsterisk(front.port).decide("as-agi-9.1", "acme-north-ana", "102")
    finally:
        await front.stop()
        await gone.dispose()
    assert variables == {
        "CC_ACTION": "reject",
        "CC_CAUSE": "34",
        "CC_SOUND": "callcontrol/service_unavailable",
        "CC_LANG": "en",
    }


async def test_a_decision_that_takes_too_long_is_refused_with_congestion(
    demo_engine: AsyncEngine,
) -> None:
    class Stalled(SqlDirectory):
        async def terminal(self, endpoint: str) -> TerminalView | None:
            await asyncio.sleep(5)
            return None

    front = AgiFront(replace(CONFIG, agi_timeout=1.0), Pipeline(Stalled(demo_engine)))
    ended: list[Outcome] = []
    front.on_outcome = ended.append
    await front.start("127.0.0.1", 0)
    try:
        asterisk = FakeAsterisk(front.port)
        variables = await asterisk.decide("as-agi-9.2", "acme-north-ana", "102")
        shed = list(front.shed)
        await asterisk.request("end", "as-agi-9.2", agi_arg_1="reject")
    finally:
        await front.stop()
    assert variables == {"CC_ACTION": "reject", "CC_CAUSE": "34", "CC_SOUND": "", "CC_LANG": "en"}
    assert (front.decided, shed) == ({}, ["as-agi-9.2"])
    # Counted once, when refused (as service_unavailable); its end writes nothing more.
    assert [(o.call_id, o.result, o.reason) for o in ended] == [
        ("as-agi-9.2", "refused, not decided in 1 s", "service_unavailable")
    ]
    assert list(front.shed) == []


@asynccontextmanager
async def acme_south(
    engine: AsyncEngine, tmp_path: Path, guards: type[Guards] = Guards, **values: object
) -> AsyncIterator[Front]:
    """acme-south (prepaid) with ``values``, behind a front whose prepaid calls last at most
    60 s: a Spanish mobile then holds 0.055 of the balance (0.02 + 0.035/min, 30/6)."""
    async with engine.begin() as connection:
        await connection.execute(update(Client).where(Client.name == "acme-south").values(**values))
    async with serving(engine, tmp_path, guards, prepaid_call_limit=60.0) as front:
        yield front


async def test_ten_prepaid_calls_at_once_spend_no_more_than_the_balance(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-south is prepaid; a Spanish mobile costs 0.02 + 0.035/min (30/6 increments), so
    # with calls of at most 60 s each holds 0.055 of the balance: 0.20 pays three.
    async with acme_south(demo_engine, tmp_path, balance=Decimal("0.20"), max_calls=0) as front:
        asterisk = front.asterisk
        answers = await asyncio.gather(
            *(asterisk.decide(f"pp-{n}", "acme-south-dario", "600123123") for n in range(10))
        )
        dialled = [n for n, a in enumerate(answers) if a["CC_ACTION"] == "dial"]
        refused = [a for a in answers if a["CC_ACTION"] == "reject"]
        assert len(dialled) == 3
        assert {answers[n]["CC_OPTIONS"] for n in dialled} == {"gS(60)"}
        assert {a["CC_SOUND"] for a in refused} == {"callcontrol/insufficient_balance"}
        assert len(refused) == 7
        # One call talks 30 s and ends: it pays 0.0375 and gives back the rest it held.
        front.clock.now += 35
        assert await asterisk.end(f"pp-{dialled[0]}", "dial", "ANSWER", "30000", "16") == []
        # 0.20 - 0.0375 paid - 2 × 0.055 held = 0.0525 left: 30 s and four increments of 6.
        again = await asterisk.decide("pp-again", "acme-south-dario", "600123123")
        assert (again["CC_ACTION"], again["CC_OPTIONS"]) == ("dial", "gS(54)")
    async with demo_engine.connect() as connection:
        balance = await connection.scalar(select(Client.balance).where(Client.name == "acme-south"))
    assert Decimal(balance) == Decimal("0.1625")


async def test_a_report_of_more_talk_than_the_cap_allows_is_billed_the_cap(
    demo_engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # acme-south is prepaid: its call is dialled with S(60) and holds 0.055 of the balance;
    # an end report of endless talk (forged, or broken) an hour later is billed the 60 s
    # the cap allowed.
    async with acme_south(demo_engine, tmp_path, balance=Decimal("1.00")) as front:
        answer = await front.asterisk.decide("cap-1", "acme-south-dario", "600123123")
        assert answer["CC_OPTIONS"] == "gS(60)"
        front.clock.now += 3600
        assert await front.asterisk.end("cap-1", "dial", "ANSWER", "3600000000", "16") == []
    async with demo_engine.connect() as connection:
        [cdr] = (await connection.execute(select(BillableCall))).mappings().all()
        balance = await connection.scalar(select(Client.balance).where(Client.name == "acme-south"))
    assert (cdr["duration"], cdr["billed_seconds"], Decimal(cdr["price"])) == (
        60,
        60,
        Decimal("0.0550"),
    )
    assert Decimal(balance) == Decimal("0.9450")
    assert clamps(caplog) == [
        "call cap-1: end report clamped: '3600000000' ms is more than the cap it was dialled"
        " with: 60.0 s"
    ]


def clamps(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "clamped" in r.getMessage()]


async def test_running_prepaid_calls_count_against_the_daily_limit(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-south (prepaid, plenty of balance) may spend 0.12 a day; each call to a Spanish
    # mobile holds 0.055 (60 s). Two running calls hold 0.11: the 0.01 left pays less than
    # the first 30 s (0.0375), so the third is refused, not dialled without a cap.
    async with acme_south(
        demo_engine, tmp_path, balance=Decimal("10"), max_calls=0, max_daily_usage=Decimal("0.12")
    ) as front:
        answers = [
            await front.asterisk.decide(f"day-{n}", "acme-south-dario", "600123123")
            for n in range(3)
        ]
    assert [a.get("CC_OPTIONS") for a in answers[:2]] == ["gS(60)", "gS(60)"]
    assert (answers[2]["CC_ACTION"], answers[2]["CC_SOUND"]) == (
        "reject",
        "callcontrol/daily_limit_reached",
    )


async def written(engine: AsyncEngine) -> list[tuple[str, int]]:
    """(call id, duration) of every CDR written."""
    async with engine.connect() as connection:
        rows = await connection.execute(select(BillableCall.call_id, BillableCall.duration))
    return sorted((call_id, duration) for call_id, duration in rows.all())


@pytest.mark.parametrize(
    ("reported", "seconds", "clamped"),
    [
        ("12000", 12, ""),  # believed
        ("3600000", 32, "'3600000' ms is more than the time since it was decided: 32.0 s"),
        ("1e300", 32, "'1e300' ms is more than the time since it was decided: 32.0 s"),
        ("inf", 32, "'inf' ms is more than the time since it was decided: 32.0 s"),
        ("nan", 0, "'nan' ms is not a duration: 0 s"),
        ("-5000", 0, "'-5000' ms is not a duration: 0 s"),
        ("12 s", 0, "'12 s' ms is not a number: 0 s"),
    ],
)
async def test_an_end_report_is_believed_up_to_the_time_since_the_decision(
    served: Front,
    demo_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
    reported: str,
    seconds: int,
    clamped: str,
) -> None:
    # thames-consulting is postpaid: no cap. Its call was decided 30 s ago, so it cannot
    # have talked for more (2 s of slack for the clocks): an hour, or endless talk, is
    # billed as 32 s; what is no duration at all, as none. One warning says so.
    assert (await served.asterisk.decide("t-1", "thames-george", "02079460123"))["CC_ACTION"] == (
        "dial"
    )
    served.clock.now += 30
    assert await served.asterisk.end("t-1", "dial", "ANSWER", reported, "16") == []
    assert await written(demo_engine) == [("t-1", seconds)]
    assert await slots(demo_engine) == 0
    [outcome] = served.outcomes
    assert (outcome.answered, round(outcome.seconds)) == (True, seconds)
    assert clamps(caplog) == ([f"call t-1: end report clamped: {clamped}"] if clamped else [])


class HeldStore(CdrStore):
    """A CDR store whose batches wait until the test lets them through."""

    def __init__(self, engine: AsyncEngine, spool: Path) -> None:
        super().__init__(engine, spool)
        self.gate = asyncio.Event()

    async def write_batch(self, cdrs: Sequence[Cdr], releases: Collection[str] = ()) -> bool:
        await self.gate.wait()
        return await super().write_batch(cdrs, releases)


async def test_an_end_report_is_let_go_before_its_cdr_is_written(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # Asterisk's channel waits in its h extension until the report's connection closes:
    # it is closed at once, while the call's end waits for its batch.
    keeper, clock = SlotKeeper(demo_engine, "as-agi", CONFIG), Clock()
    async with HeldStore(demo_engine, tmp_path / "spool") as cdrs:
        front = AgiFront(
            replace(CONFIG, server="as-agi"),
            Pipeline(SqlDirectory(demo_engine)),
            cdrs=cdrs,
            guards=Guards(demo_engine, "as-agi", 60.0, keeper),
            writer=EndWriter(cdrs, keeper, linger=0),
            clock=clock,
        )
        await front.start("127.0.0.1", 0)
        try:
            asterisk = FakeAsterisk(front.port)
            decided = await asterisk.decide("l-1", "thames-george", "02079460123")
            assert decided["CC_ACTION"] == "dial"
            clock.now += 10
            # Closed by the front while its batch is held: before, this waited for ever.
            report = asterisk.end("l-1", "dial", "ANSWER", "4000", "16", "")
            assert await asyncio.wait_for(report, 10) == []
            assert (await slots(demo_engine), await written(demo_engine)) == (1, [])
            cdrs.gate.set()
            await front.settled()
            assert (await slots(demo_engine), await written(demo_engine)) == (0, [("l-1", 4)])
        finally:
            cdrs.gate.set()
            await front.stop()


async def test_an_end_is_written_once_and_only_for_a_call_decided_here(
    served: Front, demo_engine: AsyncEngine
) -> None:
    # A call decided here and ended: its CDR. Reported again (replayed, forged): nothing.
    assert (await served.asterisk.decide("o-1", "thames-george", "02079460123"))["CC_ACTION"] == (
        "dial"
    )
    served.clock.now += 10
    assert await served.asterisk.end("o-1", "dial", "ANSWER", "5000", "16") == []
    assert await served.asterisk.end("o-1", "dial", "ANSWER", "9000", "16") == []
    # A call the ARI app carries holds a slot of this server: an end reported here for it
    # neither writes a CDR nor frees its slot.
    async with demo_engine.connect() as connection:
        thames = await connection.scalar(
            select(Client.id).where(Client.name == "thames-consulting")
        )
    taken = await acquire(
        demo_engine,
        client_id=int(thames),
        max_calls=0,
        call_id="ari-1",
        server="as-agi",
        direction="outbound",
        now=datetime.now(UTC),
        lease=60.0,
    )
    assert taken.taken
    assert await served.asterisk.end("ari-1", "dial", "ANSWER", "5000", "16") == []
    assert await written(demo_engine) == [("o-1", 5)]
    assert await slots(demo_engine) == 1
    assert [o.call_id for o in served.outcomes] == ["o-1"]


async def test_a_restarted_front_frees_the_slot_of_a_call_decided_before(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    async with serving(demo_engine, tmp_path / "first") as first:
        answer = await first.asterisk.decide("r-1", "thames-george", "02079460123")
        assert answer["CC_ACTION"] == "dial"
    # The call outlived the process that decided it; its end reaches the next one.
    async with serving(demo_engine, tmp_path / "second") as second:
        assert await second.asterisk.end("r-1", "dial", "ANSWER", "5000", "16") == []
        assert second.outcomes == []
    assert await slots(demo_engine) == 0
    assert await written(demo_engine) == []


SECRET = "s3cret-Of-the-front"


async def test_without_the_secret_a_request_is_refused_in_one_line_that_never_shows_it(
    demo_engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(demo_engine, tmp_path, fastagi_secret=SECRET) as front:
        honest, port = front.asterisk, front.front.port
        # Whoever reaches the port without the secret decides nothing: the call asking is
        # refused with congestion, and takes no slot.
        for stranger in (FakeAsterisk(port), FakeAsterisk(port, "s3cret-of-the-front")):
            refused = await stranger.decide("x-1", "thames-george", "02079460123")
            assert refused == CONGESTION
        assert await slots(demo_engine) == 0
        # With it, the call is decided; an end report without it writes nothing.
        assert (await honest.decide("s-1", "thames-george", "02079460123"))["CC_ACTION"] == "dial"
        front.clock.now += 10
        stranger = FakeAsterisk(port, "nope", front.front.settled)
        assert await stranger.end("s-1", "dial", "ANSWER", "5000", "16") == []
        assert await slots(demo_engine) == 1
        assert await honest.end("s-1", "dial", "ANSWER", "5000", "16") == []
        outcomes = [(o.call_id, o.result) for o in front.outcomes]
    assert outcomes == [("s-1", "answered, caller hung up")]
    assert await written(demo_engine) == [("s-1", 5)]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert [line.rsplit(": ", 1)[1] for line in refusals] == [
        "no secret",
        "wrong secret",
        "wrong secret",
    ]
    assert refusals[0] == "FastAGI: request for call 'x-1' from 127.0.0.1 refused: no secret"
    shown = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert not [line for line in shown if SECRET.lower() in line.lower()]


async def test_the_front_warns_when_it_listens_beyond_loopback_without_a_secret(
    demo_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    async def warned(host: str, secret: str) -> list[str]:
        caplog.clear()
        front = AgiFront(
            replace(CONFIG, fastagi_secret=secret), Pipeline(SqlDirectory(demo_engine))
        )
        await front.start(host, 0)
        await front.stop()
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    [warning] = await warned("0.0.0.0", "")
    assert warning.startswith("FastAGI listens beyond loopback (0.0.0.0) without fastagi_secret")
    assert await warned("0.0.0.0", SECRET) == []
    assert await warned("127.0.0.1", "") == []
    with pytest.raises(ConfigError, match="fastagi_secret may hold only"):
        AgiFront(replace(CONFIG, fastagi_secret="a,b"), Pipeline(SqlDirectory(demo_engine)))


class BrokenGuards(Guards):
    """Guards whose reservation of a prepaid call's cap fails with a fault of ours."""

    async def hold(self, client: ClientView, call_id: str, amount: Decimal) -> bool:
        raise RuntimeError("a fault in the guards")


async def test_a_fault_while_deciding_still_answers_the_call_and_frees_its_slot(
    demo_engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # acme-south's call takes its slot, then holding its cap fails.
    async with acme_south(demo_engine, tmp_path, BrokenGuards, balance=Decimal("1")) as front:
        answer = await front.asterisk.decide("f-1", "acme-south-dario", "600123123")
        assert await slots(demo_engine) == 0
        # Its end (the dialplan refused it) writes nothing more.
        assert await front.asterisk.end("f-1", "reject", "", "", "34") == []
    assert answer == CONGESTION
    assert [(o.call_id, o.result, o.reason) for o in front.outcomes] == [
        ("f-1", "refused, not decided", "service_unavailable")
    ]
    assert "call f-1: not decided: RuntimeError: a fault in the guards" in caplog.messages
    assert await written(demo_engine) == []


async def test_nul_bytes_and_broken_utf8_are_refused_before_the_database(
    served: Front, demo_engine: AsyncEngine
) -> None:
    asterisk = served.asterisk
    # A call id no Asterisk makes (PostgreSQL refuses a NUL in a slot's): congestion.
    assert await asterisk.decide("n-1\x00", "thames-george", "02079460123") == CONGESTION
    assert await asterisk.decide("n" * 65, "thames-george", "02079460123") == CONGESTION
    # A number, caller or argument with a NUL or bytes that are not UTF-8: invalid number.
    values = [
        {"agi_extension": "020\x0079460123"},
        {"agi_callerid": "thames\udcff"},
        {"agi_arg_2": "127.0.0.1\x00:5060"},
    ]
    for n, bad in enumerate(values):
        assert await asterisk.decide(f"n-{n + 2}", "thames-george", "02079460123", **bad) == (
            INVALID
        )
        assert await asterisk.end(f"n-{n + 2}", "reject", "", "", "28") == []
    assert await slots(demo_engine) == 0
    assert await written(demo_engine) == []
    assert [(o.call_id, o.reason) for o in served.outcomes] == [
        ("n-2", "invalid_number"),
        ("n-3", "invalid_number"),
        ("n-4", "invalid_number"),
    ]
    # The front still serves.
    assert (await asterisk.decide("n-5", "thames-george", "02079460123"))["CC_ACTION"] == "dial"


@pytest.mark.parametrize(
    "gone",
    [
        b"",
        b"HANGUP\n",
        b"511 Command Not Permitted on a dead channel\n",
        b"\xff\x00 junk\n",
        b"520-Invalid command syntax.\n\xff\xfe\n",
    ],
    ids=["closed", "hangup", "dead-channel", "garbage", "usage-garbage"],
)
async def test_a_caller_gone_while_being_told_ends_the_call_here_once(
    served: Front, demo_engine: AsyncEngine, caplog: pytest.LogCaptureFixture, gone: bytes
) -> None:
    # Asterisk hangs up (or answers nonsense) as CC is set: the dialplan will never report
    # this call's end, so the front ends it: outcome, CDR, slot.
    asterisk = served.asterisk
    call = asterisk.call("g-1", "thames-george", "02079460123")
    [command] = await asterisk.send(call, answer=gone)
    assert command.startswith("SET VARIABLE CC")

    async def ended() -> bool:
        return bool(served.outcomes) and await slots(demo_engine) == 0

    await until(ended)
    # If it reports all the same, nothing more is written.
    assert await asterisk.end("g-1", "dial", "CANCEL", "", "16") == []
    assert [(o.call_id, o.result, o.answered) for o in served.outcomes] == [
        ("g-1", "caller hung up before answer", False)
    ]
    assert await written(demo_engine) == [("g-1", 0)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_request_cut_short_still_ends_its_call(
    served: Front, demo_engine: AsyncEngine
) -> None:
    asterisk = served.asterisk

    async def cut(data: bytes) -> bytes:
        """Send ``data`` and leave: what the front answered."""
        reader, writer = await asyncio.open_connection("127.0.0.1", served.front.port)
        writer.write(data)
        writer.write_eof()
        answered = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        return answered

    # Asterisk leaves as soon as it has asked: the call is decided, cannot be told, ends.
    await cut(asterisk.call("c-1", "thames-george", "02079460123"))
    # A call whose end report is cut short (Asterisk gone mid-line) ends with what it said.
    assert (await asterisk.decide("c-2", "thames-george", "02079460123"))["CC_ACTION"] == "dial"
    report = asterisk.environment("end", "c-2", agi_arg_1="dial", agi_arg_2="ANSWER")
    assert await cut(report[:-4]) == b""  # "agi_arg_2: AN": a line cut short says nothing

    async def ended() -> bool:
        return len(served.outcomes) == 2 and await slots(demo_engine) == 0

    await until(ended)
    assert sorted((o.call_id, o.result) for o in served.outcomes) == [
        ("c-1", "caller hung up before answer"),
        ("c-2", "caller hung up before answer"),
    ]
    assert await written(demo_engine) == [("c-1", 0), ("c-2", 0)]
    assert served.front.decided == {}


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_the_rendered_dialplan_carries_the_secret_in_every_agi_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    assert cli("provision", str(DEMO_DATASET), "--database-url", url)[0] == 0
    render = ["asterisk", "render", "--database-url", url, "--fastagi", "127.0.0.1:4573"]
    code, _, err = cli(*render, str(tmp_path / "s"), env={"CALLCONTROL_FASTAGI_SECRET": SECRET})
    assert code == 0, err
    dialplan = (tmp_path / "s" / "extensions.conf").read_text()
    urls = re.findall(r"AGI\(([^,)]*)", dialplan)
    assert sorted(set(urls)) == [
        f"agi://127.0.0.1:4573/decide?secret={SECRET}",
        f"agi://127.0.0.1:4573/end?secret={SECRET}",
    ]
    assert len(urls) == 5  # decide and reject's end for each origin, a dialled call's end
    # Without one, the URLs are bare (and the render says what that means).
    code, out, err = cli(*render, str(tmp_path / "n"))
    assert code == 0, err
    assert "without a secret" in out
    assert "/decide,terminal," in (tmp_path / "n" / "extensions.conf").read_text()
    # A secret the URL cannot carry is refused, and not shown.
    code, _, err = cli(*render, str(tmp_path / "b"), env={"CALLCONTROL_FASTAGI_SECRET": "a b,c"})
    assert (code, err) == (1, "error: fastagi_secret may hold only letters, digits and - . _ ~\n")


async def test_the_service_warns_of_an_open_front_and_never_shows_its_secret(
    sim: Simulator, demo_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def running(**settings: Any) -> tuple[Service, asyncio.Task[None]]:
        config = replace(
            CONFIG,
            ari_url=sim.url,
            health_port=free_port(socket.SOCK_STREAM),
            fastagi_port=free_port(socket.SOCK_STREAM),
            **settings,
        )
        service = Service(config, SqlDirectory(demo_engine))
        task = asyncio.create_task(service.run())
        await until(lambda: service.links[0].state == "connected")
        return service, task

    async def stopped(service: Service, task: asyncio.Task[None]) -> None:
        service.request_stop()
        await asyncio.wait_for(task, 10)

    # Open to any address without a secret: run says so.
    service, task = await running(fastagi_host="0.0.0.0", shutdown_timeout=0.1)
    await stopped(service, task)
    open_ = [r.getMessage() for r in caplog.records if "beyond loopback" in r.getMessage()]
    assert len(open_) == 1
    # With a secret, nothing the service shows or logs has it: not /health, /metrics,
    # the console's calls, nor a line of its log at any level.
    caplog.clear()
    service, task = await running(fastagi_secret=SECRET, shutdown_timeout=0.1)
    try:
        port = service.config.fastagi_port
        await FakeAsterisk(port, "wrong").decide("w-1", "thames-george", "02079460123")
        answer = await FakeAsterisk(port, SECRET).decide("w-2", "thames-george", "02079460123")
        assert answer["CC_ACTION"] == "dial"
        base = f"http://127.0.0.1:{service.config.health_port}"
        async with aiohttp.ClientSession() as http:
            bodies = []
            for path in ("/health", "/metrics", "/calls"):
                async with http.get(base + path) as response:
                    bodies.append(await response.text())
        assert "w-2" in bodies[2]
    finally:
        await stopped(service, task)
    assert not [body for body in bodies if SECRET in body]
    shown = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert not [line for line in shown if SECRET in line]
    assert not [line for line in shown if "beyond loopback" in line]
    assert SECRET not in repr(service.config)


async def environment_read(*pieces: bytes, end: bool = True) -> tuple[dict[str, str], bool]:
    """What :func:`read_request` makes of ``pieces`` arriving one after another (then the
    peer's end, with ``end``), waiting 0.3 s for more."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    for n, piece in enumerate(pieces):
        loop.call_later(0.01 * n, reader.feed_data, piece)
    if end:
        loop.call_later(0.01 * len(pieces), reader.feed_eof)
    return await read_request(reader, 0.3)


async def test_the_environment_is_read_whole_however_it_arrives() -> None:
    whole = b"agi_network: yes\nagi_uniqueid: 1.2\nagi_extension: 100\n\n"
    expected = {"agi_network": "yes", "agi_uniqueid": "1.2", "agi_extension": "100"}
    # At once, line by line, cut mid-line and mid-blank-line: the same environment.
    assert await environment_read(whole, end=False) == (expected, True)
    lines = [line + b"\n" for line in whole.split(b"\n")[:-1]]
    assert await environment_read(*lines, end=False) == (expected, True)
    assert await environment_read(whole[:20], whole[20:-1], whole[-1:], end=False) == (
        expected,
        True,
    )
    # Cut short by the peer, or stalled: what came in whole lines, and not whole.
    assert await environment_read(whole[:-12]) == (
        {"agi_network": "yes", "agi_uniqueid": "1.2"},
        False,
    )
    assert await environment_read(whole[:-1], end=False) == (expected, False)
    # Garbage: more lines than an environment has, or a first blank line.
    flood = b"".join(b"agi_x%d: y\n" % n for n in range(HEADER_LIMIT + 1)) + b"\n"
    headers, complete = await environment_read(flood)
    assert (len(headers), complete) == (HEADER_LIMIT, False)
    assert await environment_read(b"\nagi_network: yes\n\n") == ({}, True)


def line_by_line(data: bytes, whole: bool) -> tuple[dict[str, str], bool]:
    """The environment's reading rule, one line at a time: the oracle for the parser."""
    headers: dict[str, str] = {}
    for number, line in enumerate(data.split(b"\n")[:-1]):
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not text:
            return headers, whole
        if number >= HEADER_LIMIT:
            return headers, False
        name, separator, value = text.partition(": ")
        if separator:
            headers[name] = value
    return headers, False


async def test_the_environment_is_read_as_line_by_line_reading_would_read_it() -> None:
    # Bytes Asterisk never sends among those it does: CRs, bare names, colons in values,
    # blank lines early and late, broken UTF-8, lines cut short, more lines than allowed.
    pieces = [
        b"agi_a: 1",
        b"agi_b: x: y",
        b"agi_c:",
        b"bare",
        b": empty",
        b"\r",
        b"",
        b"agi_d: v\r",
        b"agi_e: \xff\xfe",
        b"agi_f: \xc3\xa9",
        b"agi_a: 2",
        b"\r\r",
    ]
    chooser = random.Random(7)
    for _ in range(2000):
        lines = chooser.choices(pieces, k=chooser.randrange(0, HEADER_LIMIT + 3))
        data = b"\n".join(lines) + chooser.choice([b"\n", b"", b"\nagi_cut: sh"])
        for whole in (True, False):
            assert _environment(data, whole) == line_by_line(data, whole), (data, whole)
    # Exactly as many lines as allowed, then the blank one: whole.
    full = b"".join(b"agi_x%d: y\n" % n for n in range(HEADER_LIMIT)) + b"\n"
    assert await environment_read(full, end=False) == (line_by_line(full, True)[0], True)
