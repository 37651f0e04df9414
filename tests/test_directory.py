"""The pipeline over the shared database: the demo platform, decided on every backend.

Each scenario names a call of the demo dataset and what the spec says must happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import bindparam, column, event, func, select, table, true
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.call import CallRequest
from dialplan.decisions import Decision, Dial, Reject, RunService
from dialplan.errors import DatabaseUnavailable
from dialplan.pipeline import Pipeline
from dialplan.reasons import Reason
from dialplan.views import ClientView
from models.billing import ActiveCallSlot
from models.daily_usage import add
from models.db import create_engine, on_driver_statement, sqlite_row
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET, load_file, load_text
from models.slots import acquire

AT = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    title: str
    endpoint: str
    dialled: str
    expected: Decision
    route: str | None


SCENARIOS = (
    Scenario(
        "internal: ana rings bruno's terminal, showing her extension",
        "acme-north-ana",
        "102",
        Dial("acme-north-bruno", "terminal", "102", "101", "ana"),
        "internal",
    ),
    Scenario(
        "inter-VPBX within corporation acme: dario reaches ana at acme-north",
        "acme-south-dario",
        "101",
        Dial("acme-north-ana", "terminal", "101", "201", "dario"),
        "inter_vpbx",
    ),
    Scenario(
        "across corporations: thames cannot reach acme-south's 201",
        "thames-george",
        "201",
        Reject(Reason.INVALID_NUMBER, notify=True, language="en"),
        None,
    ),
    Scenario(
        "external: Spanish mobile through the brand route, client DDI presented",
        "acme-north-ana",
        "0034600123123",
        Dial("carrier-telco-es", "carrier", "+34600123123", "+34910000100"),
        "external",
    ),
    Scenario(
        "external, national US form normalised with hudson-dental's country",
        "hudson-front-desk",
        "2025550123",
        Dial("carrier-uk", "carrier", "+12025550123", "+12025550100"),
        "external",
    ),
    Scenario(
        "service code",
        "acme-north-ana",
        "*5",
        RunService("5"),
        "service",
    ),
    Scenario(
        "invalid number",
        "acme-north-ana",
        "12345",
        Reject(Reason.INVALID_NUMBER, notify=True, language="es"),
        None,
    ),
    Scenario(
        "ACL deny: bruno's no-premium list refuses 803…",
        "acme-north-bruno",
        "803123456",
        Reject(Reason.NOT_ALLOWED, notify=True, language="es"),
        "external",
    ),
    Scenario(
        "carla has no call ACL: a premium number is hers to call",
        "acme-north-carla",
        "+34905000000",
        # carla's own rule (sales-line) forces +34910000102; the client's is not looked at.
        Dial("carrier-telco-es", "carrier", "+34905000000", "+34910000102"),
        "external",
    ),
    Scenario(
        "an extension forwarding to a number is an external call",
        "acme-north-ana",
        "190",
        Dial(
            "carrier-telco-es",
            "carrier",
            "+34600000190",
            "+34910000100",
            diversion="+34910000100",
        ),
        "external",
    ),
    Scenario(
        "outgoing DDI: ana's 111* prefix forces +34910000102 and is stripped",
        "acme-north-ana",
        "111*600123123",
        Dial("carrier-telco-es", "carrier", "+34600123123", "+34910000102"),
        "external",
    ),
    Scenario(
        "outgoing DDI: a vip-customers destination forces +34910000101",
        "acme-north-ana",
        "910555124",
        Dial("carrier-telco-es", "carrier", "+34910555124", "+34910000101"),
        "external",
    ),
    Scenario(
        "inbound: a DDI routed to a user rings that user",
        "carrier-telco-es",
        "+34910000101",
        Dial("acme-north-bruno", "terminal", "102", None, None),
        "inbound",
    ),
    Scenario(
        "inbound: a DDI routed to an extension rings the extension's user",
        "carrier-telco-es",
        "34910000100",
        Dial("acme-north-ana", "terminal", "101", None, None),
        "inbound",
    ),
    Scenario(
        "inbound: a DDI nobody owns is no_client, spoken in the carrier brand's language",
        "carrier-telco-es",
        "+34919999999",
        Reject(Reason.NO_CLIENT, notify=True, language="es"),
        None,
    ),
    Scenario(
        "an endpoint that is neither terminal nor carrier is no_client",
        "intruder",
        "102",
        Reject(Reason.NO_CLIENT, notify=True, language="en"),
        None,
    ),
)


async def test_the_demo_platform_decides_every_scenario_as_specified(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    pipeline = Pipeline(SqlDirectory(engine))
    failures = []
    for scenario in SCENARIOS:
        request = CallRequest("t", scenario.endpoint, scenario.dialled, AT)
        result = await pipeline.run(request)
        route = result.call.route.kind if result.call.route else None
        decision = result.decision
        if isinstance(decision, Dial):  # rates and recordings are checked on their own below
            decision = replace(decision, billing=None, recording=None)
        if (decision, route) != (scenario.expected, scenario.route):
            failures.append(f"{scenario.title}: got {decision} via {route}")
    assert failures == []


async def test_an_external_call_carries_the_rate_the_shared_database_prices_it_at(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    pipeline = Pipeline(SqlDirectory(engine))
    weekday = await pipeline.run(CallRequest("t", "acme-north-ana", "600123123", AT))
    saturday = await pipeline.run(
        CallRequest("t", "acme-north-ana", "910555999", datetime(2026, 11, 28, 12, tzinfo=UTC))
    )
    assert isinstance(weekday.decision, Dial)
    billed = weekday.decision.billing
    assert billed is not None
    # Only the rates whose prefix starts the number are loaded: 34 (twice) and 346.
    assert sorted(rate.prefix for rate in billed.profile.plan.rates) == ["34", "34", "346"]
    assert (billed.profile.plan.name, billed.currency) == ("standard-eur", "EUR")
    assert (billed.rate.prefix, billed.rate.price_per_minute) == ("346", Decimal("0.035"))
    assert billed.rate.increments == "30/6"
    assert isinstance(saturday.decision, Dial)
    assert saturday.decision.billing is not None
    assert saturday.decision.billing.rate.destination == "Spain fixed, weekends"


async def test_recording_plans_come_from_the_service_code_the_ddi_and_the_dtmf_setting(
    engine: AsyncEngine,
) -> None:
    # acme-north: recordings on, on-demand "both" with code 5; bruno's DDI records inbound.
    await load_file(engine, DEMO_DATASET)
    pipeline = Pipeline(SqlDirectory(engine))

    async def plan(endpoint: str, dialled: str) -> tuple[bool, str | None, str]:
        result = await pipeline.run(CallRequest("t", endpoint, dialled, AT))
        assert isinstance(result.decision, Dial), result.decision
        recording = result.decision.recording
        assert recording is not None
        return recording.from_answer, recording.dtmf_code, result.decision.number

    assert await plan("acme-north-ana", "*5600123123") == (True, "5", "+34600123123")
    assert await plan("acme-north-ana", "*5102") == (True, "5", "102")
    assert await plan("acme-north-ana", "600123123") == (False, "5", "+34600123123")
    assert await plan("carrier-telco-es", "+34910000101") == (True, "5", "102")
    assert await plan("carrier-telco-es", "+34910000100") == (False, "5", "101")


async def test_a_client_without_voice_notifications_refuses_silently(engine: AsyncEngine) -> None:
    await load_file(engine, DEMO_DATASET)
    document = DEMO_DATASET.read_text(encoding="utf-8").replace(
        "recordings, voice_notifications]\n    billing_method: prepaid",
        "recordings]\n    billing_method: prepaid",
    )
    await load_text(engine, document)
    result = await Pipeline(SqlDirectory(engine)).run(
        CallRequest("t", "acme-south-dario", "12345", AT)
    )
    assert result.decision == Reject(Reason.INVALID_NUMBER, notify=False, language="es")


async def test_lookups_share_one_connection_per_call_and_work_without_one(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    directory = SqlDirectory(engine)
    outside = await directory.terminal("acme-north-ana")
    async with directory.scope():
        inside = await directory.terminal("acme-north-ana")
        bruno = await directory.terminal("acme-north-bruno")
        assert bruno is not None
        assert bruno.user is not None
        assert bruno.user.call_acl_id is not None
        acl = await directory.call_acl(bruno.user.call_acl_id)
    assert outside == inside
    assert outside is not None
    assert outside.client.features >= {"voice_notifications", "billing"}
    assert acl is not None
    assert acl.name == "no-premium"
    assert acl.rules[0].patterns[0].kind == "regexp"


async def test_a_clients_guard_counters_are_one_read_per_call_and_exact_outside_one(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    directory = SqlDirectory(engine)
    client = await directory.terminal("acme-south-dario")
    assert client is not None
    south = client.client
    await acquire(
        engine,
        client_id=south.id,
        max_calls=0,
        call_id="live-1",
        server="as-1",
        direction="outbound",
        now=AT,
        lease=60.0,
    )
    await add(engine, south.id, AT.date(), Decimal("1.5"), None)
    outside = (
        await directory.active_calls(south, AT),
        await directory.spent(south, AT.date()),
        await directory.balance(south),
    )
    statements: list[str] = []
    event.listen(
        engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    on_driver_statement(engine, lambda: statements.append("sent by the driver"))
    async with directory.scope():
        inside = (
            await directory.active_calls(south, AT),
            await directory.spent(south, AT.date()),
            await directory.balance(south),
        )
        assert len(statements) == 1  # the three in one read
        later = AT + timedelta(minutes=5)  # past the slot's lease: asked afresh
        other_day = AT.date() - timedelta(days=1)
        assert (
            await directory.active_calls(south, later),
            await directory.spent(south, other_day),
        ) == (0, Decimal(0))
    assert outside == inside == (1, Decimal("1.5"), Decimal(25))


async def test_on_sqlite_a_counters_read_the_file_cannot_answer_is_an_outage(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: SQLite says so
    try:
        client = ClientView(
            id=1,
            name="acme",
            brand_id=1,
            corporation_id=None,
            corporation=None,
            country="ES",
            language="en",
            timezone="UTC",
            currency="EUR",
            features=frozenset(),
        )
        directory = SqlDirectory(engine)
        async with directory.scope():
            with pytest.raises(DatabaseUnavailable, match="no such table"):
                await directory.active_calls(client, AT)
        # The same refusal through a parameter the driver is given converted (an instant).
        with pytest.raises(DatabaseUnavailable):
            live = select(ActiveCallSlot.id).where(ActiveCallSlot.lease_until > bindparam("now"))
            await sqlite_row(engine, live, {"now": AT})
    finally:
        await engine.dispose()


class Suspensions:
    """Awaits a coroutine and counts the times it waited (each wait a turn of the event
    loop, which a busy server spends on other calls)."""

    def __init__(self, coroutine: Coroutine[object, object, object]) -> None:
        self.coroutine = coroutine
        self.count = 0

    def __await__(self) -> Generator[object, object, object]:
        value: object = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    waited = self.coroutine.send(value)
                else:
                    waited = self.coroutine.throw(error)
            except StopIteration as stop:
                return stop.value
            self.count += 1
            try:
                value, error = (yield waited), None
            except BaseException as exc:  # a cancellation, passed on to the coroutine
                value, error = None, exc


async def test_on_sqlite_a_read_waits_once_and_a_connection_is_rolled_back_if_in_a_transaction(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'read.db'}", pool_size=1, max_overflow=0)
    rows = select(func.count()).select_from(table("t", column("n")))
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        read = Suspensions(sqlite_row(engine, rows, {}))
        assert await read == (0,)
        assert read.count == 1  # the statement; the connection's return costs no wait
        # A connection returned inside a transaction (a write not committed) is rolled back.
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute("INSERT INTO t VALUES (1)")
            assert driver.in_transaction
        assert await sqlite_row(engine, rows, {}) == (0,)  # the same connection (pool of 1)
    finally:
        await engine.dispose()


async def test_on_sqlite_a_read_cut_short_stops_at_once_and_the_engine_goes_on(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'slow.db'}", pool_size=1, max_overflow=0)
    numbers = table("t", column("n"))
    rows = select(func.count()).select_from(numbers)
    # Every pair of 30,000 rows: seconds of work for SQLite's thread.
    pairs = select(func.count()).select_from(numbers.alias("a").join(numbers.alias("b"), true()))
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
            await connection.exec_driver_sql(
                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 30000)"
                " INSERT INTO t SELECT i FROM r"
            )
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):  # a decision's deadline
                await sqlite_row(engine, pairs, {})
        # The statement was interrupted: nothing waited for it to end.
        assert time.monotonic() - started < 1.5
        assert await sqlite_row(engine, rows, {}) == (30000,)
    finally:
        await engine.dispose()
