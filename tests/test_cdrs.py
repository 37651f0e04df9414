"""CDRs: written exactly once on SQLite, PostgreSQL and MariaDB; spooled through a real
outage (a TCP proxy in front of the server is stopped, or SQLite's folder goes away)
and replayed exactly once; listed and exported by ``callcontrol cdr``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from callcontrol.cli import app as main_app
from callcontrol.cli.cdr import app
from callcontrol.session import Outcome, call_cdr
from dialplan.decisions import Dial
from dialplan.pipeline import Pipeline
from models.billing import BillableCall, DailyUsage
from models.cdrs import (
    CDR_FIELDS,
    REJECTED_FILE,
    Cdr,
    CdrStore,
    Crossing,
    FlushReport,
    ListedCdr,
    Stored,
    _plainly_valid,
    list_cdrs,
)
from models.db import create_engine
from models.tenants import Client
from tests.cases.times import CDR_DAY_CASES, CdrDayCase
from tests.conftest import clients_of_one_brand
from tests.tcp_proxy import TcpProxy
from tests.world import from_carrier, world

AT = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
MADRID = timezone(timedelta(hours=1))


def a_cdr(call_id: str, client_id: int = 1, **changes: Any) -> Cdr:
    start = changes.get("start_time", AT)
    assert isinstance(start, datetime)
    values: dict[str, Any] = {
        "call_id": call_id,
        "client_id": client_id,
        "caller": "+34910000100",
        "callee": "+34600123123",
        "direction": "outbound",
        "ddi": "+34910000100",
        "start_time": start,
        "answer_time": start + timedelta(seconds=5),
        "end_time": start + timedelta(seconds=70, microseconds=250_000),
        "duration": 65,
        "billed_seconds": 66,
        "price": Decimal("0.1234"),
        "currency": "EUR",
        "rating_plan": "standard-eur",
        "matched_prefix": "+346",
        "hangup_cause": "normal",
        "outcome_reason": None,
        "server": "as-1",
    }
    return Cdr(**(values | changes))


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def stored_rows(engine: AsyncEngine) -> list[dict[str, object]]:
    columns = [getattr(BillableCall, name) for name in CDR_FIELDS]
    async with engine.connect() as connection:
        result = await connection.execute(select(*columns).order_by(BillableCall.call_id))
        return [dict(row._mapping) for row in result]


async def stored_ids(engine: AsyncEngine) -> list[str]:
    return [str(row["call_id"]) for row in await stored_rows(engine)]


def spooled_ids(folder: Path) -> list[str]:
    return sorted(
        json.loads(line)["call_id"]
        for path in folder.glob("*.jsonl")
        for line in path.read_text().splitlines()
    )


@pytest.fixture
async def clients(engine: AsyncEngine) -> dict[str, int]:
    """Two clients of one brand: acme (id 1) and globex (id 2)."""
    names = {"acme": 1, "globex": 2}
    async with engine.begin() as connection:
        await clients_of_one_brand(connection, names)
    return names


class Outage:
    """The test database behind something the test breaks and mends: a TCP proxy in
    front of the server, or for SQLite the folder holding the file."""

    def __init__(self, engine: AsyncEngine, proxy: TcpProxy | None, folder: Path) -> None:
        self.engine = engine
        self.proxy = proxy
        self.folder = folder

    async def begin(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        else:
            self.folder.rename(self.folder.with_name("away"))

    async def end(self) -> None:
        if self.proxy is not None:
            await self.proxy.start()
        else:
            self.folder.with_name("away").rename(self.folder)


@pytest.fixture
async def outage(
    db_url: str, engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> AsyncIterator[Outage]:
    url = make_url(db_url)
    proxy: TcpProxy | None = None
    folder = tmp_path / "database"
    if url.get_backend_name() == "sqlite":
        folder.mkdir()
        assert url.database is not None
        await engine.dispose()  # closing its connections checkpoints the write-ahead log
        shutil.copy(url.database, folder / "callcontrol.db")
        # No pool: an open connection would keep using the file once the folder is gone.
        broken = create_engine(f"sqlite:///{folder / 'callcontrol.db'}", poolclass=NullPool)
    else:
        assert url.host is not None
        assert url.port is not None
        proxy = TcpProxy(url.host, url.port)
        await proxy.start()
        broken = create_engine(url.set(port=proxy.port))
    yield Outage(broken, proxy, folder)
    await broken.dispose()
    if proxy is not None:
        await proxy.stop()


async def test_a_written_cdr_reads_back_with_every_field_exact(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    cdr = a_cdr("call-1", start_time=datetime(2026, 11, 25, 11, 30, 0, 123456, tzinfo=MADRID))
    async with CdrStore(engine, tmp_path / "spool") as store:
        assert await store.write(cdr) is Stored.DATABASE

    [row] = await stored_rows(engine)
    assert row == cdr.as_row()
    assert isinstance(row["price"], Decimal)
    assert str(row["price"]).rstrip("0") == "0.1234"
    assert row["start_time"] == datetime(2026, 11, 25, 10, 30, 0, 123456, tzinfo=UTC)
    for name in ("start_time", "answer_time", "end_time"):
        moment = row[name]
        assert isinstance(moment, datetime)
        assert moment.tzinfo is UTC
    assert await list_cdrs(engine) == [ListedCdr("acme", cdr)]
    assert not (tmp_path / "spool").exists()


async def test_the_same_call_id_written_twice_is_one_row_the_first(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    async with CdrStore(engine, tmp_path / "spool") as store:
        assert await store.write(a_cdr("call-1")) is Stored.DATABASE
        assert await store.write(a_cdr("call-1", price=Decimal("9"))) is Stored.DATABASE
    [row] = await stored_rows(engine)
    assert row["price"] == Decimal("0.1234")


async def test_concurrent_writes_of_one_call_id_are_one_row(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    async with CdrStore(engine, tmp_path / "spool") as store:
        results = await asyncio.gather(*(store.write(a_cdr("call-1")) for _ in range(8)))
    assert results == [Stored.DATABASE] * 8
    assert await stored_ids(engine) == ["call-1"]


async def test_cdrs_written_during_an_outage_are_spooled_then_written_exactly_once(
    outage: Outage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    async with CdrStore(outage.engine, spool, write_timeout=3) as store:
        assert await store.write(a_cdr("before")) is Stored.DATABASE
        await outage.begin()
        with caplog.at_level(logging.WARNING, logger="callcontrol.cdrs"):
            during = [await store.write(a_cdr(f"during-{n}")) for n in range(3)]
        assert during == [Stored.SPOOL] * 3
        assert spooled_ids(spool) == ["during-0", "during-1", "during-2"]
        warnings = [record.getMessage() for record in caplog.records]
        assert len(warnings) == 3
        assert all(f"during-{n}" in warnings[n] for n in range(3))

        assert await store.flush() == FlushReport(written=0, remaining=3)
        assert spooled_ids(spool) == ["during-0", "during-1", "during-2"]

        # A previous run's segment with a garbled line (named to be replayed first):
        # the line is set aside, the CDR waits for the database.
        dead = spool / "cdrs-0-dead.000001.jsonl"
        dead.write_text(f"not json\n{a_cdr('dead-1').to_json()}\n")
        assert await store.flush() == FlushReport(rejected=1, remaining=4)
        assert dead.read_text() == a_cdr("dead-1").to_json() + "\n"
        assert (spool / REJECTED_FILE).read_text() == "not json\n"

        await outage.end()
        assert await store.flush() == FlushReport(written=4)
        assert spooled_ids(spool) == []
        assert await store.flush() == FlushReport()
        assert await store.write(a_cdr("after")) is Stored.DATABASE
    assert await stored_ids(outage.engine) == [
        "after",
        "before",
        "dead-1",
        "during-0",
        "during-1",
        "during-2",
    ]
    assert sorted(path.name for path in spool.iterdir()) == [REJECTED_FILE]


async def daily_rows(engine: AsyncEngine) -> list[tuple[int, date, Decimal, bool]]:
    async with engine.connect() as connection:
        result = await connection.execute(select(DailyUsage).order_by(DailyUsage.client_id))
        return [
            (row.client_id, row.day, Decimal(row.amount), row.notified_at is not None)
            for row in result
        ]


async def test_a_priced_cdr_counts_on_its_clients_day_once_even_when_written_from_the_spool(
    outage: Outage, tmp_path: Path
) -> None:
    # acme (Europe/Madrid) may spend 0.2000 a day; globex has no limit. Each CDR costs
    # 0.1234 and ends at 23:30 UTC on the 25th, which is the 26th in Madrid.
    async with outage.engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.id == 1).values(max_daily_usage=Decimal("0.2"))
        )
    late = AT.replace(hour=23, minute=30)
    crossings: list[Crossing] = []

    async def crossed(crossing: Crossing) -> None:
        crossings.append(crossing)

    spool = tmp_path / "spool"
    async with CdrStore(outage.engine, spool, write_timeout=3, on_crossing=crossed) as store:
        assert await store.write(a_cdr("first", end_time=late)) is Stored.DATABASE
        assert await store.write(a_cdr("globex", client_id=2, end_time=late)) is Stored.DATABASE
        await outage.begin()
        assert await store.write(a_cdr("second", end_time=late)) is Stored.SPOOL
        await outage.end()
        assert crossings == []  # nothing is charged until the CDR is written
        assert await store.flush() == FlushReport(written=1)
        assert await store.write(a_cdr("second", end_time=late)) is Stored.DATABASE  # again
        assert await store.write(a_cdr("third", end_time=late)) is Stored.DATABASE
    assert await daily_rows(outage.engine) == [(1, date(2026, 11, 26), Decimal("0.3702"), True)]
    assert crossings == [Crossing(1, date(2026, 11, 26), Decimal("0.2468"), "second")]


async def test_a_failing_crossing_notice_costs_the_e_mail_only(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(Client).where(Client.id == 1).values(max_daily_usage=Decimal("0.1"))
        )

    async def broken(crossing: Crossing) -> None:
        raise RuntimeError(f"no mail server for {crossing.call_id}")

    async with CdrStore(engine, tmp_path / "spool", on_crossing=broken) as store:
        with caplog.at_level(logging.ERROR, logger="callcontrol.cdrs"):
            assert await store.write(a_cdr("call-1")) is Stored.DATABASE
    assert await stored_ids(engine) == ["call-1"]
    assert await daily_rows(engine) == [(1, AT.date(), Decimal("0.1234"), True)]
    assert [r.getMessage() for r in caplog.records] == [
        "client 1: daily limit notice failed: no mail server for call-1"
    ]


async def test_the_flusher_writes_the_spool_once_the_database_is_back(
    outage: Outage, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    async with CdrStore(outage.engine, spool, write_timeout=3) as store:
        await outage.begin()
        flusher = asyncio.create_task(store.run_flusher(0.05))
        for n in range(5):
            assert await store.write(a_cdr(f"call-{n}")) is Stored.SPOOL
            await asyncio.sleep(0.06)  # a flush fails meanwhile
        assert spooled_ids(spool) == ["call-0", "call-1", "call-2", "call-3", "call-4"]
        assert len(list(spool.glob("*.jsonl"))) <= 2  # failed flushes do not add files
        await outage.end()

        async def caught_up() -> bool:
            return len(await stored_ids(outage.engine)) == 5 and spooled_ids(spool) == []

        await until(caught_up)
        flusher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(flusher, 5)
    assert await stored_ids(outage.engine) == ["call-0", "call-1", "call-2", "call-3", "call-4"]


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
async def test_a_server_that_stops_answering_costs_a_write_its_timeout_only(
    outage: Outage, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    assert outage.proxy is not None
    async with CdrStore(outage.engine, spool) as store:
        # The first write connects: it gets the default timeout, a loaded machine may be slow.
        assert await store.write(a_cdr("before")) is Stored.DATABASE
        await outage.proxy.hang()
        store.write_timeout = 0.3
        started = time.monotonic()
        assert await store.write(a_cdr("unanswered")) is Stored.SPOOL
        assert time.monotonic() - started < 2
        store.write_timeout = 5.0  # the torn-down write must still be under way when cut

        # A call torn down while its CDR is being written still leaves the CDR behind.
        torn_down = asyncio.create_task(store.write(a_cdr("torn-down")))
        await asyncio.sleep(0.1)
        torn_down.cancel()
        with pytest.raises(asyncio.CancelledError):
            await torn_down
        assert spooled_ids(spool) == ["torn-down", "unanswered"]

        await outage.end()
        assert await store.flush() == FlushReport(written=2)
    assert await stored_ids(outage.engine) == ["before", "torn-down", "unanswered"]


async def test_another_live_process_spool_is_left_to_it_until_it_stops(
    outage: Outage, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    async with CdrStore(outage.engine, spool, write_timeout=3) as mine:
        other = CdrStore(outage.engine, spool, write_timeout=3)
        await outage.begin()
        assert await other.write(a_cdr("theirs")) is Stored.SPOOL
        assert await mine.write(a_cdr("mine")) is Stored.SPOOL
        await outage.end()

        assert await mine.flush() == FlushReport(written=1)
        assert spooled_ids(spool) == ["theirs"]
        await other.close()  # that process stops with its CDR still spooled
        assert await mine.flush() == FlushReport(written=1)
    assert await stored_ids(outage.engine) == ["mine", "theirs"]
    assert list(spool.iterdir()) == []


async def test_a_spool_left_by_a_previous_process_is_flushed_at_start(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    async with CdrStore(engine, tmp_path / "elsewhere") as earlier:
        await earlier.write(a_cdr("written-before-the-crash"))
    lines = [
        a_cdr("written-before-the-crash").to_json(),
        a_cdr("left-1").to_json(),
        a_cdr("left-2", client_id=2, direction="inbound", price=None).to_json(),
        a_cdr("torn").to_json()[:40],  # the line being appended when the process died
    ]
    (spool / "cdrs-4242-dead.000001.jsonl").write_text("\n".join(lines))
    (spool / "cdrs-4242-dead.lock").write_bytes(b"")
    (spool / "cdrs-77-gone.000003.jsonl").write_text(a_cdr("left-3").to_json() + "\n")

    async with CdrStore(engine, spool) as store:
        flusher = asyncio.create_task(store.run_flusher(60))

        async def flushed() -> bool:
            return sorted(path.name for path in spool.iterdir()) == [REJECTED_FILE]

        await until(flushed)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
    assert await stored_ids(engine) == ["left-1", "left-2", "left-3", "written-before-the-crash"]
    assert (spool / REJECTED_FILE).read_text() == a_cdr("torn").to_json()[:40] + "\n"


async def test_a_cdr_the_database_refuses_raises_and_is_set_aside(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    unknown_client = a_cdr("no-such-client", client_id=999)
    async with CdrStore(engine, spool) as store:
        with pytest.raises(IntegrityError):
            await store.write(unknown_client)
        assert await stored_ids(engine) == []
        assert (spool / REJECTED_FILE).read_text() == unknown_client.to_json() + "\n"

        lines = [a_cdr("good-1"), unknown_client, a_cdr("good-2")]
        text = "".join(cdr.to_json() + "\n" for cdr in lines)
        (spool / "cdrs-1-dead.000001.jsonl").write_text(text)
        assert await store.flush() == FlushReport(written=2, rejected=1)
    assert await stored_ids(engine) == ["good-1", "good-2"]
    assert (spool / REJECTED_FILE).read_text().splitlines() == [unknown_client.to_json()] * 2


def test_a_cdr_survives_a_json_round_trip_exactly() -> None:
    cdr = a_cdr("call-1", start_time=datetime(2026, 11, 25, 11, 30, tzinfo=MADRID))
    line = cdr.to_json()
    assert json.loads(line)["price"] == "0.1234"
    assert json.loads(line)["start_time"] == "2026-11-25T11:30:00+01:00"
    assert Cdr.from_json(line) == cdr
    bare = replace(cdr, answer_time=None, price=None, ddi=None)
    assert Cdr.from_json(bare.to_json()) == bare


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[1, 2]", "exactly the CDR fields"),
        ('{"call_id": "x"}', "exactly the CDR fields"),
        (a_cdr("x").to_json().replace('"0.1234"', "0.1234"), "price must be a string"),
        (a_cdr("x").to_json().replace("+00:00", ""), "no time zone"),
        (a_cdr("x").to_json().replace('"outbound"', '"sideways"'), "unknown direction"),
        (a_cdr("x").to_json()[:30], "not a CDR"),
    ],
)
def test_a_line_that_is_not_a_cdr_is_refused(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Cdr.from_json(line)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"start_time": datetime(2026, 11, 25, 10, 30)}, "no time zone"),
        ({"price": Decimal("0.12345")}, "not 4-place money"),
        ({"price": 0.5}, "price must be Decimal"),
        ({"duration": -1}, "negative duration"),
        ({"caller": "9" * 65}, "caller is longer than allowed"),
        ({"client_id": True}, "client_id must be int"),
        # What a check of all the texts at once must not let through: a falsy non-text,
        # a missing required text, a naive date among optional ones, a text one too long.
        ({"caller": 0}, "caller must be str"),
        ({"callee": None}, "callee must be str"),
        ({"answer_time": datetime(2026, 11, 25, 10, 30)}, "answer_time has no time zone"),
        ({"currency": "EURO"}, "currency is longer than allowed"),
        ({"callee": "+34\x00600"}, "callee holds a control character"),
        ({"emergency": 1}, "emergency must be bool"),
    ],
)
def test_a_cdr_the_table_cannot_hold_is_refused_when_built(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        a_cdr("x", **changes)


class Seconds(int):
    """A subclass of ``int``, as a driver or a library may hand one over."""


@pytest.mark.parametrize(
    "changes",
    [
        {"caller": "José Ñúñez"},  # printable, not ASCII
        {"duration": Seconds(65)},
        {"ddi": None, "currency": None, "price": None, "answer_time": None},
        {"caller": ""},
        {"caller": "9" * 64},
    ],
)
def test_a_cdr_the_table_can_hold_is_built_whatever_way_it_is_checked(
    changes: dict[str, Any],
) -> None:
    cdr = a_cdr("x", **changes)
    assert {name: getattr(cdr, name) for name in changes} == changes


def test_an_ordinary_cdr_is_checked_at_once_and_an_unusual_one_field_by_field() -> None:
    assert _plainly_valid(a_cdr("x"))
    assert not _plainly_valid(a_cdr("x", caller="José"))
    assert not _plainly_valid(a_cdr("x", duration=Seconds(65)))


# -- callcontrol cdr ---------------------------------------------------------------


@pytest.fixture
async def cdr_db(db_url: str, engine: AsyncEngine, clients: dict[str, int], tmp_path: Path) -> str:
    """Four CDRs over three UTC days, two clients, two refusal reasons."""
    day = timedelta(days=1)
    cdrs = [
        a_cdr("a-answered", start_time=AT - day),
        a_cdr("a-broke", start_time=AT, outcome_reason="insufficient_balance", price=None),
        a_cdr("g-inbound", 2, direction="inbound", start_time=AT + timedelta(hours=13, minutes=29)),
        a_cdr("a-unrated", start_time=AT + day, outcome_reason="cannot_be_billed", price=None),
    ]
    async with CdrStore(engine, tmp_path / "spool") as store:
        for cdr in cdrs:
            await store.write(cdr)
    return db_url


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def listed_ids(output: str) -> list[str]:
    """The callers column is the same everywhere; identify rows by start and client."""
    return [" ".join(line.split()[:3]) for line in output.splitlines()[1:-1]]


def test_cdr_list_shows_a_table_filtered_by_client_days_and_outcome(cdr_db: str) -> None:
    code, out, err = cli("list", "--database-url", cdr_db)
    assert (code, err) == (0, "")
    header, *rows, total = out.splitlines()
    assert header.split()[:3] == ["start", "(UTC)", "client"]
    assert total == "4 CDRs"
    first = (
        "2026-11-24 10:30:00  acme  +34910000100 → +34600123123  outbound  65s  66s  0.1234 EUR  -"
    )
    assert rows[0].split() == first.split()
    assert "insufficient_balance" in rows[1]

    code, out, _ = cli(
        "list", "--client", "acme", "--since", "2026-11-25", "--database-url", cdr_db
    )
    # acme's days and times are Madrid's (+01:00 in November)
    assert listed_ids(out) == ["2026-11-25 11:30:00 acme", "2026-11-26 11:30:00 acme"]
    code, out, _ = cli(
        "list", "--since", "2026-11-25", "--until", "2026-11-25", "--database-url", cdr_db
    )
    assert listed_ids(out) == ["2026-11-25 10:30:00 acme", "2026-11-25 23:59:00 globex"]
    code, out, _ = cli(
        "list", "--outcome", "cannot_be_billed", env={"CALLCONTROL_DATABASE_URL": cdr_db}
    )
    assert (code, listed_ids(out)) == (0, ["2026-11-26 10:30:00 acme"])
    code, out, _ = cli(
        "list", "--client", "globex", "--outcome", "no_client", "--database-url", cdr_db
    )
    assert code == 0
    assert out.splitlines()[0].split("  ") == [
        "start (Europe/Madrid)",
        "client",
        "caller → callee",
        "direction",
        "duration",
        "billed",
        "price",
        "outcome",
    ]
    assert out.splitlines()[1:] == ["0 CDRs"]


async def test_cdr_list_marks_an_emergency_call(
    db_url: str, engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    async with CdrStore(engine, tmp_path / "spool") as store:
        await store.write(a_cdr("plain"))
        await store.write(
            a_cdr(
                "sos",
                start_time=AT + timedelta(minutes=1),
                callee="112",
                emergency=True,
                price=None,
                currency=None,
                rating_plan=None,
            )
        )
    code, out, err = await asyncio.to_thread(cli, "list", "--database-url", db_url)
    assert (code, err) == (0, "")
    plain, sos = (
        [cell.strip() for cell in row.split("  ") if cell] for row in out.splitlines()[1:3]
    )
    assert plain[2:4] == ["+34910000100 → +34600123123", "outbound"]
    assert sos[2:4] == ["+34910000100 → 112", "outbound (emergency)"]


async def test_a_cdr_neither_the_database_nor_the_spool_takes_is_logged_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "spool"
    not_a_folder.write_text("")
    engine = create_engine("postgresql://postgres@127.0.0.1:9/nothing-listens-there")
    try:
        async with CdrStore(engine, not_a_folder) as store:
            assert await store.write(a_cdr("call-1")) is Stored.LOG
    finally:
        await engine.dispose()
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage().endswith(a_cdr("call-1").to_json())


@pytest.mark.parametrize("case", CDR_DAY_CASES, ids=[case.name for case in CDR_DAY_CASES])
def test_cdr_days_are_the_clients_days(cdr_db: str, case: CdrDayCase) -> None:
    code, out, err = cli("list", *case.options, "--database-url", cdr_db)
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith(f"start ({case.zone})")
    assert listed_ids(out) == list(case.listed)


def test_cdr_export_csv_has_a_header_and_every_field(cdr_db: str) -> None:
    code, out, err = cli(
        "export", "--csv", "--client", "acme", "--until", "2026-11-25", "--database-url", cdr_db
    )
    assert (code, err) == (0, "")
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames == [
        "call_id",
        "client",
        "client_id",
        "caller",
        "callee",
        "direction",
        "ddi",
        "start_time",
        "answer_time",
        "end_time",
        "duration",
        "billed_seconds",
        "price",
        "currency",
        "rating_plan",
        "matched_prefix",
        "hangup_cause",
        "outcome_reason",
        "server",
        "emergency",
    ]
    first, second = list(reader)
    assert first["call_id"] == "a-answered"
    assert first["client"] == "acme"
    assert first["start_time"] == "2026-11-24T10:30:00+00:00"
    assert first["end_time"] == "2026-11-24T10:31:10.250000+00:00"
    assert Decimal(first["price"]) == Decimal("0.1234")
    assert (second["call_id"], second["price"], second["outcome_reason"]) == (
        "a-broke",
        "",
        "insufficient_balance",
    )


def test_cdr_export_to_a_file_replaces_it_whole_or_not_at_all(cdr_db: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "cdrs.csv"
    target.parent.mkdir()
    target.write_text("previous export\n")
    code, _, err = cli(
        "export", "--csv", "--client", "nobody", "--output", str(target), "--database-url", cdr_db
    )
    assert (code, err) == (1, "error: no client named 'nobody'\n")
    assert target.read_text() == "previous export\n"
    assert list(target.parent.iterdir()) == [target]

    code, _, err = cli("export", "--csv", "--output", str(target), "--database-url", cdr_db)
    assert (code, err) == (0, f"4 CDRs written to {target}\n")
    assert [row["call_id"] for row in csv.DictReader(io.StringIO(target.read_text()))] == [
        "a-answered",
        "a-broke",
        "g-inbound",
        "a-unrated",
    ]
    assert list(target.parent.iterdir()) == [target]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--since", "25/11/2026"], "--since '25/11/2026' is not a day (YYYY-MM-DD"),
        (["list", "--until", "2026-02-30"], "--until '2026-02-30' is not a day"),
        (["list", "--since", "2026-11-26", "--until", "2026-11-25"], "--since 2026-11-26 is after"),
        (
            ["export", "--csv", "--outcome", "answered"],
            "--outcome 'answered' is not an outcome reason; one of: no_client,",
        ),
        (["export"], "give the export format: --csv"),
        (["export", "--csv", "--output", "/nonexistent/x.csv"], "/nonexistent/x.csv: folder"),
    ],
)
def test_cdr_commands_refuse_bad_input_in_one_line_before_any_query(
    tmp_path: Path, args: list[str], message: str
) -> None:
    never_opened = tmp_path / "never.db"
    code, out, err = cli(*args, "--database-url", f"sqlite:///{never_opened}")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {message}")
    assert err.count("\n") == 1
    assert not never_opened.exists()


def test_cdr_list_names_an_unknown_client_in_one_line(cdr_db: str) -> None:
    code, out, err = cli("list", "--client", "nobody", "--database-url", cdr_db)
    assert (code, out, err) == (1, "", "error: no client named 'nobody'\n")


def test_cdr_export_of_nothing_is_the_header_alone(cdr_db: str) -> None:
    code, out, _ = cli("export", "--csv", "--since", "2030-01-01", "--database-url", cdr_db)
    assert (code, out.splitlines()) == (0, [",".join(("call_id", "client", *CDR_FIELDS[1:]))])


def test_cdr_commands_refuse_a_bad_setting_in_one_line() -> None:
    code, _, err = cli("list", env={"CALLCONTROL_NO_SUCH_SETTING": "1"})
    assert (code, err) == (1, "error: environment: unknown setting 'no_such_setting'\n")


def test_cdr_list_says_when_the_database_is_unreachable(tmp_path: Path) -> None:
    code, _, err = cli("list", "--database-url", "postgresql://postgres@127.0.0.1:9/test")
    assert code == 1
    assert err.startswith("error: database unavailable: ")
    assert err.count("\n") == 1
    code, _, err = cli("list", "--database-url", f"sqlite:///{tmp_path / 'new.db'}")
    assert code == 1
    assert err.startswith("error: database ")
    assert err.endswith("run `callcontrol db upgrade`\n")


async def test_a_carriers_caller_id_with_a_nul_is_stored_scrubbed_on_every_backend(
    engine: AsyncEngine, clients: dict[str, int], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="caller holds a control character"):
        a_cdr("call-1", caller="+34600\x00111222")
    request = from_carrier("carrier-es", "+34910000001", caller="+34600\x00111\udcff")
    result = await Pipeline(world()).run(request)
    assert isinstance(result.decision, Dial)
    outcome = Outcome(call_id="c2", decision="dial", result="answered", answered=True, seconds=9)
    cdr = call_cdr(
        result, outcome, start=AT, answer=AT, end=AT + timedelta(seconds=9), server="as-1"
    )
    assert cdr is not None

    async with CdrStore(engine, tmp_path / "spool") as store:
        assert await store.write(cdr) is Stored.DATABASE

    [row] = await stored_rows(engine)
    assert row["caller"] == "+34600\ufffd111\ufffd"


def test_a_huge_client_name_is_cut_in_the_one_line_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    CliRunner().invoke(main_app, ["db", "upgrade", "--database-url", url])
    result = CliRunner().invoke(app, ["list", "--client", "z" * 5000, "--database-url", url])
    assert result.exit_code == 1
    assert result.stderr == "error: no client named '" + "z" * 80 + "'... (5,000 characters)\n"
