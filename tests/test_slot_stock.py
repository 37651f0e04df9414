"""Slots a busy server takes ahead (models.slot_stock) on SQLite, PostgreSQL and MariaDB:
a busy client's calls admitted without a round trip each, the limit still held across
servers, the slot named after its call and freed at its end under either name, unused
ones given back; quiet, prepaid and small-limit clients admitted call by call as before."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.bench_measure import RoundTrips
from callcontrol.config import Config
from dialplan.views import ClientView
from models.counters import client_counters
from models.directory import SqlCounters, Ticket
from models.slot_stock import FEW, RENAME_AFTER, SlotStock
from models.slots import SPARE, SlotKeeper
from models.tenants import Client
from tests.test_slots import ACME, GLOBEX, held_slots, slot_rows
from tests.test_slots import engine as engine  # a fixture: two clients

LEASE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(client_id: int = ACME, max_calls: int = 1000, billing: str = "postpaid") -> ClientView:
    return ClientView(
        id=client_id,
        name="acme" if client_id == ACME else "globex",
        brand_id=1,
        corporation_id=None,
        corporation=None,
        country="ES",
        language="en",
        timezone="UTC",
        currency="EUR",
        features=frozenset(),
        billing_method=billing,
        max_calls=max_calls,
    )


async def admit(
    counters: SqlCounters, stock: SlotStock | None, who: ClientView, call_id: str
) -> Ticket:
    """What the service does for one external call: its client's counters read with its
    slot taken, from ``stock`` when it can."""
    ticket = Ticket(call_id, "as-1", LEASE, "outbound", stock=stock)
    with counters.admitting(ticket):
        async with counters.scope():
            await counters.active_calls(who, datetime.now(UTC))
    return ticket


async def filled(stock: SlotStock) -> None:
    """Until the stock's background top-up is over."""
    for _ in range(200):
        tasks = [shelf.filling for shelf in stock._shelves.values() if shelf.filling is not None]
        if tasks and all(task.done() for task in tasks):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stock was never filled")


async def test_a_busy_clients_calls_come_from_the_stock_named_and_freed_as_their_own(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    stock = SlotStock(engine, "as-1", LEASE, size=8, busy=5, clock=clock)
    counters = SqlCounters(engine)
    acme = client()
    # Quiet: each call through the database, nothing taken ahead.
    for number in range(4):
        ticket = await admit(counters, stock, acme, f"q{number}")
        assert ticket.holds
    assert (stock.local, stock.taken) == (0, 0)
    # The fifth call within a second makes the client busy: eight slots taken ahead.
    await admit(counters, stock, acme, "q4")
    await filled(stock)
    assert stock.taken == 8
    assert await slot_rows(engine) == 5 + 8
    # The next calls take them: no statement is sent for their admission.
    for number in range(3):
        ticket = await admit(counters, stock, acme, f"s{number}")
        assert ticket.holds
        assert ticket.verdict is not None
        assert ticket.verdict.taken
    assert stock.local == 3
    await stock.flush()  # each slot now carries its call's name, nothing else changed
    rows = await held_slots(engine)
    assert len(rows) == 13
    assert {"s0", "s1", "s2"} <= {call_id for call_id, _ in rows}
    assert sum(call_id.startswith(SPARE) for call_id, _ in rows) == 5
    # The operators' counters show the calls, not the slots nobody uses yet.
    [shown] = await client_counters(engine, "acme")
    assert shown.calls == 8
    # Ended, whether or not the rename came first: its slot is gone, nothing else.
    keeper = SlotKeeper(engine, "as-1", Config(), stock=stock)
    ticket = await admit(counters, stock, acme, "quick")  # ended before its rename
    await keeper.release_all(["s0", "quick"])
    await stock.flush()
    # Down to half its size, the stock was topped up again: four more taken ahead.
    await filled(stock)
    rows = await held_slots(engine)
    assert {"s0", "quick"}.isdisjoint(call_id for call_id, _ in rows)
    assert len(rows) == 13 - 2 + 4
    assert sum(call_id.startswith(SPARE) for call_id, _ in rows) == 8
    # Unused for longer than ``idle`` (the top-up these calls asked for included): given
    # back at the keeper's beat.
    await filled(stock)
    clock.now += 10
    await keeper.beat()
    assert sorted(call_id for call_id, _ in await held_slots(engine)) == [
        "q0",
        "q1",
        "q2",
        "q3",
        "q4",
        "s1",
        "s2",
    ]


async def test_slots_taken_ahead_count_against_the_limit_on_every_server(
    engine: AsyncEngine,
) -> None:
    limit = FEW
    stock = SlotStock(engine, "as-1", LEASE, size=64, busy=1)
    counters = SqlCounters(engine)
    acme = client(max_calls=limit)
    await admit(counters, stock, acme, "first")
    await filled(stock)
    # Half the limit at most is held with the slots taken ahead.
    assert stock.taken == limit // 2 - 1
    assert await slot_rows(engine) == limit // 2
    # Another server (no stock) admits call by call: the ones taken ahead count.
    admitted = 0
    for number in range(limit):
        ticket = await admit(counters, None, acme, f"other-{number}")
        assert ticket.verdict is not None
        admitted += ticket.verdict.taken
    assert admitted == limit - limit // 2
    assert await slot_rows(engine) == limit
    # The first server takes from its stock what it holds, and no more.
    taken = 0
    for number in range(limit):
        ticket = await admit(counters, stock, acme, f"mine-{number}")
        assert ticket.verdict is not None
        taken += ticket.verdict.taken
    assert taken == limit // 2 - 1
    await stock.flush()
    assert await slot_rows(engine) == limit


@pytest.mark.parametrize(
    ("who", "why"),
    [
        (client(max_calls=FEW - 1), "a small limit is counted call by call"),
        (client(billing="prepaid"), "a prepaid call reserves from the balance"),
    ],
)
async def test_no_slot_is_taken_ahead_for_a_small_limit_or_a_prepaid_client(
    engine: AsyncEngine, who: ClientView, why: str
) -> None:
    stock = SlotStock(engine, "as-1", LEASE, size=8, busy=1)
    counters = SqlCounters(engine)
    for number in range(10):
        assert (await admit(counters, stock, who, f"c{number}")).holds, why
    await asyncio.sleep(0.05)
    assert (stock.taken, stock.local) == (0, 0), why
    assert await slot_rows(engine) == 10


async def test_old_counters_or_another_day_send_the_call_through_the_database(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    stock = SlotStock(engine, "as-1", LEASE, size=8, busy=1, fresh=1.0, clock=clock)
    counters = SqlCounters(engine)
    acme = client()
    await admit(counters, stock, acme, "first")
    await filled(stock)
    assert stock.taken == 8
    clock.now += 1.5  # the counters read with the stock are too old now
    await admit(counters, stock, acme, "second")
    assert stock.local == 0
    await admit(counters, stock, acme, "third")  # read again by the second: fresh
    assert stock.local == 1
    # A limit lowered under FEW since: call by call again, at once.
    await admit(counters, stock, replace(acme, max_calls=FEW - 1), "fourth")
    assert stock.local == 1


async def test_a_stopped_keeper_gives_back_what_its_stock_holds_unused(
    engine: AsyncEngine,
) -> None:
    stock = SlotStock(engine, "as-1", LEASE, size=8, busy=1)
    keeper = SlotKeeper(engine, "as-1", Config(), stock=stock)
    keeper.start()
    counters = SqlCounters(engine)
    await admit(counters, stock, client(), "live")
    await filled(stock)
    await admit(counters, stock, client(), "from-stock")
    assert stock.local == 1
    await keeper.stop()
    assert sorted(call_id for call_id, _ in await held_slots(engine)) == ["from-stock", "live"]


async def test_the_stock_keeps_each_clients_counters_apart(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(update(Client).where(Client.id == GLOBEX).values(balance=7))
    stock = SlotStock(engine, "as-1", LEASE, size=4, busy=1)
    counters = SqlCounters(engine)
    await admit(counters, stock, client(ACME), "a1")
    await admit(counters, stock, client(GLOBEX), "g1")
    await filled(stock)
    ticket = await admit(counters, stock, client(GLOBEX), "g2")
    assert stock.local == 1
    assert ticket.verdict is not None
    assert ticket.verdict.balance == 7
    assert ticket.verdict.held >= 1


async def test_a_restarted_server_frees_what_its_earlier_run_took_ahead(
    engine: AsyncEngine,
) -> None:
    earlier = SlotStock(engine, "as-1", LEASE, size=8, busy=1)
    counters = SqlCounters(engine)
    await admit(counters, earlier, client(), "live")
    await filled(earlier)
    await admit(counters, earlier, client(), "from-stock")
    await earlier.flush()  # then the process died: its stock was never given back
    assert await slot_rows(engine) == 9
    keeper = SlotKeeper(engine, "as-1", Config(), stock=SlotStock(engine, "as-1", LEASE))
    keeper.start()
    for _ in range(100):
        if await slot_rows(engine) == 2:
            break
        await asyncio.sleep(0.02)
    await keeper.stop()
    assert sorted(call_id for call_id, _ in await held_slots(engine)) == ["from-stock", "live"]


async def test_slots_left_unused_are_given_back_without_waiting_for_a_heartbeat(
    engine: AsyncEngine,
) -> None:
    stock = SlotStock(engine, "as-1", LEASE, size=8, busy=1, idle=0.1)
    counters = SqlCounters(engine)
    await admit(counters, stock, client(), "only")
    await filled(stock)
    assert await slot_rows(engine) == 9
    for _ in range(100):  # the client went quiet: a tenth of a second later, given back
        if await slot_rows(engine) == 1:
            break
        await asyncio.sleep(0.02)
    assert [call_id for call_id, _ in await held_slots(engine)] == ["only"]
    await stock.close()


async def test_a_short_call_puts_its_slot_back_and_a_long_one_is_named_after_it(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    stock = SlotStock(engine, "as-1", LEASE, size=8, busy=1, clock=clock)
    keeper = SlotKeeper(engine, "as-1", Config(), stock=stock)
    counters = SqlCounters(engine)
    await admit(counters, stock, client(), "first")
    await filled(stock)
    before = await held_slots(engine)
    trips = RoundTrips(engine)
    # Ended before it was due to be renamed: back on the shelf, not a statement sent.
    await admit(counters, stock, client(), "short")
    assert await keeper.release_all(["short"])
    assert trips.count == 0
    assert await held_slots(engine) == before
    assert len(stock._shelves[ACME].spares) == 8
    # Lasting past RENAME_AFTER: named after its call, then freed under that name.
    await admit(counters, stock, client(), "long")
    clock.now += RENAME_AFTER + 0.1
    for _ in range(100):
        if "long" in {call_id for call_id, _ in await held_slots(engine)}:
            break
        await asyncio.sleep(0.02)
    assert len(await held_slots(engine)) == len(before)
    assert await keeper.release_all(["long"])
    assert "long" not in {call_id for call_id, _ in await held_slots(engine)}
    assert len(await held_slots(engine)) == len(before) - 1
    await stock.close()
