"""The batched hang-up writer on SQLite, PostgreSQL and MariaDB: many calls' CDRs, debits,
daily additions and slot releases in a few transactions, each call exactly once; through
an outage the CDRs are spooled and the slots left to their keeper; a refused CDR costs
only itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.config import Config
from callcontrol.writer import EndWriter
from models.billing import ActiveCallSlot
from models.cdrs import REJECTED_FILE, CdrStore, Crossing, FlushReport
from models.slots import SlotKeeper, acquire
from models.tenants import Client
from tests import test_cdrs
from tests.test_cdrs import AT, Outage, a_cdr, daily_rows, spooled_ids, stored_ids

clients = test_cdrs.clients
outage = test_cdrs.outage

PRICE = Decimal("0.1234")


async def take_slots(engine: AsyncEngine, call_ids: list[str], client_id: int = 1) -> None:
    for call_id in call_ids:
        verdict = await acquire(
            engine,
            client_id=client_id,
            max_calls=0,
            call_id=call_id,
            server="as-1",
            direction="outbound",
            now=datetime.now(UTC),
            lease=60.0,
        )
        assert verdict.taken


async def slots_held(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(ActiveCallSlot)) or 0)


async def balance(engine: AsyncEngine, client_id: int = 1) -> Decimal:
    async with engine.connect() as connection:
        value = await connection.scalar(select(Client.balance).where(Client.id == client_id))
    return Decimal(value)


async def prepaid(engine: AsyncEngine, amount: str, limit: str | None = None) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(Client)
            .where(Client.id == 1)
            .values(
                billing_method="prepaid",
                balance=Decimal(amount),
                max_daily_usage=Decimal(limit) if limit else None,
            )
        )


def keeper_of(engine: AsyncEngine) -> SlotKeeper:
    return SlotKeeper(engine, "as-1", Config(slot_lease=60.0, slot_heartbeat=20.0))


async def test_ends_handed_over_together_are_few_transactions_and_each_call_once(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    await prepaid(engine, "10")
    call_ids = [f"call-{n:02d}" for n in range(40)]
    await take_slots(engine, call_ids)
    async with CdrStore(engine, tmp_path / "spool") as store:
        writer = EndWriter(store, keeper_of(engine))
        ends = [writer.end(call_id, a_cdr(call_id), release=True) for call_id in call_ids]
        ends.append(writer.end("call-00", a_cdr("call-00"), release=True))  # the same again
        await asyncio.gather(*ends)
        await writer.close()
    assert writer.batches < 5
    assert await stored_ids(engine) == call_ids
    assert await balance(engine) == Decimal("10") - 40 * PRICE  # each debited once
    assert await slots_held(engine) == 0
    assert writer.pending == 0


async def test_an_end_handed_over_without_waiting_is_written_by_close(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    await take_slots(engine, ["h-1", "h-2"])
    async with CdrStore(engine, tmp_path / "spool") as store:
        writer = EndWriter(store, keeper_of(engine), linger=0.05)
        first = writer.hand("h-1", a_cdr("h-1"), release=True)
        again = writer.hand("h-1", a_cdr("h-1"), release=False)  # the same call: one write
        second = writer.hand("h-2", None, release=True)  # a slot alone
        assert first is not None
        assert again is first
        assert second is not None
        assert not first.done()  # queued, nothing written yet
        assert writer.pending == 2
        assert writer.hand("h-3", None, release=False) is None  # nothing to write
        await writer.close()
        assert first.done()
        assert second.done()
    assert await stored_ids(engine) == ["h-1"]
    assert await slots_held(engine) == 0
    assert writer.batches == 1


async def test_a_waiter_cancelled_leaves_its_end_written_and_the_other_waiters_served(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    async with CdrStore(engine, tmp_path / "spool") as store:
        writer = EndWriter(store, linger=0.05)
        cancelled = asyncio.create_task(writer.end("w-1", a_cdr("w-1"), release=False))
        served = asyncio.create_task(writer.end("w-1", a_cdr("w-1"), release=False))
        await asyncio.sleep(0)  # both wait on the same queued end
        cancelled.cancel()
        await served  # not cancelled with the other: back once the batch is written
        assert cancelled.cancelled()
        await writer.close()
    assert await stored_ids(engine) == ["w-1"]
    assert writer.batches == 1


async def test_only_a_batch_that_debited_a_balance_reads_balances_back(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    # acme (1) is postpaid, globex (2) prepaid: a balance is read back (for its low-balance
    # threshold) only in the batch that debited globex's.
    async with engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.id == 2).values(billing_method="prepaid", balance=10)
        )
    statements: list[str] = []
    event.listen(
        engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    read_back: list[int] = []
    async with CdrStore(engine, tmp_path / "spool") as store:
        for client_id in (1, 2):
            statements.clear()
            writer = EndWriter(store, linger=0.1)
            await asyncio.gather(
                *(
                    writer.end(
                        f"c{client_id}-{n}", a_cdr(f"c{client_id}-{n}", client_id), release=False
                    )
                    for n in range(3)
                )
            )
            read_back.append(sum("low_balance_threshold" in text for text in statements))
    assert read_back == [0, 1]
    assert await balance(engine, 1) == Decimal(0)  # postpaid: nothing debited
    assert await balance(engine, 2) == Decimal(10) - 3 * PRICE


async def test_the_call_that_takes_the_day_over_its_limit_is_named_once(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    # acme may spend 0.3000 a day (Madrid): the third call of 0.1234 takes it over.
    await prepaid(engine, "10", limit="0.3")
    crossings: list[Crossing] = []

    async def crossed(crossing: Crossing) -> None:
        crossings.append(crossing)

    ended = [AT + timedelta(seconds=n) for n in range(5)]
    async with CdrStore(engine, tmp_path / "spool", on_crossing=crossed) as store:
        writer = EndWriter(store, linger=0.2)  # one batch for the five
        await asyncio.gather(
            *(
                writer.end(f"c{n}", a_cdr(f"c{n}", end_time=end), release=False)
                for n, end in enumerate(ended)
            )
        )
    assert writer.batches == 1
    day = AT.date()
    assert await daily_rows(engine) == [(1, day, 5 * PRICE, True)]
    assert crossings == [Crossing(1, day, 5 * PRICE, "c2")]


async def test_through_an_outage_cdrs_are_spooled_and_slots_left_to_the_keeper(
    outage: Outage, tmp_path: Path
) -> None:
    engine = outage.engine
    await take_slots(engine, ["a", "b"])
    keeper = keeper_of(engine)
    async with CdrStore(engine, tmp_path / "spool", write_timeout=3) as store:
        writer = EndWriter(store, keeper)
        await outage.begin()
        await asyncio.gather(
            writer.end("a", a_cdr("a"), release=True), writer.end("b", a_cdr("b"), release=True)
        )
        assert spooled_ids(tmp_path / "spool") == ["a", "b"]
        assert keeper.unreleased == {"a", "b"}
        await outage.end()
        assert await store.flush() == FlushReport(written=2)
        await keeper.beat()
    assert keeper.unreleased == set()
    assert await stored_ids(engine) == ["a", "b"]
    assert await slots_held(engine) == 0


async def test_a_cdr_the_database_refuses_costs_only_itself(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    await take_slots(engine, ["good-1", "good-2"])
    spool = tmp_path / "spool"
    async with CdrStore(engine, spool) as store:
        writer = EndWriter(store, keeper_of(engine), linger=0.2)
        await asyncio.gather(
            writer.end("good-1", a_cdr("good-1"), release=True),
            writer.end("orphan", a_cdr("orphan", client_id=99), release=False),  # no client 99
            writer.end("good-2", a_cdr("good-2"), release=True),
        )
    assert await stored_ids(engine) == ["good-1", "good-2"]
    assert '"orphan"' in (spool / REJECTED_FILE).read_text()
    assert await slots_held(engine) == 0


async def test_a_slot_alone_is_released_without_a_cdr_store(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    await take_slots(engine, ["x"])
    writer = EndWriter(None, keeper_of(engine))
    await writer.end("x", None, release=True)
    assert await slots_held(engine) == 0
    nothing = EndWriter(None, None)
    await nothing.end("y", None, release=True)  # nothing to write: returns at once
    assert nothing.batches == 0
