"""Concurrent-call slots (DESIGN §3.4) on SQLite, PostgreSQL and MariaDB: a limit held
across application servers sharing one database, released at hang-up, reclaimed from a
dead server by lease and from a restarted one by reconcile, and exact under a race of
fifty calls offered through two servers at once."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from callcontrol.config import Config
from dialplan.errors import DatabaseUnavailable, NotFound
from models import slots
from models.billing import ActiveCallSlot
from models.daily_usage import add
from models.db import create_engine, driver_row
from models.slots import SlotKeeper, SlotVerdict
from models.tenants import Brand, Client, Currency
from tests.tcp_proxy import TcpProxy

AT = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
LEASE = 60.0
ACME, GLOBEX = 1, 2


@pytest.fixture
async def engine(engine: AsyncEngine) -> AsyncEngine:
    """The test database with two clients of one brand: acme (1) and globex (2)."""
    async with engine.begin() as connection:
        await connection.execute(insert(Currency), [{"code": "EUR", "name": "Euro"}])
        await connection.execute(insert(Brand), [{"id": 1, "name": "iberia-voice"}])
        await connection.execute(
            insert(Client),
            [
                {
                    "id": client_id,
                    "brand_id": 1,
                    "name": name,
                    "sip_domain": f"{name}.example.net",
                    "language": "en",
                    "timezone": "UTC",
                    "currency": "EUR",
                    "country": "ES",
                }
                for client_id, name in ((ACME, "acme"), (GLOBEX, "globex"))
            ],
        )
    return engine


async def take(
    engine: AsyncEngine,
    call_id: str,
    *,
    max_calls: int = 2,
    client_id: int = ACME,
    server: str = "as-1",
    at: datetime = AT,
    lease: float = LEASE,
    reserve: Decimal = Decimal(0),
) -> SlotVerdict:
    return await slots.acquire(
        engine,
        client_id=client_id,
        max_calls=max_calls,
        call_id=call_id,
        server=server,
        direction="outbound",
        now=at,
        lease=lease,
        reserve=reserve,
    )


async def held_slots(engine: AsyncEngine) -> list[tuple[str, str]]:
    """Every slot row as (call id, server), by call id."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(ActiveCallSlot.call_id, ActiveCallSlot.server).order_by(ActiveCallSlot.call_id)
        )
        return [(call_id, server) for call_id, server in rows]


async def slot_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(ActiveCallSlot)) or 0)


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


# Basics, once per backend.


async def test_a_limit_of_two_admits_two_calls_and_refuses_the_third(engine: AsyncEngine) -> None:
    assert await take(engine, "c1") == SlotVerdict(taken=True, held=1, limit=2)
    assert await take(engine, "c2", server="as-2") == SlotVerdict(taken=True, held=2, limit=2)
    assert await take(engine, "c3") == SlotVerdict(taken=False, held=2, limit=2)
    assert await held_slots(engine) == [("c1", "as-1"), ("c2", "as-2")]
    assert await slots.count(engine, ACME, AT) == 2


async def test_a_hung_up_call_frees_its_slot_for_the_next_one(engine: AsyncEngine) -> None:
    await take(engine, "c1")
    await take(engine, "c2")
    assert await slots.release(engine, "c1") is True
    assert await slots.release(engine, "c1") is False  # released once only
    assert await slots.release(engine, "never-taken") is False
    assert await take(engine, "c3") == SlotVerdict(taken=True, held=2, limit=2)
    assert await take(engine, "c4") == SlotVerdict(taken=False, held=2, limit=2)


async def test_clients_are_counted_apart(engine: AsyncEngine) -> None:
    await take(engine, "acme-1", max_calls=1)
    assert (await take(engine, "acme-2", max_calls=1)).taken is False
    assert await take(engine, "globex-1", max_calls=1, client_id=GLOBEX) == SlotVerdict(True, 1, 1)
    assert await slots.count(engine, GLOBEX, AT) == 1


async def test_an_unlimited_client_takes_every_call_and_each_one_is_counted(
    engine: AsyncEngine,
) -> None:
    verdicts = [await take(engine, f"c{n}", max_calls=0) for n in range(1, 6)]
    assert verdicts == [SlotVerdict(True, n, 0) for n in range(1, 6)]
    assert await slots.count(engine, ACME, AT) == 5
    # A limit set while those calls are up holds from the next call on.
    assert await take(engine, "c6", max_calls=5) == SlotVerdict(False, 5, 5)


async def test_acquiring_again_for_a_call_keeps_its_one_slot(engine: AsyncEngine) -> None:
    assert await take(engine, "c1", max_calls=1) == SlotVerdict(True, 1, 1)
    assert await take(engine, "c1", max_calls=1) == SlotVerdict(True, 1, 1)  # not refused
    assert await take(engine, "c1", max_calls=0) == SlotVerdict(True, 1, 0)
    assert await held_slots(engine) == [("c1", "as-1")]


async def test_one_call_acquired_ten_times_at_once_holds_one_slot(engine: AsyncEngine) -> None:
    for limit in (0, 3):  # unlimited takes no lock: the unique call id decides
        call_id = f"twice-{limit}"
        async with asyncio.timeout(20):
            verdicts = await asyncio.gather(
                *(take(engine, call_id, max_calls=limit) for _ in range(10))
            )
        assert verdicts == [SlotVerdict(True, 1, limit)] * 10
        assert await held_slots(engine) == [(call_id, "as-1")]
        assert await slots.release(engine, call_id) is True


async def test_an_expired_slot_of_a_dead_server_is_reclaimed_by_the_next_acquire(
    engine: AsyncEngine,
) -> None:
    await take(engine, "dead-1", max_calls=1, server="as-2", at=AT)
    just_before = AT + timedelta(seconds=LEASE - 1)
    assert await take(engine, "c1", max_calls=1, at=just_before) == SlotVerdict(False, 1, 1)
    assert await slots.count(engine, ACME, AT + timedelta(seconds=LEASE)) == 0
    after = AT + timedelta(seconds=LEASE + 1)
    assert await take(engine, "c1", max_calls=1, at=after) == SlotVerdict(True, 1, 1)
    assert await held_slots(engine) == [("c1", "as-1")]  # the dead server's row is gone
    assert await slots.release(engine, "dead-1") is False


async def test_a_call_whose_own_slot_expired_takes_a_fresh_one(engine: AsyncEngine) -> None:
    assert await take(engine, "c1", max_calls=1, at=AT) == SlotVerdict(True, 1, 1)
    after = AT + timedelta(seconds=LEASE + 1)
    assert await take(engine, "c1", max_calls=1, at=after) == SlotVerdict(True, 1, 1)
    # A new lease from ``after``: still live where the first one would have run out.
    assert await slots.count(engine, ACME, after + timedelta(seconds=LEASE - 1)) == 1
    assert await take(engine, "c2", max_calls=1, at=after) == SlotVerdict(False, 1, 1)


async def test_the_heartbeat_keeps_this_servers_slots_alive_while_an_unrenewed_one_expires(
    engine: AsyncEngine,
) -> None:
    await take(engine, "mine-1", max_calls=3, server="as-1")
    await take(engine, "mine-2", max_calls=3, server="as-1")
    await take(engine, "theirs", max_calls=3, server="as-2")
    assert await slots.heartbeat(engine, "as-1", AT + timedelta(seconds=50), LEASE) == 2
    later = AT + timedelta(seconds=LEASE + 10)
    assert await slots.count(engine, ACME, later) == 2
    assert await take(engine, "next", max_calls=3, at=later) == SlotVerdict(True, 3, 3)
    assert await held_slots(engine) == [("mine-1", "as-1"), ("mine-2", "as-1"), ("next", "as-1")]
    assert await slots.heartbeat(engine, "as-9", later, LEASE) == 0


async def test_reconcile_removes_the_gone_calls_of_this_server_only(engine: AsyncEngine) -> None:
    for call_id in ("up-1", "gone-1", "gone-2"):
        await take(engine, call_id, max_calls=0, server="as-1")
    await take(engine, "elsewhere", max_calls=0, server="as-2")
    listed_at = AT + timedelta(seconds=5)
    # A call that took its slot after Asterisk's channels were listed is kept.
    await take(engine, "newer", max_calls=0, server="as-1", at=listed_at)
    assert await slots.reconcile(engine, "as-1", {"up-1", "not-a-slot"}, listed_at) == 2
    assert await held_slots(engine) == [
        ("elsewhere", "as-2"),
        ("newer", "as-1"),
        ("up-1", "as-1"),
    ]
    assert await slots.reconcile(engine, "as-1", [], AT) == 0  # nothing acquired before AT


async def test_reconcile_of_a_server_with_many_gone_calls_removes_them_all(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(ActiveCallSlot),
            [
                {
                    "client_id": ACME,
                    "call_id": f"call-{n:04d}",
                    "server": "as-1",
                    "direction": "inbound",
                    "acquired_at": AT,
                    "lease_until": AT + timedelta(seconds=LEASE),
                }
                for n in range(1200)
            ],
        )
    live = {f"call-{n:04d}" for n in range(0, 1200, 100)}
    assert await slots.reconcile(engine, "as-1", live, AT + timedelta(seconds=1)) == 1188
    assert [call_id for call_id, _ in await held_slots(engine)] == sorted(live)


async def test_an_unknown_client_is_not_found(engine: AsyncEngine) -> None:
    for limit in (0, 2):
        with pytest.raises(NotFound, match="#99"):
            await take(engine, f"c{limit}", max_calls=limit, client_id=99)
    assert await slots.count(engine, 99, AT) == 0
    assert await held_slots(engine) == []


async def test_nonsense_arguments_are_refused_before_the_database(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="max_calls"):
        await take(engine, "c1", max_calls=-1)
    with pytest.raises(ValueError, match="lease"):
        await take(engine, "c1", lease=0)
    with pytest.raises(ValueError, match="direction"):
        await slots.acquire(
            engine,
            client_id=ACME,
            max_calls=1,
            call_id="c1",
            server="as-1",
            direction="sideways",
            now=AT,
            lease=LEASE,
        )
    assert await held_slots(engine) == []


# Outages: every operation says the database is unavailable; the keeper rides them out.


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:{port}/test",
        "mariadb://root@127.0.0.1:{port}/test",
        "sqlite:///{folder}/missing/callcontrol.db",
    ],
    ids=["postgresql", "mariadb", "sqlite"],
)
async def test_an_unreachable_database_is_unavailable_to_every_operation(
    url: str, tmp_path: Path
) -> None:
    unreachable = create_engine(url.format(port=closed_port(), folder=tmp_path))
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: take(unreachable, "c1"),
        lambda: take(unreachable, "c1", max_calls=0),
        lambda: slots.release(unreachable, "c1"),
        lambda: slots.heartbeat(unreachable, "as-1", AT, LEASE),
        lambda: slots.reconcile(unreachable, "as-1", [], AT),
        lambda: slots.count(unreachable, ACME, AT),
    ]
    try:
        for operation in operations:
            with pytest.raises(DatabaseUnavailable, match="is unavailable"):
                async with asyncio.timeout(10):
                    await operation()
    finally:
        await unreachable.dispose()


class Outage:
    """An engine on the test database that a test cuts off and reconnects: through a TCP
    proxy for a server, by moving SQLite's folder away."""

    def __init__(self, db_url: str, folder: Path) -> None:
        self.url = make_url(db_url)
        self.folder = folder
        self.proxy: TcpProxy | None = None
        self.engine: AsyncEngine

    async def open(self, engine: AsyncEngine) -> None:
        if self.url.get_backend_name() == "sqlite":
            assert self.url.database is not None
            await engine.dispose()  # its write-ahead log goes into the file
            self.folder.mkdir()
            path = self.folder / "callcontrol.db"
            os.replace(self.url.database, path)
            # Unpooled: an open SQLite connection would go on using a moved file.
            self.engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
        else:
            assert self.url.host is not None
            assert self.url.port is not None
            self.proxy = TcpProxy(self.url.host, self.url.port)
            await self.proxy.start()
            self.engine = create_engine(self.url.set(port=self.proxy.port))

    async def cut(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        else:
            self.folder.rename(self.folder.with_name("away"))

    async def mend(self) -> None:
        if self.proxy is not None:
            await self.proxy.start()
        else:
            self.folder.with_name("away").rename(self.folder)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.proxy is not None:
            await self.proxy.stop()


@pytest.fixture
async def outage(db_url: str, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Outage]:
    outage = Outage(db_url, tmp_path / "database")
    await outage.open(engine)
    yield outage
    await outage.close()


async def test_a_release_during_an_outage_happens_at_a_later_beat(outage: Outage) -> None:
    engine = outage.engine
    keeper = SlotKeeper(engine, "as-1", Config(slot_lease=30.0, slot_heartbeat=0.5))
    await take(engine, "hung-up", max_calls=0)
    await take(engine, "still-up", max_calls=0)
    keeper.start()
    try:
        await outage.cut()
        async with asyncio.timeout(10):
            assert await keeper.release("hung-up") is False
        assert keeper.unreleased == {"hung-up"}
        await asyncio.sleep(1.0)  # beats fail meanwhile; the keeper goes on
        await outage.mend()

        async def released() -> bool:
            # The beat that releases it forgets it just after: both, on a slow machine.
            return not keeper.unreleased and await held_slots(engine) == [("still-up", "as-1")]

        await until(released, within=10)
        assert await keeper.release("still-up") is True
    finally:
        await keeper.stop()


# The keeper on a real clock.


async def test_the_keeper_renews_this_servers_slots_until_it_stops(engine: AsyncEngine) -> None:
    lease = 2.0  # four beats, so a few slow ones on a loaded machine cannot lose it
    keeper = SlotKeeper(engine, "as-1", Config(slot_lease=lease, slot_heartbeat=0.5))

    def now() -> datetime:
        return datetime.now(UTC)

    await take(engine, "theirs", max_calls=0, server="as-2", at=now(), lease=lease)
    await take(engine, "mine", max_calls=0, server="as-1", at=now(), lease=lease)
    keeper.start()
    try:

        async def theirs_expired() -> bool:
            return await slots.count(engine, ACME, now()) == 1

        await until(theirs_expired)
        await asyncio.sleep(lease)  # a whole lease on: mine is still renewed
        assert await slots.count(engine, ACME, now()) == 1
        verdict = await take(engine, "next", max_calls=2, server="as-1", at=now(), lease=lease)
        assert verdict == SlotVerdict(True, 2, 2)  # "theirs" reclaimed, "mine" kept
    finally:
        await keeper.stop()

    async def all_expired() -> bool:
        return await slots.count(engine, ACME, now()) == 0

    await until(all_expired)


async def test_a_keeper_whose_heartbeat_outlasts_its_lease_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    with pytest.raises(ValueError, match="shorter than slot_lease"):
        SlotKeeper(engine, "as-1", Config(slot_lease=10.0, slot_heartbeat=10.0))
    await engine.dispose()


# The race: fifty calls offered at once through two servers, each with its own pool.

RACE_CALLS = 50
RACE_LIMIT = 10
RACE_ROUNDS = 5
POOL = 25


async def warm(engine: AsyncEngine, size: int) -> None:
    """Open ``size`` pooled connections, so the race is not a race to connect."""
    everyone = asyncio.Barrier(size)

    async def hold() -> None:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
            await everyone.wait()

    async with asyncio.timeout(20):
        await asyncio.gather(*(hold() for _ in range(size)))


@pytest.mark.parametrize(
    ("db_url", "isolation"),
    [
        ("sqlite", None),
        ("postgresql", None),  # READ COMMITTED
        ("postgresql", "REPEATABLE READ"),
        ("mariadb", None),  # REPEATABLE READ
        ("mariadb", "READ COMMITTED"),
    ],
    indirect=["db_url"],
    ids=["sqlite", "postgresql", "postgresql-rr", "mariadb", "mariadb-rc"],
)
async def test_fifty_calls_at_once_through_two_servers_admit_exactly_ten(
    db_url: str, isolation: str | None, engine: AsyncEngine
) -> None:
    options = {} if isolation is None else {"isolation_level": isolation}
    servers = {
        name: create_engine(db_url, pool_size=POOL, max_overflow=0, **options)
        for name in ("as-1", "as-2")
    }
    try:
        await asyncio.gather(*(warm(server, POOL) for server in servers.values()))
        for round_ in range(RACE_ROUNDS):
            calls = [
                (f"r{round_}-c{n:02d}", "as-1" if n % 2 else "as-2") for n in range(RACE_CALLS)
            ]
            go = asyncio.Event()

            async def offer(call_id: str, server: str, go: asyncio.Event) -> SlotVerdict:
                await go.wait()
                return await take(servers[server], call_id, max_calls=RACE_LIMIT, server=server)

            offered = [asyncio.create_task(offer(*call, go)) for call in calls]
            await asyncio.sleep(0)  # every call is waiting for the start
            started = time.perf_counter()
            go.set()
            async with asyncio.timeout(30):
                verdicts = await asyncio.gather(*offered)
            elapsed = time.perf_counter() - started

            taken = [verdict for verdict in verdicts if verdict.taken]
            refused = [verdict for verdict in verdicts if not verdict.taken]
            assert len(taken) == RACE_LIMIT, f"round {round_}"
            assert len(refused) == RACE_CALLS - RACE_LIMIT
            # Each admitted call counted the ones before it: they were serialised.
            assert sorted(verdict.held for verdict in taken) == list(range(1, RACE_LIMIT + 1))
            assert {verdict.held for verdict in refused} == {RACE_LIMIT}
            assert await slot_rows(engine) == RACE_LIMIT
            assert {server for _, server in await held_slots(engine)} <= {"as-1", "as-2"}

            async with asyncio.timeout(30):
                released = await asyncio.gather(
                    *(slots.release(servers[server], call_id) for call_id, server in calls)
                )
            assert released.count(True) == RACE_LIMIT
            assert await slot_rows(engine) == 0
            print(f"round {round_}: {RACE_CALLS} acquires in {elapsed * 1000:.0f} ms")
    finally:
        for server in servers.values():
            await server.dispose()


async def test_ten_prepaid_calls_at_once_on_a_balance_that_pays_three_admit_three(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.id == ACME).values(balance=Decimal("3.5000"))
        )
    servers = [create_engine(str(engine.url.render_as_string(False))) for _ in range(2)]
    try:
        go = asyncio.Event()

        async def offer(n: int) -> SlotVerdict:
            await go.wait()
            server = servers[n % 2]
            return await take(server, f"p{n}", max_calls=0, server=f"as-{n % 2}", reserve=ONE)

        offered = [asyncio.create_task(offer(n)) for n in range(10)]
        await asyncio.sleep(0)
        go.set()
        async with asyncio.timeout(30):
            verdicts = await asyncio.gather(*offered)
        assert [v.taken for v in verdicts].count(True) == 3
        assert {(v.taken, v.funded) for v in verdicts} == {(True, True), (False, False)}
        # The balance left (0.5) pays no more; a call that ends gives its share back.
        assert not (await take(engine, "late", max_calls=0, reserve=ONE)).funded
        held = [call_id for call_id, _ in await held_slots(engine)]
        assert await slots.release(engine, held[0])
        assert (await take(engine, "late", max_calls=0, reserve=ONE)).taken
        # Another client's balance is its own; a call without a reservation is not held to it.
        assert (await take(engine, "free", max_calls=0)).taken
        assert not (await take(engine, "g1", client_id=GLOBEX, max_calls=0, reserve=ONE)).funded
    finally:
        for server in servers:
            await server.dispose()


ONE = Decimal("1.0000")


async def test_an_admission_reads_the_day_and_the_balance_less_what_live_calls_hold(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.id == ACME).values(balance=Decimal("10.0000"))
        )
    await add(engine, ACME, AT.date(), Decimal("1.5"), None)
    assert (await take(engine, "prepaid", max_calls=0, reserve=Decimal(2))).taken
    await take(engine, "expired", max_calls=0, at=AT - timedelta(seconds=2 * LEASE))

    async def admit(call_id: str, max_calls: int, client_id: int = ACME) -> SlotVerdict:
        return await slots.acquire(
            engine,
            client_id=client_id,
            max_calls=max_calls,
            call_id=call_id,
            server="as-1",
            direction="outbound",
            now=AT,
            lease=LEASE,
            day=AT.date(),
        )

    first = await admit("next", 2)
    # The expired slot is reclaimed, the prepaid call's reservation counts as spent today
    # and is not the balance's any more.
    assert (first.taken, first.held) == (True, 2)
    assert (first.spent, first.balance) == (Decimal("3.5"), Decimal(8))
    again = await admit("next", 2)  # the call holds its slot: nothing changes
    assert (again.taken, again.held, again.spent, again.balance) == (True, 2, first.spent, 8)
    full = await admit("third", 2)
    assert (full.taken, full.held, full.spent, full.balance) == (False, 2, first.spent, 8)
    assert sorted(call_id for call_id, _ in await held_slots(engine)) == ["next", "prepaid"]
    other = await admit("g", 0, client_id=GLOBEX)  # another client: its own counters
    assert (other.taken, other.held, other.spent) == (True, 1, Decimal(0))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_pooled_connection_the_server_dropped_is_replaced_and_the_call_admitted(
    engine: AsyncEngine,
) -> None:
    # PostgreSQL admits a call in one statement sent on the driver itself (models.db.
    # driver_row): a connection the server closed while it sat in the pool is tried, found
    # gone, dropped, and the statement sent again on a new one.
    assert (await take(engine, "c1")).taken
    before = await driver_row(engine, "SELECT pg_backend_pid()")
    other = create_engine(engine.url)
    try:
        async with other.connect() as connection:
            await connection.execute(select(func.pg_terminate_backend(before[0])))
    finally:
        await other.dispose()
    assert (await take(engine, "c2")).taken
    after = await driver_row(engine, "SELECT pg_backend_pid()")
    assert after[0] != before[0]
    assert await held_slots(engine) == [("c1", "as-1"), ("c2", "as-1")]
    # An error the server answers (no such client) leaves the connection in the pool.
    with pytest.raises(NotFound):
        await take(engine, "c3", client_id=99)
    assert (await driver_row(engine, "SELECT pg_backend_pid()"))[0] == after[0]
    with pytest.raises(Exception, match="division by zero"):
        await driver_row(engine, "SELECT 1 / $1::integer", 0)
    assert (await driver_row(engine, "SELECT pg_backend_pid()"))[0] == after[0]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_the_keeper_vacuums_the_slots_table_on_postgresql(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each call inserts a slot and deletes it: the keeper vacuums the dead rows away.
    monkeypatch.setattr(slots, "VACUUM_EVERY", 0.05)
    for n in range(50):
        await take(engine, f"c{n}", max_calls=0)
        await slots.release(engine, f"c{n}")

    async def vacuumed() -> int:
        async with engine.connect() as connection:
            await connection.execute(select(func.pg_stat_clear_snapshot()))
            count = await connection.scalar(
                select(func.pg_stat_get_vacuum_count(func.to_regclass("active_call_slots")))
            )
        return int(count or 0)

    before = await vacuumed()
    keeper = SlotKeeper(engine, "as-1", Config())

    async def done() -> bool:
        return keeper.vacuums >= 2 and await vacuumed() > before

    keeper.start()
    try:
        await until(done, 15)
    finally:
        await keeper.stop()
    assert keeper.vacuums >= 2


async def test_only_postgresql_is_vacuumed_by_the_keeper(engine: AsyncEngine) -> None:
    keeper = SlotKeeper(engine, "as-1", Config())
    keeper.start()
    try:
        await asyncio.sleep(0)
        vacuuming = keeper._vacuum is not None
    finally:
        await keeper.stop()
    await slots.vacuum_slots(engine)  # elsewhere nothing to do, and nothing fails
    assert vacuuming == (engine.dialect.name == "postgresql")
