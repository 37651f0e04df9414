"""A client's external spend per local day (DESIGN §3.5), shared by every application server.

``add`` is one transaction on SQLite, PostgreSQL and MariaDB:

1. an upsert adds the amount to the day's row (``ON CONFLICT DO UPDATE``, MariaDB
   ``ON DUPLICATE KEY UPDATE``), creating it if needed; from here the transaction holds
   the row (a row lock; SQLite's single writer lock), so concurrent additions queue;
2. the row is read back (``FOR UPDATE`` where that exists): ``after`` is the new total and
   ``before = after - amount`` exactly, since nobody else could change it in between;
3. only when this addition crosses the limit (``before < limit <= after``):
   ``UPDATE ... SET notified_at = :at WHERE notified_at IS NULL``; the addition gets
   ``notify`` when that changed the row.

Additions are serialised, so exactly one of several concurrent ones can cross.

Once per crossing means **at most one e-mail per client and local day**: ``notified_at``
is the time of that day's e-mail. A limit raised later the same day and crossed again does
not e-mail again (the table keeps no record of which limit was notified); the next local
day is a new row and notifies afresh. A limit lowered under the day's spend refuses new
calls but e-mails nobody, since no addition crossed it; a limit of 0 is never crossed.

The caller picks the day with :func:`dialplan.daily.local_day` in the client's zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Select, TextClause, TextualSelect, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dialplan.daily import MONEY_QUANTUM, crossed
from models.billing import DailyUsage

_TABLE = DailyUsage.__table__
_MAX = Decimal(10) ** 14  # what NUMERIC(18, 4) holds


@dataclass(frozen=True, slots=True)
class Added:
    """One addition to a day's spend: the totals around it, and whether this addition is
    the one that sends the day's limit e-mail."""

    before: Decimal
    after: Decimal
    notify: bool


async def spent(engine: AsyncEngine, client_id: int, day: date) -> Decimal:
    """The client's external spend on ``day`` (its local day); 0.0000 when none."""
    async with engine.connect() as connection:
        amount = await connection.scalar(_amount(client_id, day))
    return _money(amount)


async def add(
    engine: AsyncEngine,
    client_id: int,
    day: date,
    amount: Decimal,
    limit: Decimal | None,
    *,
    at: datetime | None = None,
) -> Added:
    """Add ``amount`` (non-negative, at most four places) to the client's spend on
    ``day``; ``notify`` as the module docstring says. ``at`` is the instant stored as
    ``notified_at`` (aware; now by default). ``ValueError`` for an amount the money
    column would not hold exactly."""
    async with engine.begin() as connection:
        return await add_within(connection, client_id, day, amount, limit, at=at)


async def add_within(
    connection: AsyncConnection,
    client_id: int,
    day: date,
    amount: Decimal,
    limit: Decimal | None,
    *,
    at: datetime | None = None,
) -> Added:
    """:func:`add` inside the caller's transaction (which commits or rolls back with it:
    a CDR and its day's addition are written together)."""
    if not _is_money(amount):
        raise ValueError(f"daily usage amount {amount!r} is not non-negative 4-place money")
    notified_at = at if at is not None else datetime.now(UTC)
    name = connection.dialect.name
    upsert = _UPSERT[name]  # the stores refuse other databases before they get here
    params = {"client_id": client_id, "day": day, "amount": amount}
    returning = _UPSERT_RETURNING.get(name)
    if returning is not None and connection.dialect.insert_returning:
        # The total after this addition, from the statement that made it.
        after = _money(await connection.scalar(returning, params))
    else:  # MariaDB returns nothing from an insert that turned into an update
        await connection.execute(upsert, params)
        after = _money(await connection.scalar(_amount(client_id, day).with_for_update()))
    before = after - amount
    notify = False
    if crossed(before, after, limit):
        marked = await connection.execute(
            update(DailyUsage)
            .where(
                DailyUsage.client_id == client_id,
                DailyUsage.day == day,
                DailyUsage.notified_at.is_(None),
            )
            .values(notified_at=notified_at)
        )
        notify = marked.rowcount == 1
    return Added(before=before, after=after, notify=notify)


def _upserts(returning: bool) -> dict[str, TextClause]:
    """The addition of ``amount`` to (``client_id``, ``day``) per dialect (with
    ``returning``, the total after it, where the database can say), as text: the dialects'
    upsert constructs have no cache key, so built from them it was compiled again for
    every batch of CDRs. SQLite keeps NUMERIC as a double: rounding each sum to 4 places
    stores the double nearest the exact total, so float error never builds up over a day
    of additions. On PostgreSQL and MariaDB the sum is exact and the rounding a no-op."""
    row = "INSERT INTO daily_usage (client_id, day, amount) VALUES (:client_id, :day, :amount)"
    conflict = "ON CONFLICT (client_id, day) DO UPDATE"
    added = "SET amount = round(daily_usage.amount + excluded.amount, 4)"
    texts = {name: f"{row} {conflict} {added}" for name in ("postgresql", "sqlite")}
    if returning:
        texts = {name: f"{sql} RETURNING amount" for name, sql in texts.items()}
    else:
        maria = f"{row} ON DUPLICATE KEY UPDATE amount = round(amount + VALUES(amount), 4)"
        texts |= {"mysql": maria, "mariadb": maria}
    params = (
        bindparam("client_id", type_=_TABLE.c.client_id.type),
        bindparam("day", type_=_TABLE.c.day.type),
        bindparam("amount", type_=_TABLE.c.amount.type),
    )
    return {name: text(sql).bindparams(*params) for name, sql in texts.items()}


_UPSERT = _upserts(returning=False)
_UPSERT_RETURNING: dict[str, TextualSelect] = {
    name: clause.columns(_TABLE.c.amount) for name, clause in _upserts(returning=True).items()
}


def _amount(client_id: int, day: date) -> Select[tuple[Decimal]]:
    return select(DailyUsage.amount).where(DailyUsage.client_id == client_id, DailyUsage.day == day)


def _is_money(amount: Decimal) -> bool:
    try:
        return (
            isinstance(amount, Decimal)
            and amount.is_finite()
            and 0 <= amount < _MAX
            and amount.quantize(MONEY_QUANTUM) == amount
        )
    except ArithmeticError:
        return False


def _money(amount: Decimal | None) -> Decimal:
    return (amount or Decimal(0)).quantize(MONEY_QUANTUM)
