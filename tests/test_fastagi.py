"""The FastAGI front: decisions as dialplan variables (plain data), and the server spoken to
over a real socket by a stand-in for Asterisk's AGI client, on the demo platform."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.fastagi import AgiFront, agi_variables, quoted
from callcontrol.guards import Guards
from callcontrol.handback import packed, unpack
from callcontrol.session import Outcome
from dialplan.decisions import Dial, Reject, RunService
from dialplan.pipeline import Pipeline
from dialplan.reasons import Reason
from dialplan.recording import RecordingPlan
from dialplan.views import TerminalView
from models.billing import ActiveCallSlot, BillableCall
from models.cdrs import CdrStore
from models.db import create_engine
from models.directory import SqlDirectory
from models.slots import SlotKeeper
from models.tenants import Client
from tests.test_service import CONFIG

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
    }
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


class FakeAsterisk:
    """Asterisk's side of one FastAGI request: the environment, then "200 result=1" to
    every command, recorded."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def request(self, script: str, call_id: str, **values: str) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        env = {
            "agi_network": "yes",
            "agi_network_script": script,
            "agi_request": f"agi://127.0.0.1:{self.port}/{script}",
            "agi_uniqueid": call_id,
            "agi_language": "en",
        } | values
        writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
        await writer.drain()
        commands = []
        while line := await asyncio.wait_for(reader.readline(), 5):
            commands.append(line.decode().rstrip("\n"))
            writer.write(b"200 result=1\n")
            await writer.drain()
        writer.close()
        return commands

    async def decide(self, call_id: str, endpoint: str, dialled: str) -> dict[str, str]:
        commands = await self.request(
            "decide",
            call_id,
            agi_channel=f"PJSIP/{endpoint}-00000001",
            agi_extension=dialled,
            agi_callerid=endpoint,
            agi_arg_1="terminal",
            agi_arg_2="127.0.0.1:5060",
        )
        # One command: SET VARIABLE CC "<the decision, packed>".
        [command] = commands
        name, _, value = command.removeprefix("SET VARIABLE ").partition(" ")
        assert name == "CC"
        return unpack(value.strip('"'))


class Front:
    def __init__(self, front: AgiFront) -> None:
        self.front = front
        self.outcomes: list[Outcome] = []
        front.on_outcome = self.outcomes.append
        self.asterisk = FakeAsterisk(front.port)


@pytest.fixture
async def served(demo_engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Front]:
    # The default agi_timeout: a first decision on a loaded machine may take a second.
    config = replace(CONFIG, server="as-agi")
    guards = Guards(demo_engine, "as-agi", 60.0, SlotKeeper(demo_engine, "as-agi", config))
    async with CdrStore(demo_engine, tmp_path / "spool") as cdrs:
        front = AgiFront(config, Pipeline(SqlDirectory(demo_engine)), cdrs=cdrs, guards=guards)
        await front.start("127.0.0.1", 0)
        yield Front(front)
        await front.stop()


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
    end = ["dial", "ANSWER", "65400", "16", ""]
    ended = {f"agi_arg_{n}": value for n, value in enumerate(end, start=1)} | {"agi_extension": "h"}
    assert await served.asterisk.request("end", "as-agi-1.1", **ended) == []
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
    end = {"agi_arg_1": "dial", "agi_arg_2": "ANSWER", "agi_arg_3": "3000", "agi_arg_4": "16"}
    assert await asterisk.request("end", "as-agi-2.1", **end) == []
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
    # A call ended that this process never decided releases its slot all the same.
    served.front.decided.clear()
    await served.asterisk.request(
        "end", "as-agi-3.1", agi_arg_1="dial", agi_arg_2="ANSWER", agi_arg_3="3000"
    )
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
    engine: AsyncEngine, tmp_path: Path, **values: object
) -> AsyncIterator[FakeAsterisk]:
    """acme-south (prepaid) with ``values``, behind a front whose prepaid calls last at most
    60 s: a Spanish mobile then holds 0.055 of the balance (0.02 + 0.035/min, 30/6)."""
    async with engine.begin() as connection:
        await connection.execute(update(Client).where(Client.name == "acme-south").values(**values))
    config = replace(CONFIG, server="as-agi", prepaid_call_limit=60.0)
    guards = Guards(engine, "as-agi", 60.0, SlotKeeper(engine, "as-agi", config))
    async with CdrStore(engine, tmp_path / "spool") as cdrs:
        front = AgiFront(config, Pipeline(SqlDirectory(engine)), cdrs=cdrs, guards=guards)
        await front.start("127.0.0.1", 0)
        try:
            yield FakeAsterisk(front.port)
        finally:
            await front.stop()


async def test_ten_prepaid_calls_at_once_spend_no_more_than_the_balance(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-south is prepaid; a Spanish mobile costs 0.02 + 0.035/min (30/6 increments), so
    # with calls of at most 60 s each holds 0.055 of the balance: 0.20 pays three.
    async with acme_south(demo_engine, tmp_path, balance=Decimal("0.20"), max_calls=0) as asterisk:
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
        end = {
            "agi_arg_1": "dial",
            "agi_arg_2": "ANSWER",
            "agi_arg_3": "30000",
            "agi_arg_4": "16",
        }
        assert await asterisk.request("end", f"pp-{dialled[0]}", **end) == []
        # 0.20 - 0.0375 paid - 2 × 0.055 held = 0.0525 left: 30 s and four increments of 6.
        again = await asterisk.decide("pp-again", "acme-south-dario", "600123123")
        assert (again["CC_ACTION"], again["CC_OPTIONS"]) == ("dial", "gS(54)")
    async with demo_engine.connect() as connection:
        balance = await connection.scalar(select(Client.balance).where(Client.name == "acme-south"))
    assert Decimal(balance) == Decimal("0.1625")


async def test_a_report_of_more_talk_than_the_cap_allows_is_billed_the_cap(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-south is prepaid: its call is dialled with S(60) and holds 0.055 of the balance;
    # an end report of endless talk (forged, or broken) is billed the 60 s the cap allowed.
    async with acme_south(demo_engine, tmp_path, balance=Decimal("1.00")) as asterisk:
        answer = await asterisk.decide("cap-1", "acme-south-dario", "600123123")
        assert answer["CC_OPTIONS"] == "gS(60)"
        forged = {"agi_arg_1": "dial", "agi_arg_2": "ANSWER", "agi_arg_3": "1e300"}
        assert await asterisk.request("end", "cap-1", **forged, agi_arg_4="16") == []
    async with demo_engine.connect() as connection:
        [cdr] = (await connection.execute(select(BillableCall))).mappings().all()
        balance = await connection.scalar(select(Client.balance).where(Client.name == "acme-south"))
    assert (cdr["duration"], cdr["billed_seconds"], Decimal(cdr["price"])) == (
        60,
        60,
        Decimal("0.0550"),
    )
    assert Decimal(balance) == Decimal("0.9450")


async def test_running_prepaid_calls_count_against_the_daily_limit(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-south (prepaid, plenty of balance) may spend 0.12 a day; each call to a Spanish
    # mobile holds 0.055 (60 s). Two running calls hold 0.11: the 0.01 left pays less than
    # the first 30 s (0.0375), so the third is refused, not dialled without a cap.
    async with acme_south(
        demo_engine, tmp_path, balance=Decimal("10"), max_calls=0, max_daily_usage=Decimal("0.12")
    ) as asterisk:
        answers = [
            await asterisk.decide(f"day-{n}", "acme-south-dario", "600123123") for n in range(3)
        ]
    assert [a.get("CC_OPTIONS") for a in answers[:2]] == ["gS(60)", "gS(60)"]
    assert (answers[2]["CC_ACTION"], answers[2]["CC_SOUND"]) == (
        "reject",
        "callcontrol/daily_limit_reached",
    )
