"""The pipeline's Directory over the shared database: the configuration from the snapshot in
memory (``models.snapshot``), the live counters (live slots, the day's spend, the balance)
from the database, a client's three in one read per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Generic, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dialplan.daily import spend_day
from dialplan.errors import DatabaseUnavailable
from dialplan.snapshot import SnapshotDirectory
from dialplan.views import ClientView, TerminalView
from models.billing import ActiveCallSlot
from models.db import is_unavailable, sqlite_row, unavailable
from models.slot_stock import SlotStock
from models.slots import LEFT, SPENT, SlotVerdict, acquire
from models.snapshot import CLIENT_COLUMNS, Snapshots, client_view, with_client
from models.tenants import Client, ClientGeoipCountry

__all__ = ["SqlCounters", "SqlDirectory", "TerminalView", "Ticket", "geoip_clients"]

_CLIENT = with_client(select(*CLIENT_COLUMNS)).where(Client.id == bindparam("client_id"))

_ACTIVE = (
    select(func.count())
    .select_from(ActiveCallSlot)
    .where(ActiveCallSlot.client_id == bindparam("client_id"))
    .where(ActiveCallSlot.lease_until > bindparam("now"))
)
_SPENT = select(SPENT)
_BALANCE = select(LEFT)
_COUNTERS = select(
    _ACTIVE.scalar_subquery().label("active"),
    SPENT.label("spent"),
    LEFT.label("balance"),
)
"""A client's three guard counters (live slots, the day's spend, the balance) in one read."""


@dataclass(slots=True)
class Ticket:
    """A call the service is deciding: its slot is taken with the first read of its client's
    counters, in the same statement (what the pipeline reads comes back with the slot), so
    admitting an external call costs one round trip. ``explain`` decides without one."""

    call_id: str
    server: str
    lease: float
    direction: str
    attempted: bool = False
    verdict: SlotVerdict | None = None
    stock: SlotStock | None = None
    """The server's slots taken ahead: the slot comes from there when it can."""

    @property
    def holds(self) -> bool:
        """Whether the call may hold a slot now (one cut short by an outage may have been
        committed): release it when the call ends."""
        return self.attempted and (self.verdict is None or self.verdict.taken)


@dataclass(frozen=True, slots=True)
class _Counters:
    now: datetime
    day: date
    active: int
    spent: Decimal
    balance: Decimal


T = TypeVar("T")


class _Set(Generic[T]):
    """A context variable set to a value inside a ``with`` or ``async with`` block, and
    reset after it. Two of these open around every call: a class, not a generator, so
    each costs a few attribute sets rather than a generator's frames."""

    __slots__ = ("_token", "_value", "_variable")

    def __init__(self, variable: ContextVar[T], value: T) -> None:
        self._variable, self._value = variable, value

    def __enter__(self) -> None:
        self._token = self._variable.set(self._value)

    def __exit__(self, *exc: object) -> None:
        self._variable.reset(self._token)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


class SqlCounters:
    """:class:`dialplan.snapshot.Counters` read from the shared database.

    The statements are built once, at import, so executing one costs no SQL compilation
    or cache-key work.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._counted: ContextVar[dict[int, _Counters] | None] = ContextVar(
            f"counters-read-{id(self)}", default=None
        )
        self._ticket: ContextVar[Ticket | None] = ContextVar(
            f"counters-ticket-{id(self)}", default=None
        )

    def admitting(self, ticket: Ticket) -> AbstractContextManager[None]:
        """Decide a call with ``ticket``: its client's counters are read by taking its slot."""
        return _Set(self._ticket, ticket)

    def scope(self) -> AbstractAsyncContextManager[None]:
        """Around one call: a client's guard counters are read once, in one statement. No
        connection is held between reads (the configuration is in memory), so a call
        that reads no counter costs the database nothing."""
        return _Set(self._counted, {})

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for one read; on PostgreSQL outside a transaction (no BEGIN
        and ROLLBACK around it). An outage (no connection, a locked or unreachable
        database) is DatabaseUnavailable."""
        try:
            async with self.engine.connect() as connection:
                if self.engine.dialect.name == "postgresql":
                    connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                yield connection
        except Exception as exc:  # drivers raise their own classes; only outages convert
            if isinstance(exc, DatabaseUnavailable) or not is_unavailable(exc):
                raise
            raise unavailable(self.engine, exc) from exc

    async def _counters(
        self, client: ClientView, now: datetime | None, day: date | None
    ) -> _Counters | None:
        """Inside a scope: the client's three counters, read once (live slots at ``now``,
        the spend of ``day``, by default its local day at ``now``); None outside one. A
        later question about another instant or day is answered afresh."""
        counted = self._counted.get()
        if counted is None:
            return None
        known = counted.get(client.id)
        if (
            known is not None
            and (now is None or known.now == now)
            and (day is None or known.day == day)
        ):
            return known
        if now is None:
            now = known.now if known is not None else datetime.now(UTC)
        if day is None:
            day = spend_day(now, client.timezone)
        ticket = self._ticket.get()
        if ticket is not None and not ticket.attempted:
            counters = self._from_stock(ticket, client, now, day) or await self._admit(
                ticket, client, now, day
            )
        else:
            params = {"client_id": client.id, "now": now, "day": day}
            if self.engine.dialect.name == "sqlite":  # one trip to the driver's thread
                active, spent, balance = await sqlite_row(self.engine, _COUNTERS, params)
            else:
                async with self._connect() as connection:
                    active, spent, balance = (await connection.execute(_COUNTERS, params)).one()
            counters = _Counters(now, day, int(active or 0), _money(spent), _money(balance))
        counted[client.id] = counters
        return counters

    @staticmethod
    def _from_stock(
        ticket: Ticket, client: ClientView, now: datetime, day: date
    ) -> _Counters | None:
        """The call's slot from the slots its server took ahead, with the counters read
        with them; None when there is none to take (:mod:`models.slot_stock`)."""
        if ticket.stock is None:
            return None
        verdict = ticket.stock.take(client, ticket.call_id, ticket.direction, now, day)
        if verdict is None:
            return None
        ticket.attempted, ticket.verdict = True, verdict
        spent, balance = verdict.spent or Decimal(0), verdict.balance or Decimal(0)
        return _Counters(now, day, max(verdict.held - 1, 0), _money(spent), _money(balance))

    async def _admit(
        self, ticket: Ticket, client: ClientView, now: datetime, day: date
    ) -> _Counters:
        ticket.attempted = True
        verdict = await acquire(
            self.engine,
            client_id=client.id,
            max_calls=client.max_calls,
            call_id=ticket.call_id,
            server=ticket.server,
            direction=ticket.direction,
            now=now,
            lease=ticket.lease,
            day=day,
        )
        ticket.verdict = verdict
        if ticket.stock is not None:
            ticket.stock.note(client, verdict, day)
        # The others' calls: the pipeline refuses this one when they fill the limit.
        others = verdict.held - 1 if verdict.taken else verdict.held
        return _Counters(now, day, others, _money(verdict.spent), _money(verdict.balance))

    async def balance(self, client: ClientView) -> Decimal:
        counters = await self._counters(client, None, None)
        if counters is not None:
            return counters.balance
        async with self._connect() as connection:
            params = {"client_id": client.id, "now": datetime.now(UTC)}
            balance = (await connection.execute(_BALANCE, params)).scalar()
        return _money(balance)

    async def active_calls(self, client: ClientView, now: datetime) -> int:
        counters = await self._counters(client, now, None)
        if counters is not None:
            return counters.active
        async with self._connect() as connection:
            found = await connection.scalar(_ACTIVE, {"client_id": client.id, "now": now})
        return int(found or 0)

    async def spent(self, client: ClientView, day: date) -> Decimal:
        counters = await self._counters(client, None, day)
        if counters is not None:
            return counters.spent
        async with self._connect() as connection:
            params = {"client_id": client.id, "day": day, "now": datetime.now(UTC)}
            found = await connection.scalar(_SPENT, params)
        return _money(found)


_CENT = Decimal("0.0001")


def _money(value: object) -> Decimal:
    """An amount at the money columns' scale, whatever the backend returned (PostgreSQL's
    ``COALESCE(SUM(...), 0)`` is a bare ``0``; MariaDB and SQLite say ``0.0000``)."""
    if isinstance(value, Decimal):
        return value.quantize(_CENT)
    return Decimal(str(value) if value is not None else 0).quantize(_CENT)


class SqlDirectory(SnapshotDirectory):
    """:class:`dialplan.directory.Directory` over an engine of the shared database: the
    configuration from ``snapshots`` (loaded at first use; the service's watcher reloads it
    on change), the counters read live."""

    def __init__(self, engine: AsyncEngine, snapshots: Snapshots | None = None) -> None:
        self.engine = engine
        self.snapshots = snapshots if snapshots is not None else Snapshots(engine)
        super().__init__(self.snapshots, SqlCounters(engine))

    async def client(self, client_id: int) -> ClientView | None:
        """The client with this id, read afresh (the shell's lookup, e.g. for an e-mail)."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(_CLIENT, {"client_id": client_id})).first()
        return None if row is None else client_view(row)


async def geoip_clients(engine: AsyncEngine) -> list[str]:
    """Names of the clients whose source filter allows calls by country (GeoIP)."""
    query = (
        select(Client.name)
        .where(Client.filter_by_ip.is_(True))
        .where(
            select(ClientGeoipCountry.country)
            .where(ClientGeoipCountry.client_id == Client.id)
            .exists()
        )
        .order_by(Client.name)
    )
    async with engine.connect() as connection:
        return [str(name) for name in (await connection.scalars(query)).all()]
