"""Emergency numbers (DESIGN §3.5): the case table on the in-memory world, the list as
provisioned and loaded into the snapshot, and a call through the service whose client every
guard would refuse."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.admission import admit
from callcontrol.config import Config
from callcontrol.guards import Guards
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from dialplan.decisions import Dial, Reject
from dialplan.errors import ProvisioningError
from dialplan.pipeline import Pipeline
from dialplan.rating import RateView, RatingPlanView, RatingProfileView
from dialplan.views import ExtensionView, TerminalView
from models.billing import BillableCall
from models.cdrs import Cdr
from models.db import create_engine
from models.directory import SqlDirectory
from models.provisioning import export_document, load_text
from models.snapshot import load
from models.tenants import Client
from tests.cases.emergency import CASES, EMERGENCY_NUMBERS, EmergencyCase
from tests.fakes import MemoryDirectory
from tests.simulator_helpers import fast_config
from tests.test_cdrs import a_cdr
from tests.test_service import bridged, until
from tests.test_service_guards import Server, slots
from tests.test_slots import closed_port
from tests.world import ALICE, BOB, MADRID, TRUNK_ES, from_terminal, world

pytest_plugins = ["tests.test_service"]

PLAN = RatingPlanView(
    1,
    "standard",
    "EUR",
    (
        RateView(id=1, prefix="34", price_per_minute=Decimal("0.02")),
        RateView(
            id=2,
            prefix="346",
            price_per_minute=Decimal("0.06"),
            connection_fee=Decimal("0.01"),
            increment_first=30,
            increment_next=6,
        ),
    ),
)
PROFILE = RatingProfileView(1, datetime(2026, 1, 1, tzinfo=UTC), PLAN)
TODAY = date(2026, 11, 25)  # NOON's day in Madrid


def case_world(case: EmergencyCase) -> MemoryDirectory:
    features = set(MADRID.features)
    if case.billing_method != "none":
        features.add("billing")
    client = replace(
        MADRID,
        features=frozenset(features),
        billing_method=case.billing_method,
        max_calls=case.max_calls,
        max_daily_usage=case.max_daily_usage,
        filter_by_ip=case.filter_by_ip,
    )
    bob = replace(BOB, call_acl_id=case.acl)
    directory = world(
        terminals=[TerminalView("t-bob", client, bob)],
        profiles={client.id: [PROFILE]} if case.rated else {},
        balances={client.id: case.balance},
        calls={client.id: case.live_calls},
        spending={(client.id, TODAY): case.spent_today},
        emergency=list(EMERGENCY_NUMBERS),
    )
    if case.extension_112:
        directory.extensions.append(ExtensionView("112", client, "user", user=ALICE))
    return directory


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_emergency_case(case: EmergencyCase) -> None:
    result = await Pipeline(case_world(case)).run(from_terminal("t-bob", case.dialled))
    decision = result.decision
    if case.expected is not None:
        assert isinstance(decision, Reject), result.trace
        assert decision.reason is case.expected
        return
    assert isinstance(decision, Dial), result.trace
    assert (decision.endpoint, decision.target, decision.number) == (
        TRUNK_ES.endpoint,
        "carrier",
        case.number,
    )
    assert (decision.billing is not None) == case.billed
    if case.number is not None and not case.number.startswith("+"):
        assert result.call.is_emergency
        assert decision.max_duration is None  # never capped by a balance or a day
        assert decision.caller_id == "+34910000002"  # bob's DDI, as any external call
        verdicts = {v.step: v.summary for v in result.trace}
        assert verdicts["emergency"].startswith(f"emergency number {case.dialled} of ES")


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


def test_each_guard_refuses_the_normal_number_and_lets_112_through() -> None:
    """The table holds, for each guard's reason, a normal call refused and 112 dialled."""
    by_condition: dict[str, dict[str, EmergencyCase]] = {}
    for case in CASES:
        condition, _, kind = case.name.rpartition(": ")
        if condition:
            by_condition.setdefault(condition, {})[kind] = case
    reasons = {pair["normal number"].expected for pair in by_condition.values()}
    assert {r.value for r in reasons if r is not None} == {
        "max_calls_reached",
        "daily_limit_reached",
        "cannot_be_billed",
        "insufficient_balance",
    }
    assert all(pair["112"].expected is None for pair in by_condition.values())


async def test_an_emergency_number_is_looked_up_in_the_callers_country_only() -> None:
    directory = world(emergency=list(EMERGENCY_NUMBERS))
    london = next(t for t in directory.terminals if t.name == "t-carol").client
    assert await directory.emergency_number(MADRID, "091")
    assert not await directory.emergency_number(MADRID, "999")
    assert await directory.emergency_number(london, "999")
    assert not await directory.emergency_number(london, "091")


async def test_a_carrier_call_to_a_ddi_is_never_read_as_an_emergency_number() -> None:
    directory = world(emergency=[("ES", "+34910000001")])
    from_carrier = replace(from_terminal("carrier-es", "+34910000001"), origin="carrier")
    result = await Pipeline(directory).run(from_carrier)
    assert isinstance(result.decision, Dial)
    assert result.decision.endpoint == "t-alice"
    assert not result.call.is_emergency


EMERGENCY_DOC = """
emergency_numbers:
  - {country: ES, number: "112", description: Emergencias}
  - {country: ES, number: "091"}
  - {country: US, number: "911"}
"""


async def test_emergency_numbers_are_provisioned_exported_and_loaded_into_the_snapshot(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, EMERGENCY_DOC)
    await load_text(engine, EMERGENCY_DOC)  # idempotent
    exported = await export_document(engine)
    assert exported["emergency_numbers"] == [
        {"country": "ES", "number": "091"},
        {"country": "ES", "number": "112", "description": "Emergencias"},
        {"country": "US", "number": "911"},
    ]
    snapshot = await load(engine)
    assert snapshot.emergency_number(MADRID, "112")
    assert snapshot.emergency_number(MADRID, "091")
    assert not snapshot.emergency_number(MADRID, "911")


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (
            'emergency_numbers: [{country: ES, number: "112"}, {country: ES, number: "112"}]',
            "emergency_numbers[1].number: duplicate emergency number (country, number)"
            " ('ES', '112'), already at emergency_numbers[0].number",
        ),
        ('emergency_numbers: [{country: ES, number: "+112"}]', "emergency_numbers[0].number"),
        ('emergency_numbers: [{country: XX, number: "112"}]', "emergency_numbers[0].country"),
    ],
)
async def test_a_bad_emergency_number_is_refused_naming_its_path(
    engine: AsyncEngine, document: str, error: str
) -> None:
    with pytest.raises(ProvisioningError) as refused:
        await load_text(engine, document)
    assert error in str(refused.value)


async def test_112_goes_out_through_the_service_past_every_guard_with_a_marked_cdr(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    # acme-south (prepaid, max 4 calls) at balance 0, a daily limit of 0 and one slot
    # that another server's call holds against a limit of 1: a mobile is refused; 112
    # is dialled through the carrier, takes a slot beyond the limit (counted, as every
    # live external call), and writes a CDR marked emergency, unpriced, debiting nothing.
    async with demo_engine.begin() as connection:
        await connection.execute(
            update(Client)
            .where(Client.name == "acme-south")
            .values(balance=Decimal(0), max_calls=1, max_daily_usage=Decimal(0))
        )
    async with Simulator(fast_config(tmp_path / "rec")) as sim, ControlClient(sim.url) as control:
        server = Server(sim, demo_engine, "as-1", tmp_path / "spool")
        try:
            await until(lambda: server.link.state == "connected", 10)
            client = await SqlDirectory(demo_engine).client(await _id(demo_engine, "acme-south"))
            assert client is not None
            held = await server.guards.take_slot(client, "elsewhere-1", "outbound")
            assert held.taken
            refused = str((await control.call("acme-south-dario", "600123123"))["id"])
            await until(lambda: refused in server.outcomes, within=5)
            emergency = str((await control.call("acme-south-dario", "112"))["id"])
            channel = await bridged(control, emergency)
            live_slots = await slots(demo_engine)
            await control.hang_up(emergency)
            await until(lambda: emergency in server.outcomes, within=5)
            await server.guards.release("elsewhere-1")
        finally:
            await server.stop()
    assert server.outcomes[refused].reason == "max_calls_reached"
    assert server.outcomes[emergency].answered
    assert live_slots == 2
    assert channel["bridge_id"]
    async with demo_engine.connect() as connection:
        rows = {
            row.call_id: row
            for row in await connection.execute(select(BillableCall).order_by(BillableCall.id))
        }
        balance = await connection.scalar(select(Client.balance).where(Client.name == "acme-south"))
    assert not rows[refused].emergency
    cdr = rows[emergency]
    assert bool(cdr.emergency)
    assert (cdr.callee, cdr.direction, cdr.price, cdr.rating_plan) == (
        "112",
        "outbound",
        None,
        None,
    )
    assert cdr.outcome_reason is None
    assert Decimal(balance) == 0


async def _id(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as connection:
        found = await connection.scalar(select(Client.id).where(Client.name == name))
    assert found is not None
    return int(found)


async def test_with_the_shared_database_down_112_is_dialled_and_a_mobile_is_not() -> None:
    # Nothing answers on the database's port: the slot cannot be taken. The emergency call
    # is dialled all the same (its slot released at the end, in case one was committed);
    # a normal call is refused as an outage is.
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing")
    guards = Guards(engine, "as-1", 60.0)
    try:
        admitted = {}
        for dialled in ("112", "600123123"):
            directory = world(emergency=list(EMERGENCY_NUMBERS))
            result = await Pipeline(directory).run(from_terminal("t-bob", dialled))
            assert isinstance(result.decision, Dial)
            admitted[dialled] = await admit(
                guards, Config(), result.call, result.decision, f"call-{dialled}"
            )
    finally:
        await engine.dispose()
    assert admitted["112"].decision.kind == "dial"
    assert admitted["112"].slot
    refused = admitted["600123123"].decision
    assert isinstance(refused, Reject)
    assert refused.reason.value == "service_unavailable"


def test_a_cdr_spooled_before_the_emergency_flag_existed_is_read_as_not_one() -> None:
    marked = a_cdr("c1", emergency=True, price=None, currency=None, rating_plan=None)
    assert Cdr.from_json(marked.to_json()) == marked
    older = json.loads(a_cdr("c2").to_json())
    del older["emergency"]
    assert Cdr.from_json(json.dumps(older)).emergency is False
    with pytest.raises(ValueError, match="CDR 'c3': emergency must be bool"):
        a_cdr("c3", emergency="yes")
