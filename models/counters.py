"""Every client's live counters, as the whole platform sees them in the shared database:
concurrent external calls against ``max_calls`` (live slots of every server) and today's
spend, in the client's own timezone, against ``max_daily_usage``; with the balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.daily import MONEY_QUANTUM, spend_day
from models.billing import ActiveCallSlot, DailyUsage
from models.slots import SPARE
from models.tenants import Client


@dataclass(frozen=True, slots=True)
class Counters:
    client: str
    calls: int
    max_calls: int
    """0 means unlimited."""
    day: date
    """The client's local day the spend is of."""
    spent: Decimal
    max_daily_usage: Decimal | None
    billing_method: str
    balance: Decimal
    currency: str

    def shown(self, prices: bool) -> dict[str, Any]:
        """These counters as JSON (what ``GET /api/counters`` answers): the money (today's
        spend, the daily limit, the balance of a prepaid client) only with ``prices``."""
        shown: dict[str, Any] = {
            "client": self.client,
            "calls": self.calls,
            "max_calls": self.max_calls,
            "day": self.day.isoformat(),
        }
        if prices:
            limit = self.max_daily_usage
            prepaid = self.billing_method in ("prepaid", "pseudoprepaid")
            shown |= {
                "spent_today": str(self.spent),
                "daily_limit": None if limit is None else str(limit),
                "balance": str(self.balance) if prepaid else None,
                "currency": self.currency,
            }
        return shown


async def client_counters(
    engine: AsyncEngine, client: str | None = None, now: datetime | None = None
) -> list[Counters]:
    """The counters of every client (or of ``client``), by name."""
    at = now or datetime.now(UTC)
    clients = select(
        Client.id,
        Client.name,
        Client.max_calls,
        Client.max_daily_usage,
        Client.timezone,
        Client.billing_method,
        Client.balance,
        Client.currency,
    ).order_by(Client.name)
    slots = (
        select(ActiveCallSlot.client_id, func.count())
        .where(ActiveCallSlot.lease_until > at)
        # Slots a server took ahead and no call uses yet (models.slot_stock) are not calls.
        .where(~ActiveCallSlot.call_id.startswith(SPARE, autoescape=True))
        .group_by(ActiveCallSlot.client_id)
    )
    # Every timezone's today is within a day of UTC's.
    utc_today = at.date()
    spends = select(DailyUsage.client_id, DailyUsage.day, DailyUsage.amount).where(
        DailyUsage.day.between(utc_today - timedelta(days=1), utc_today + timedelta(days=1))
    )
    if client is not None:
        clients = clients.where(Client.name == client)
        slots = slots.join(Client, Client.id == ActiveCallSlot.client_id).where(
            Client.name == client
        )
        spends = spends.join(Client, Client.id == DailyUsage.client_id).where(Client.name == client)
    async with engine.connect() as connection:
        rows = (await connection.execute(clients)).all()
        live = {row[0]: int(row[1]) for row in await connection.execute(slots)}
        spent = {(row[0], row[1]): Decimal(row[2]) for row in await connection.execute(spends)}
    found = []
    for row in rows:
        day = spend_day(at, row.timezone)  # a broken zone: its spend's UTC day
        found.append(
            Counters(
                client=row.name,
                calls=live.get(row.id, 0),
                max_calls=row.max_calls,
                day=day,
                spent=spent.get((row.id, day), Decimal(0)).quantize(MONEY_QUANTUM),
                max_daily_usage=row.max_daily_usage,
                billing_method=row.billing_method,
                balance=Decimal(row.balance).quantize(MONEY_QUANTUM),
                currency=row.currency,
            )
        )
    return found
