"""CDRs and balances written by the service at the end of external calls, against the
simulated Asterisk and a real database; and through an outage of that database.

The demo's acme-south is prepaid (balance 25 EUR, plan standard-eur: Spanish mobiles at
a 0.02 connection fee and 0.035/min in 30/6 increments); acme-north is postpaid.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.service import AsteriskLink
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from dialplan.pipeline import Pipeline
from models.billing import BillableCall
from models.cdrs import CdrStore
from models.db import create_engine
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET, load_file
from models.tenants import Client
from tests.tcp_proxy import TcpProxy
from tests.test_service import CONFIG, Running, bridged, until

pytest_plugins = ["tests.simulator_fixtures"]

SPAIN_MOBILE = "600123123"


class Line(Running):
    """A link to the simulator writing CDRs to ``store``, and the outcomes it logged."""

    def __init__(
        self,
        sim: Simulator,
        directory_engine: AsyncEngine,
        store: CdrStore,
        hand_back: bool = True,
    ) -> None:
        config = replace(CONFIG, server="as-test", hand_back=hand_back)
        super().__init__(
            AsteriskLink(sim.url, config, Pipeline(SqlDirectory(directory_engine)), cdrs=store)
        )


@pytest.fixture
async def demo(engine: AsyncEngine) -> AsyncEngine:
    await load_file(engine, DEMO_DATASET)
    return engine


async def cdrs(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(BillableCall).order_by(BillableCall.id))
        return [dict(row._mapping) for row in rows]


async def balance(engine: AsyncEngine, client: str) -> Decimal:
    async with engine.connect() as connection:
        value = await connection.scalar(select(Client.balance).where(Client.name == client))
    assert value is not None
    return Decimal(value)


async def answered_call(control: ControlClient, line: Line, terminal: str, seconds: float) -> str:
    await until(lambda: line.link.state == "connected")
    caller = str((await control.call(terminal, SPAIN_MOBILE))["id"])
    await bridged(control, caller)
    await asyncio.sleep(seconds)
    await control.hang_up(caller)
    return caller


async def test_a_prepaid_call_writes_one_priced_cdr_and_debits_the_balance_once(
    sim: Simulator, control: ControlClient, demo: AsyncEngine, tmp_path: Path
) -> None:
    before = await balance(demo, "acme-south")
    async with CdrStore(demo, tmp_path / "spool") as store:
        line = Line(sim, demo, store)
        try:
            caller = await answered_call(control, line, "acme-south-dario", 1.2)
            outcome = await line.outcome(caller)
        finally:
            await line.stop()
    [cdr] = await cdrs(demo)
    assert outcome.answered
    assert (cdr["call_id"], cdr["direction"], cdr["callee"]) == (caller, "outbound", "+34600123123")
    assert cdr["duration"] in (1, 2)
    # 30/6 increments: a call of one or two seconds bills the first 30 s.
    assert cdr["billed_seconds"] == 30
    assert Decimal(cdr["price"]) == Decimal("0.0375")  # 0.02 + 0.035 × 30/60
    assert (cdr["currency"], cdr["rating_plan"], cdr["matched_prefix"]) == (
        "EUR",
        "standard-eur",
        "346",
    )
    assert (cdr["hangup_cause"], cdr["outcome_reason"], cdr["server"]) == (
        "normal",
        None,
        "as-test",
    )
    assert cdr["answer_time"] is not None
    assert cdr["start_time"] <= cdr["answer_time"] <= cdr["end_time"]
    assert await balance(demo, "acme-south") == before - Decimal("0.0375")


async def test_refused_external_calls_write_their_reason_and_internal_calls_write_nothing(
    sim: Simulator, control: ControlClient, demo: AsyncEngine, tmp_path: Path
) -> None:
    async with CdrStore(demo, tmp_path / "spool") as store:
        line = Line(sim, demo, store)
        try:
            await until(lambda: line.link.state == "connected")
            refused = str((await control.call("acme-north-bruno", "803123456"))["id"])
            internal = str((await control.call("acme-north-ana", "102", hangup_after=0.3))["id"])
            await line.outcome(refused)
            await line.outcome(internal)
        finally:
            await line.stop()
    [cdr] = await cdrs(demo)
    assert cdr["call_id"] == refused
    assert (cdr["outcome_reason"], cdr["hangup_cause"], cdr["duration"]) == (
        "not_allowed",
        "rejected",
        0,
    )
    assert cdr["price"] is None  # refused before the billing step
    assert cdr["answer_time"] is None


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
async def test_a_cdr_whose_database_is_down_at_hang_up_is_written_once_when_it_is_back(
    sim: Simulator, control: ControlClient, demo: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    url = make_url(db_url)
    assert url.host is not None
    assert url.port is not None
    proxy = TcpProxy(url.host, url.port)
    await proxy.start()
    through_proxy = create_engine(url.set(port=proxy.port))
    before = await balance(demo, "acme-south")
    try:
        async with CdrStore(through_proxy, tmp_path / "spool", write_timeout=2.0) as store:
            line = Line(sim, demo, store)
            try:
                await until(lambda: line.link.state == "connected")
                caller = str((await control.call("acme-south-dario", SPAIN_MOBILE))["id"])
                await bridged(control, caller)
                await proxy.stop()  # the database goes away mid-call
                await control.hang_up(caller)
                outcome = await line.outcome(caller)
            finally:
                await line.stop()
            assert outcome.answered
            assert await cdrs(demo) == []  # not written, and not lost:
            assert any((tmp_path / "spool").glob("*.jsonl"))
            await proxy.start()
            report = await store.flush()
            again = await store.flush()
    finally:
        await through_proxy.dispose()
        await proxy.stop()
    assert (report.written, report.remaining, again.written) == (1, 0, 0)
    [cdr] = await cdrs(demo)
    assert cdr["call_id"] == caller
    assert await balance(demo, "acme-south") == before - Decimal(cdr["price"])


@pytest.mark.parametrize("hand_back", [True, False], ids=["handed-back", "bridged"])
async def test_a_prepaid_call_is_hung_up_when_the_balance_has_paid_all_it_can(
    sim: Simulator, control: ControlClient, demo: AsyncEngine, tmp_path: Path, hand_back: bool
) -> None:
    # standard-eur prices the US at 0.02/min in 1/1 increments: 0.001 EUR pays 3 seconds.
    async with demo.begin() as connection:
        await connection.execute(
            update(Client).where(Client.name == "acme-south").values(balance=Decimal("0.001"))
        )
    async with CdrStore(demo, tmp_path / "spool") as store:
        line = Line(sim, demo, store, hand_back)
        try:
            await until(lambda: line.link.state == "connected")
            caller = str((await control.call("acme-south-dario", "+12025550123"))["id"])
            outcome = await line.outcome(caller, within=10)
        finally:
            await line.stop()
    assert (outcome.result, outcome.answered) == ("answered, balance ran out", True)
    assert 2.9 <= outcome.seconds <= 3.5
    assert (await control.wait_gone(caller, within=3))["gone"]
    [cdr] = await cdrs(demo)
    assert (cdr["duration"], cdr["billed_seconds"], Decimal(cdr["price"])) == (
        3,
        3,
        Decimal("0.0010"),
    )
    assert await balance(demo, "acme-south") == Decimal(0)
