"""The shell's side of the fraud and capacity guards (DESIGN §3.4, §3.5): taking and
releasing concurrent-call slots in the shared database, adding a call's cost to its
client's day, and the e-mails of a daily limit crossed and of a balance run low.

The pipeline only reads (so ``explain`` has no side effects); these write, atomically,
where every application server sees them. A call's cost is added to its day by the CDR
store, in the CDR's own transaction, so a CDR spooled through an outage counts when it is
written; the store then hands the crossing, if any, to :meth:`Guards.crossed`, which
queues the e-mail with the mailer (rendered and sent in the background).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.mailer import Mailer
from dialplan.views import ClientView
from models.cdrs import BalanceCrossing, Crossing, Crossings
from models.directory import SqlDirectory
from models.slots import SlotKeeper, SlotVerdict, acquire, release, reserve
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

    async def take_slot(
        self,
        client: ClientView,
        call_id: str,
        direction: str,
        reserve: Decimal = Decimal(0),
        *,
        limited: bool = True,
    ) -> SlotVerdict:
        """A slot for ``call_id``, holding ``reserve`` of the balance; not ``limited``
        (an emergency call), whatever the client's max calls. Raises DatabaseUnavailable
        in an outage."""
        return await acquire(
            self.engine,
            client_id=client.id,
            max_calls=client.max_calls if limited else 0,
            call_id=call_id,
            server=self.server,
            direction=direction,
            now=datetime.now(UTC),
            lease=self.lease,
            reserve=reserve,
        )

    async def release(self, call_id: str) -> None:
        """Free the slot of ``call_id`` now (through the keeper, which retries it later in
        an outage)."""
        if self.keeper is not None:
            await self.keeper.release(call_id)
        else:
            await release(self.engine, call_id)

    async def hold(self, client: ClientView, call_id: str, amount: Decimal) -> bool:
        """Make the slot ``call_id`` holds hold ``amount`` of the balance; False when what
        is left does not cover it (raises DatabaseUnavailable in an outage)."""
        return await reserve(
            self.engine, client_id=client.id, call_id=call_id, amount=amount, now=datetime.now(UTC)
        )

    async def crossed(self, crossing: Crossings) -> None:
        """A written CDR reached its client's daily limit, or took its balance below the
        low-balance threshold: send that e-mail.

        The CDR store calls this (``on_crossing``) once the CDR, its debit and its
        addition to the day are committed, at hang-up or when a spooled CDR is replayed."""
        if isinstance(crossing, BalanceCrossing):
            await self._low_balance(crossing)
            return
        await self._daily_limit(crossing)

    async def _low_balance(self, crossing: BalanceCrossing) -> None:
        client = await SqlDirectory(self.engine).client(crossing.client_id)
        if client is None:
            return
        log.info(
            "client %s: balance %s below %s", client.name, crossing.balance, crossing.threshold
        )
        if not client.low_balance_email:
            return
        values = {
            "client": client.name,
            "balance": str(crossing.balance),
            "threshold": str(crossing.threshold),
            "currency": client.currency,
        }
        await self._send(client, "low_balance", values, client.low_balance_email, "low balance")

    async def _daily_limit(self, crossing: Crossing) -> None:
        client = await SqlDirectory(self.engine).client(crossing.client_id)
        if client is None or client.max_daily_usage is None:
            return
        log.info("client %s: daily limit %s crossed", client.name, client.max_daily_usage)
        await self._notify(client, crossing.spent, crossing.day.isoformat())

    async def _notify(self, client: ClientView, spent: Decimal, day: str) -> None:
        if not client.max_daily_usage_email:
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
        await self._send(
            client, "max_daily_usage", values, client.max_daily_usage_email, "daily limit"
        )

    async def _send(
        self, client: ClientView, kind: str, values: dict[str, str], to: str, what: str
    ) -> None:
        """Queue the client's ``kind`` e-mail (its template found as DESIGN §3.10 says)."""
        if self.mailer is None:
            return
        try:
            text = await find_template(self.engine, client.id, kind, client.language)
            if text is None:
                log.warning("client %s: no %s template", client.name, kind)
                return
            # Rendered and sent by the mailer's own task: a slow template (at most its
            # limits) holds neither this hang-up's writer batch nor the event loop.
            self.mailer.notify(text, values, to=[to], about=f"client {client.name}: {what} e-mail")
        except Exception as exc:  # a database error: the e-mail is lost, not the call
            log.error("client %s: %s e-mail not prepared: %s", client.name, what, exc)
