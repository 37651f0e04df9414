"""Max daily usage (DESIGN §3.5): the day is the client's local day, the limit refuses
from the crossing on, local midnight resets it, and the crossing is notified exactly once,
also when additions from several servers race, on SQLite, PostgreSQL and MariaDB.

The clock is controlled by passing instants in; nothing global is patched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.daily import crossed, judge, local_day
from dialplan.reasons import Reason
from models.billing import DailyUsage
from models.daily_usage import Added, add, spent
from models.db import create_engine
from models.tenants import Brand, Client, Currency

AUCKLAND = "Pacific/Auckland"
MADRID = "Europe/Madrid"
LOS_ANGELES = "America/Los_Angeles"
ZONES = (AUCKLAND, MADRID, LOS_ANGELES)
LIMIT = Decimal("10.0000")


def local(zone: str, day: date, hour: int, minute: int, fold: int = 0) -> datetime:
    """The UTC instant of a wall-clock time in ``zone`` (what the service is handed)."""
    wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)
    return wall.astimezone(UTC)


@pytest.fixture
async def clients(engine: AsyncEngine) -> dict[str, int]:
    """One client per time zone, by zone name, all billing in EUR."""
    ids = {zone: number for number, zone in enumerate(ZONES, start=1)}
    async with engine.begin() as connection:
        await connection.execute(insert(Currency), [{"code": "EUR", "name": "Euro"}])
        await connection.execute(insert(Brand), [{"id": 1, "name": "iberia-voice"}])
        await connection.execute(
            insert(Client),
            [
                {
                    "id": number,
                    "brand_id": 1,
                    "name": f"client-{number}",
                    "sip_domain": f"client-{number}.example.net",
                    "language": "es",
                    "timezone": zone,
                    "currency": "EUR",
                    "country": "ES",
                    "max_daily_usage": LIMIT,
                }
                for zone, number in ids.items()
            ],
        )
    return ids


async def notified_at(engine: AsyncEngine, client_id: int, day: date) -> datetime | None:
    async with engine.connect() as connection:
        return await connection.scalar(
            select(DailyUsage.notified_at).where(
                DailyUsage.client_id == client_id, DailyUsage.day == day
            )
        )


# --- the local day -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "instant", "expected"),
    [
        # Auckland is ahead of UTC: its morning is the previous UTC day.
        (AUCKLAND, datetime(2026, 1, 14, 11, 30, tzinfo=UTC), date(2026, 1, 15)),
        # Madrid's first hour is the previous UTC day.
        (MADRID, datetime(2026, 1, 14, 23, 30, tzinfo=UTC), date(2026, 1, 15)),
        # Los Angeles is behind: its evening is the next UTC day.
        (LOS_ANGELES, datetime(2026, 1, 16, 7, 59, tzinfo=UTC), date(2026, 1, 15)),
    ],
)
def test_the_day_is_the_clients_local_date_not_the_utc_date(
    zone: str, instant: datetime, expected: date
) -> None:
    assert instant.date() != expected
    assert local_day(instant, zone) == expected


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        (MADRID, date(2026, 3, 29), 23),  # CET -> CEST
        (MADRID, date(2026, 10, 25), 25),  # CEST -> CET
        (LOS_ANGELES, date(2026, 3, 8), 23),  # PST -> PDT
        (LOS_ANGELES, date(2026, 11, 1), 25),  # PDT -> PST
        (AUCKLAND, date(2026, 4, 5), 25),  # NZDT -> NZST
        (AUCKLAND, date(2026, 9, 27), 23),  # NZST -> NZDT
    ],
)
def test_a_day_when_the_clocks_change_lasts_23_or_25_hours(
    zone: str, day: date, hours: int
) -> None:
    midnight = local(zone, day, 0, 0)
    next_midnight = local(zone, day + timedelta(days=1), 0, 0)
    assert next_midnight - midnight == timedelta(hours=hours)
    assert local_day(midnight, zone) == day
    assert local_day(next_midnight - timedelta(microseconds=1), zone) == day
    assert local_day(next_midnight, zone) == day + timedelta(days=1)
    # 23h30 after midnight is still today on a long day, already tomorrow on a short one.
    later = local_day(midnight + timedelta(hours=23, minutes=30), zone)
    assert later == (day if hours == 25 else day + timedelta(days=1))


def test_the_repeated_hour_of_a_long_day_belongs_to_that_day() -> None:
    first = local(MADRID, date(2026, 10, 25), 2, 30, fold=0)  # 02:30 CEST
    second = local(MADRID, date(2026, 10, 25), 2, 30, fold=1)  # 02:30 CET, an hour later
    assert second - first == timedelta(hours=1)
    assert local_day(first, MADRID) == local_day(second, MADRID) == date(2026, 10, 25)


def test_a_naive_instant_or_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        local_day(datetime(2026, 1, 15, 12, 0), MADRID)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        local_day(datetime(2026, 1, 15, 12, 0, tzinfo=UTC), "Mars/Olympus")


# --- the verdict ---------------------------------------------------------------------


def test_spend_under_the_limit_lets_calls_through_and_says_how_much() -> None:
    verdict = judge(limit=LIMIT, spent=Decimal("9.99"), currency="EUR", timezone=MADRID)
    assert verdict.allowed
    assert verdict.reason is None
    assert verdict.why == "spent 9.9900 of 10.0000 EUR today (Europe/Madrid)"


@pytest.mark.parametrize("amount", ["10", "10.0000", "12.5"])
def test_spend_at_or_over_the_limit_refuses_with_daily_limit_reached(amount: str) -> None:
    verdict = judge(limit=LIMIT, spent=Decimal(amount), currency="EUR", timezone=MADRID)
    assert not verdict.allowed
    assert verdict.reason is Reason.DAILY_LIMIT_REACHED
    expected = f"spent {Decimal(amount).quantize(Decimal('0.0001'))} of 10.0000 EUR"
    assert verdict.why == f"{expected} today (Europe/Madrid): daily limit reached"


def test_no_limit_lets_any_spend_through() -> None:
    verdict = judge(limit=None, spent=Decimal("123456.7"), currency="USD", timezone=LOS_ANGELES)
    assert verdict.allowed
    assert verdict.why == "spent 123456.7000 USD today (America/Los_Angeles), no daily limit"


def test_a_limit_of_zero_refuses_every_external_call() -> None:
    verdict = judge(limit=Decimal(0), spent=Decimal(0))
    assert verdict.reason is Reason.DAILY_LIMIT_REACHED
    assert verdict.why == "spent 0.0000 of 0.0000 today: daily limit reached"


@pytest.mark.parametrize(
    ("before", "after", "limit", "expected"),
    [
        ("9.9999", "10.0000", "10", True),  # landing exactly on the limit crosses
        ("9", "11", "10", True),
        ("0", "10", "10", True),
        ("9", "9.9999", "10", False),  # still under
        ("10", "11", "10", False),  # already at the limit: crossed before
        ("11", "12", "10", False),
        ("0", "0", "0", False),  # a zero limit is never crossed
        ("9", "11", None, False),  # no limit
    ],
)
def test_an_addition_crosses_when_it_goes_from_under_the_limit_to_at_or_over_it(
    before: str, after: str, limit: str | None, expected: bool
) -> None:
    limit_value = None if limit is None else Decimal(limit)
    assert crossed(Decimal(before), Decimal(after), limit_value) is expected


# --- a day of calls, on every backend -------------------------------------------------


@dataclass(frozen=True)
class Day:
    zone: str
    day: date
    midday: tuple[int, int, int] = (12, 0, 0)
    """When the day's second call ends: hour, minute, fold (the clocks change near it)."""


SCENARIOS = [
    Day(AUCKLAND, date(2026, 1, 15)),
    Day(MADRID, date(2026, 1, 15)),
    Day(LOS_ANGELES, date(2026, 1, 15)),
    Day(MADRID, date(2026, 10, 25), midday=(2, 30, 1)),  # 25 hours; 02:30 the second time
    Day(LOS_ANGELES, date(2026, 3, 8), midday=(3, 30, 0)),  # 23 hours; just after the jump
    Day(AUCKLAND, date(2026, 4, 5), midday=(2, 30, 1)),  # 25 hours; 02:30 the second time
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.zone}-{s.day}")
async def test_a_call_ending_at_2359_crosses_the_limit_and_local_midnight_resets_it(
    engine: AsyncEngine, clients: dict[str, int], scenario: Day
) -> None:
    zone, day = scenario.zone, scenario.day
    client = clients[zone]
    early = local(zone, day, 0, 30)
    hour, minute, fold = scenario.midday
    midday = local(zone, day, hour, minute, fold=fold)
    before_last = local(zone, day, 23, 58)
    crossing = local(zone, day, 23, 59)
    refused_at = crossing + timedelta(seconds=30)
    midnight = local(zone, day + timedelta(days=1), 0, 0)
    # A UTC day would split this day's calls in two and keep the crossing's spend
    # after local midnight: the scenario tells the two apart.
    assert early.date() != crossing.date()
    assert crossing.date() == midnight.date()

    async def today(at: datetime) -> tuple[date, Decimal]:
        current = local_day(at, zone)
        return current, await spent(engine, client, current)

    totals = []
    for at in (early, midday):
        current, amount = await today(at)
        assert current == day
        assert judge(limit=LIMIT, spent=amount).allowed
        totals.append(await add(engine, client, current, Decimal("3.0000"), LIMIT, at=at))
    assert totals == [
        Added(before=Decimal("0.0000"), after=Decimal("3.0000"), notify=False),
        Added(before=Decimal("3.0000"), after=Decimal("6.0000"), notify=False),
    ]

    current, amount = await today(before_last)
    assert current == day
    assert judge(limit=LIMIT, spent=amount).allowed

    current, _ = await today(crossing)
    last = await add(engine, client, current, Decimal("4.0000"), LIMIT, at=crossing)
    assert last == Added(before=Decimal("6.0000"), after=Decimal("10.0000"), notify=True)
    assert await notified_at(engine, client, day) == crossing

    current, amount = await today(refused_at)
    verdict = judge(limit=LIMIT, spent=amount, currency="EUR", timezone=zone)
    assert current == day
    assert verdict.reason is Reason.DAILY_LIMIT_REACHED
    assert verdict.why == f"spent 10.0000 of 10.0000 EUR today ({zone}): daily limit reached"

    current, amount = await today(midnight)
    verdict = judge(limit=LIMIT, spent=amount, currency="EUR", timezone=zone)
    assert current == day + timedelta(days=1)
    assert amount == Decimal("0.0000")
    assert verdict.allowed
    assert verdict.why == f"spent 0.0000 of 10.0000 EUR today ({zone})"
    after_midnight = await add(engine, client, current, Decimal("1.0000"), LIMIT, at=midnight)
    assert after_midnight == Added(Decimal("0.0000"), Decimal("1.0000"), notify=False)
    assert await spent(engine, client, day) == Decimal("10.0000")  # yesterday is kept


async def test_only_the_addition_that_crosses_notifies(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    client, day = clients[MADRID], date(2026, 1, 15)
    at = local(MADRID, day, 12, 0)
    results = [
        await add(engine, client, day, Decimal(amount), LIMIT, at=at + timedelta(minutes=n))
        for n, amount in enumerate(["3", "3", "3.99", "0.0099", "0.0001", "1", "0"])
    ]
    assert [result.notify for result in results] == [False, False, False, False, True, False, False]
    assert [result.after for result in results] == [
        Decimal(value)
        for value in ["3.0000", "6.0000", "9.9900", "9.9999", "10.0000", "11.0000", "11.0000"]
    ]
    assert await notified_at(engine, client, day) == at + timedelta(minutes=4)


async def test_additions_without_a_limit_never_notify(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    client, day = clients[LOS_ANGELES], date(2026, 1, 15)
    for _ in range(3):
        result = await add(engine, client, day, Decimal("50"), None)
        assert not result.notify
    assert await spent(engine, client, day) == Decimal("150.0000")
    assert await notified_at(engine, client, day) is None


async def test_a_raised_limit_crossed_again_the_same_day_sends_no_second_email(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    client, day = clients[AUCKLAND], date(2026, 1, 15)
    first_at = local(AUCKLAND, day, 9, 0)
    assert (await add(engine, client, day, Decimal("10"), LIMIT, at=first_at)).notify
    raised = Decimal("20")
    assert judge(limit=raised, spent=await spent(engine, client, day)).allowed
    again = await add(engine, client, day, Decimal("15"), raised, at=local(AUCKLAND, day, 18, 0))
    assert again == Added(Decimal("10.0000"), Decimal("25.0000"), notify=False)
    assert await notified_at(engine, client, day) == first_at
    # The next local day is a new day: its crossing is notified.
    tomorrow = day + timedelta(days=1)
    assert (await add(engine, client, tomorrow, Decimal("20"), raised)).notify


async def test_days_and_clients_are_counted_apart(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    day = date(2026, 1, 15)
    madrid, auckland = clients[MADRID], clients[AUCKLAND]
    assert (await add(engine, madrid, day, Decimal("10"), LIMIT)).notify
    other_client = await add(engine, auckland, day, Decimal("10"), LIMIT)
    other_day = await add(engine, madrid, day - timedelta(days=1), Decimal("10"), LIMIT)
    assert other_client.notify
    assert other_day.notify
    assert other_client.before == other_day.before == Decimal("0.0000")
    assert await spent(engine, clients[LOS_ANGELES], day) == Decimal("0.0000")


# --- exact money ---------------------------------------------------------------------


async def test_amounts_add_up_exactly(engine: AsyncEngine, clients: dict[str, int]) -> None:
    client, day = clients[MADRID], date(2026, 1, 15)
    await add(engine, client, day, Decimal("0.1"), None)
    result = await add(engine, client, day, Decimal("0.2"), None)
    assert result.after == Decimal("0.3000")
    assert str(result.after) == "0.3000"
    assert result.before + Decimal("0.2") == result.after


async def test_large_totals_stay_exact_to_the_last_place(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    # Summed as doubles, this total drifts a unit in the fourth place within a dozen
    # additions; it must not.
    client, day = clients[MADRID], date(2026, 1, 15)
    start = Decimal("99999999999.9999")
    limit = start + Decimal("0.0030")
    await add(engine, client, day, start, limit)
    results = [await add(engine, client, day, Decimal("0.0003"), limit) for _ in range(20)]
    assert [result.after for result in results] == [
        start + Decimal("0.0003") * n for n in range(1, 21)
    ]
    # The limit is reached exactly at the tenth addition, not one early or late.
    assert [n for n, result in enumerate(results, start=1) if result.notify] == [10]
    assert await spent(engine, client, day) == Decimal("100000000000.0059")


@pytest.mark.parametrize(
    "amount",
    [Decimal("0.00001"), Decimal("-1"), Decimal("NaN"), Decimal("1e14"), 0.5],
    ids=["five-places", "negative", "nan", "too-large", "float"],
)
async def test_an_amount_that_is_not_exact_money_is_refused_and_nothing_is_added(
    engine: AsyncEngine, clients: dict[str, int], amount: Decimal
) -> None:
    client, day = clients[MADRID], date(2026, 1, 15)
    with pytest.raises(ValueError, match="not non-negative 4-place money"):
        await add(engine, client, day, amount, LIMIT)
    assert await spent(engine, client, day) == Decimal("0.0000")


# --- concurrent additions ------------------------------------------------------------

CONCURRENCY = 12


@pytest.fixture
async def servers(db_url: str) -> AsyncIterator[list[AsyncEngine]]:
    """Two application servers' engines on the same database, together with at least
    one pooled connection per concurrent addition."""
    size = CONCURRENCY // 2
    engines = [create_engine(db_url, pool_size=size, max_overflow=0) for _ in range(2)]
    for engine in engines:  # open the pools first, so the additions start together
        held = [await engine.connect() for _ in range(size)]
        for connection in held:
            await connection.close()
    yield engines
    for engine in engines:
        await engine.dispose()


@pytest.mark.parametrize(
    ("already", "step"),
    [("0", "1.0000"), ("9.0000", "0.2500")],
    ids=["new-row", "existing-row"],
)
async def test_concurrent_additions_that_cross_together_notify_exactly_once(
    servers: list[AsyncEngine],
    engine: AsyncEngine,
    clients: dict[str, int],
    already: str,
    step: str,
) -> None:
    client, amount = clients[MADRID], Decimal(step)
    for round_number in range(5):
        day = date(2026, 2, 1) + timedelta(days=round_number)
        if Decimal(already):
            await add(engine, client, day, Decimal(already), LIMIT)
        results = await asyncio.gather(
            *(
                add(servers[n % 2], client, day, amount, LIMIT, at=datetime.now(UTC))
                for n in range(CONCURRENCY)
            )
        )
        # Every addition saw a distinct total: none was lost or counted twice.
        start = Decimal(already)
        assert sorted(result.before for result in results) == [
            start + amount * n for n in range(CONCURRENCY)
        ]
        assert all(result.after == result.before + amount for result in results)
        notified = [result for result in results if result.notify]
        assert len(notified) == 1, f"round {round_number}: {len(notified)} notifications"
        assert notified[0].before < LIMIT <= notified[0].after
        assert await spent(engine, client, day) == start + amount * CONCURRENCY
        assert await notified_at(engine, client, day) is not None


async def test_concurrent_additions_that_stay_under_the_limit_notify_nobody(
    servers: list[AsyncEngine], engine: AsyncEngine, clients: dict[str, int]
) -> None:
    client, day = clients[LOS_ANGELES], date(2026, 1, 15)
    results = await asyncio.gather(
        *(add(servers[n % 2], client, day, Decimal("0.5"), LIMIT) for n in range(CONCURRENCY))
    )
    assert not any(result.notify for result in results)
    assert await spent(engine, client, day) == Decimal("6.0000")
    assert await notified_at(engine, client, day) is None
