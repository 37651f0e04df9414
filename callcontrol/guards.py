"""The shell's side of the fraud and capacity guards (DESIGN §3.4, §3.5): taking and
releasing concurrent-call slots in the shared database, adding a call's cost to its
client's day, and the e-mail of a daily limit crossed.

The pipeline only reads (so ``explain`` has no side effects); these write, atomically,
where every application server sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.mailer import Mailer, MailError, render
from dialplan.daily import local_day
from dialplan.views import ClientView
from models.daily_usage import add
from models.slots import SlotKeeper, SlotVerdict, acquire
from models.templates import find_template

log = logging.getLogger("callcontrol.guards")


@dataclass(frozen=True, slots=True)
class Guards:
    """What a server needs to enforce max calls and daily usage."""

    engine: AsyncEngine
    server: str
    lease: float
    keeper: SlotKeeper | None = None
    mailer: Mailer | None = None

    async def take_slot(self, client: ClientView, call_id: str, direction: str) -> SlotVerdict:
        """A slot for ``call_id`` (raises DatabaseUnavailable in an outage)."""
        return await acquire(
            self.engine,
            client_id=client.id,
            max_calls=client.max_calls,
            call_id=call_id,
            server=self.server,
            direction=direction,
            now=datetime.now(UTC),
            lease=self.lease,
        )

    async def release_slot(self, call_id: str) -> None:
        if self.keeper is not None:
            await self.keeper.release(call_id)

    async def spend(self, client: ClientView, amount: Decimal, at: datetime) -> None:
        """Add an ended call's cost to the client's local day; e-mail a crossing once."""
        if client.max_daily_usage is None or amount <= 0:
            return
        day = local_day(at, client.timezone)
        try:
            added = await add(self.engine, client.id, day, amount, client.max_daily_usage)
        except Exception as exc:  # the call is over; only the day's total is late
            log.error("client %s: daily usage not updated (%s): %s", client.name, amount, exc)
            return
        if added.notify:
            log.info("client %s: daily limit %s crossed", client.name, client.max_daily_usage)
            await self._notify(client, added.after, day.isoformat())

    async def _notify(self, client: ClientView, spent: Decimal, day: str) -> None:
        if self.mailer is None or not client.max_daily_usage_email:
            return
        try:
            text = await find_template(self.engine, client.id, "max_daily_usage", client.language)
            if text is None:
                log.warning("client %s: no max_daily_usage template", client.name)
                return
            values = {
                "client": client.name,
                "limit": str(client.max_daily_usage),
                "amount": str(spent),
                "spent": str(spent),
                "currency": client.currency,
                "day": day,
                "timezone": client.timezone,
            }
            self.mailer.submit(render(text, values, to=[client.max_daily_usage_email]))
        except MailError as exc:
            log.warning("client %s: daily limit e-mail not sent: %s", client.name, exc)
        except Exception as exc:  # a database error: the e-mail is lost, not the call
            log.error("client %s: daily limit e-mail not prepared: %s", client.name, exc)
