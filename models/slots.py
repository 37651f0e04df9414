"""Concurrent-call slots (DESIGN §3.4): a client's external calls counted in the shared
database, so one limit holds across every application server.

A call takes a slot before it is dialled out (or answered, inbound) and releases it at
hang-up. Each slot carries the server that holds it and a lease its :class:`SlotKeeper`
renews; a dead server's slots expire with their lease and the next ``acquire`` of their
client deletes them. A server that restarts calls ``reconcile`` with the channels its
Asterisk still has.

Why ``acquire`` is race-free: it serialises the acquires of one client and makes each
one see what the previous one committed.

* PostgreSQL and MariaDB: the transaction runs at READ COMMITTED, whatever the server
  or engine default, and locks the client's row first (``FOR NO KEY UPDATE`` on
  PostgreSQL, so foreign-key checks of other tables are not blocked; ``FOR UPDATE`` on
  MariaDB). A second acquire waits on that lock until the first commits; its count is a
  new statement, hence a new snapshot that holds the first one's slot. (At REPEATABLE
  READ PostgreSQL would count on the snapshot taken before the wait and miss it.)
* SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock before the count.

A limit of 0 (unlimited) takes no lock but still records the slot: one short write per
call keeps the count true for ``explain`` and for a limit set while calls are up (the
client gets no more calls until it is back under the new limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dialplan.errors import DatabaseUnavailable, NotFound
from models.base import MONEY, UTCDateTime
from models.billing import ActiveCallSlot, DailyUsage
from models.db import driver_row, transact
from models.tenants import Client
from models.vocabulary import CALL_DIRECTIONS

if TYPE_CHECKING:
    from models.slot_stock import SlotStock

log = logging.getLogger("callcontrol.slots")

T = TypeVar("T")

_CHUNK = 500  # call ids per DELETE ... IN (...) of reconcile

_SLOT = ActiveCallSlot
_LOCK_CLIENT = (
    select(Client.id).where(Client.id == bindparam("client_id")).with_for_update(key_share=True)
)
_CLIENT_EXISTS = select(Client.id).where(Client.id == bindparam("client_id"))
_RECLAIM = delete(_SLOT).where(
    _SLOT.client_id == bindparam("client_id"), _SLOT.lease_until <= bindparam("now")
)
_HOLDER = select(_SLOT.client_id).where(_SLOT.call_id == bindparam("call_id"))
_LIVE_NOW = _SLOT.lease_until > bindparam("now")
_TALLY = select(
    func.coalesce(func.sum(case((_LIVE_NOW, 1), else_=0)), 0),
    func.coalesce(func.sum(case((_LIVE_NOW, 0), else_=1)), 0),
    func.coalesce(
        func.max(case((and_(_SLOT.call_id == bindparam("call_id"), _LIVE_NOW), 1), else_=0)), 0
    ),
).where(_SLOT.client_id == bindparam("client_id"))
"""One read of a client's slots: how many are live, how many expired, and whether the
call holds a live one."""
_LIVE = (
    select(func.count())
    .select_from(_SLOT)
    .where(_SLOT.client_id == bindparam("client_id"), _SLOT.lease_until > bindparam("now"))
)
_TAKE = insert(_SLOT)
_ACQUIRE_PG = (
    "SELECT taken, held, reclaimed, funded FROM callcontrol_acquire($1::integer, $2::integer,"
    " $3::varchar, $4::varchar, $5::varchar, $6::timestamp, $7::timestamp, $8::numeric)"
)
"""PostgreSQL: the whole acquire as one statement (a function made by migration 0005),
sent by the driver itself (:func:`models.db.driver_row`)."""
_ADMIT_PG = (
    "SELECT taken, held, reclaimed, spent, balance FROM callcontrol_admit($1::integer,"
    " $2::integer, $3::varchar, $4::varchar, $5::varchar, $6::timestamp, $7::timestamp,"
    " $8::date)"
)
"""PostgreSQL: the acquire and the client's counters in one statement (migration 0005)."""


class _DriverIntegrity(Exception):
    """The driver's integrity error (the same call's slot taken at the same moment)."""


_RESERVE_IN_ONE = text(
    "SELECT callcontrol_reserve(:client_id, :call_id, :amount, :now)"
).bindparams(bindparam("amount", type_=MONEY), bindparam("now", type_=UTCDateTime()))


def _reserved(*also: ColumnElement[bool]) -> ScalarSelect[Any]:
    """What the client's live calls (those matching ``also``) hold of its balance."""
    return (
        select(func.coalesce(func.sum(_SLOT.reserved), 0))
        .where(_SLOT.client_id == bindparam("client_id"), _LIVE_NOW, *also)
        .scalar_subquery()
    )


RESERVED = _reserved()
"""What a client's live calls hold of its balance (parameters ``client_id``, ``now``)."""
SPENT = (
    select(func.coalesce(func.sum(DailyUsage.amount), 0))
    .where(DailyUsage.client_id == bindparam("client_id"), DailyUsage.day == bindparam("day"))
    .scalar_subquery()
    + RESERVED
)
"""A client's spend on ``day``: what ended calls cost, and what running prepaid calls hold
(DESIGN §3.5: they count while they run)."""
LEFT = (
    select(Client.balance - RESERVED).where(Client.id == bindparam("client_id")).scalar_subquery()
)
"""What a new call of the client may spend: its balance less what its live calls hold."""
_COUNTS = select(SPENT, LEFT)
_TALLY_COUNTED = _TALLY.add_columns(
    func.coalesce(func.sum(case((_LIVE_NOW, _SLOT.reserved), else_=0)), 0),
    select(DailyUsage.amount)
    .where(DailyUsage.client_id == bindparam("client_id"), DailyUsage.day == bindparam("day"))
    .scalar_subquery(),
    select(Client.balance).where(Client.id == bindparam("client_id")).scalar_subquery(),
)
"""The tally and, in the same pass, the counters an admission reads (SPENT and LEFT, as
their parts): what the client's live calls hold, the day's amount and the balance."""
_OTHERS_HOLD = select(_reserved(_SLOT.call_id != bindparam("holder")))
_BALANCE_LOCKED = select(Client.balance).where(Client.id == bindparam("client_id"))
_HOLD = (
    update(_SLOT).where(_SLOT.call_id == bindparam("holder")).values(reserved=bindparam("amount"))
)
_NO_DATA_FOUND = "P0002"
_RELEASE = delete(_SLOT).where(_SLOT.call_id == bindparam("call_id"))
_RELEASE_MANY = delete(_SLOT).where(_SLOT.call_id.in_(bindparam("call_ids", expanding=True)))
_RENEW = (
    update(_SLOT).where(_SLOT.server == bindparam("owner")).values(lease_until=bindparam("until"))
)
_OLD_CALLS = select(_SLOT.call_id).where(
    _SLOT.server == bindparam("server"), _SLOT.acquired_at < bindparam("now")
)
_FORGET = delete(_SLOT).where(
    _SLOT.server == bindparam("server"),
    _SLOT.acquired_at < bindparam("now"),
    _SLOT.call_id.in_(bindparam("call_ids", expanding=True)),
)


@dataclass(frozen=True, slots=True)
class SlotVerdict:
    """The answer of :func:`acquire`: whether the call holds a slot, how many live slots
    the client holds after it, and the limit it was held to (0 = unlimited); ``funded``
    False when it was refused because the balance left does not cover its reservation."""

    taken: bool
    held: int
    limit: int
    funded: bool = True
    spent: Decimal | None = None
    """With a ``day`` to :func:`acquire`: the client's spend that day."""
    balance: Decimal | None = None
    """With a ``day`` to :func:`acquire`: the balance less what live calls hold of it."""


async def acquire(
    engine: AsyncEngine,
    *,
    client_id: int,
    max_calls: int,
    call_id: str,
    server: str,
    direction: str,
    now: datetime,
    lease: float,
    reserve: Decimal = Decimal(0),
    day: date | None = None,
) -> SlotVerdict:
    """Take a slot for ``call_id`` if the client's live slots (lease ending after
    ``now``) are fewer than ``max_calls``; with 0, always. With a ``reserve`` (a prepaid
    call's cap), only if the client's balance less what its live calls hold covers it, and
    the slot holds it until released. One transaction, atomic across servers; it also
    deletes the client's expired slots. With a ``day`` the verdict also carries the
    client's spend that day and the balance left, read with the slot (one statement on
    PostgreSQL): what admitting a call needs, in one round trip.

    A call that already holds a slot keeps it (``taken``; nothing changes). Raises
    ``DatabaseUnavailable`` when the database cannot be reached or is not serving,
    ``NotFound`` for an unknown client."""
    if max_calls < 0:
        raise ValueError(f"max_calls must be 0 (unlimited) or more, not {max_calls}")
    if lease <= 0:
        raise ValueError(f"a slot's lease must be positive, not {lease}")
    if direction not in CALL_DIRECTIONS:
        raise ValueError(f"unknown call direction {direction!r}")
    if reserve < 0:
        raise ValueError(f"a reservation cannot be negative, not {reserve}")
    slot = {
        "client_id": client_id,
        "call_id": call_id,
        "server": server,
        "direction": direction,
        "acquired_at": now,
        "lease_until": now + timedelta(seconds=lease),
        "reserved": reserve,
    }

    async def take(connection: AsyncConnection) -> SlotVerdict:
        mine = {"client_id": client_id, "call_id": call_id, "now": now}
        # SQLite's BEGIN IMMEDIATE already serialises; elsewhere the client's row is the
        # lock (and an unknown client is told apart here, not by the insert's key).
        if (
            (max_calls or reserve)
            and connection.dialect.name != "sqlite"
            and (await connection.execute(_LOCK_CLIENT, mine)).first() is None
        ):
            raise NotFound("client", f"#{client_id}")
        if day is None:
            held, expired, holding = (await connection.execute(_TALLY, mine)).one()
            spent = left = None
        else:  # the counters come with the tally (a slot taken now holds nothing of them)
            tally = await connection.execute(_TALLY_COUNTED, {**mine, "day": day})
            held, expired, holding, reserved, today, balance = tally.one()
            spent = Decimal(today or 0) + Decimal(reserved or 0)
            left = Decimal(balance or 0) - Decimal(reserved or 0)
        held = int(held)
        if expired:
            reclaimed = await connection.execute(_RECLAIM, mine)
            log.info("client %d: %d expired call slots reclaimed", client_id, reclaimed.rowcount)
        if holding:
            return SlotVerdict(True, held, max_calls, spent=spent, balance=left)
        if max_calls and held >= max_calls:
            log.debug("call %s: no slot, client %d holds %d", call_id, client_id, held)
            return SlotVerdict(False, held, max_calls, spent=spent, balance=left)
        if reserve:
            funds = await connection.scalar(select(LEFT), mine)
            if funds is None or Decimal(funds) < reserve:
                log.debug("call %s: client %d cannot reserve %s", call_id, client_id, reserve)
                return SlotVerdict(False, held, max_calls, funded=False)
        await connection.execute(_TAKE, slot)
        log.debug("call %s: slot %d of %d taken on %s", call_id, held + 1, max_calls, server)
        return SlotVerdict(True, held + 1, max_calls, spent=spent, balance=left)

    async def counted(connection: AsyncConnection, verdict: SlotVerdict) -> SlotVerdict:
        if day is None:
            return verdict
        params = {"client_id": client_id, "day": day, "now": now}
        spent, balance = (await connection.execute(_COUNTS, params)).one()
        return replace(verdict, spent=Decimal(spent or 0), balance=Decimal(balance or 0))

    async def taken_meanwhile(connection: AsyncConnection) -> SlotVerdict | None:
        if await connection.scalar(_HOLDER, {"call_id": call_id}) is None:
            if await connection.scalar(_CLIENT_EXISTS, {"client_id": client_id}) is None:
                raise NotFound("client", f"#{client_id}")
            return None
        verdict = SlotVerdict(True, await _live(connection, client_id, now), max_calls)
        return await counted(connection, verdict)

    async def take_in_one() -> SlotVerdict:
        head = (client_id, max_calls, call_id, server, direction)
        acquired = now.astimezone(UTC).replace(tzinfo=None)  # stored as naive UTC
        until = acquired + timedelta(seconds=lease)
        try:
            if day is None:
                row = await driver_row(engine, _ACQUIRE_PG, *head, acquired, until, reserve)
                taken, held, reclaimed, funded = row
                spent = balance = None
            else:
                row = await driver_row(engine, _ADMIT_PG, *head, acquired, until, day)
                taken, held, reclaimed, spent, balance = row
                funded = True
        except Exception as exc:  # an outage is DatabaseUnavailable already: no sqlstate
            state = getattr(exc, "sqlstate", None)
            if state == _NO_DATA_FOUND:
                raise NotFound("client", f"#{client_id}") from None
            if isinstance(state, str) and state.startswith("23"):  # integrity
                raise _DriverIntegrity from exc
            raise
        if reclaimed:
            log.info("client %d: %d expired call slots reclaimed", client_id, reclaimed)
        return SlotVerdict(
            bool(taken),
            int(held),
            max_calls,
            bool(funded),
            None if spent is None else Decimal(spent),
            None if balance is None else Decimal(balance),
        )

    if day is not None and reserve:
        raise ValueError("a reservation is taken after the counters are read, not with them")
    try:
        if engine.dialect.name == "postgresql":  # one round trip (migrations 0003, 0005)
            return await take_in_one()
        return await transact(engine, take)
    except (IntegrityError, _DriverIntegrity):
        # The same call acquired at the same moment (unlimited: no lock), or no such client.
        verdict = await transact(engine, taken_meanwhile, write=False)
        if verdict is None:
            raise
        return verdict


@dataclass(frozen=True, slots=True)
class Ahead:
    """Slots :func:`take_ahead` took, and the client's counters read with them."""

    call_ids: tuple[str, ...]
    held: int
    spent: Decimal
    balance: Decimal


SPARE = "~"
"""The first character of a slot taken ahead's name (no Asterisk call id has it)."""


async def take_ahead(
    engine: AsyncEngine,
    *,
    client_id: int,
    max_calls: int,
    server: str,
    wanted: int,
    now: datetime,
    lease: float,
    day: date,
) -> Ahead:
    """Take up to ``wanted`` slots of the client for ``server`` before its calls come
    (:mod:`models.slot_stock`): with a limit, only as many as keep the client's live
    slots at half of it at most. Serialised with every acquire of the client (its row's
    lock; SQLite's write lock), and read with its counters. Raises DatabaseUnavailable,
    NotFound for an unknown client."""
    if wanted < 0 or lease <= 0:
        raise ValueError("a positive lease and a number of slots are needed")

    async def take(connection: AsyncConnection) -> Ahead:
        mine = {"client_id": client_id, "call_id": "", "now": now, "day": day}
        if (
            connection.dialect.name != "sqlite"
            and (await connection.execute(_LOCK_CLIENT, mine)).first() is None
        ):
            raise NotFound("client", f"#{client_id}")
        tally = await connection.execute(_TALLY_COUNTED, mine)
        held, expired, _, reserved, today, balance = tally.one()
        held = int(held)
        if expired:
            await connection.execute(_RECLAIM, mine)
        room = wanted if not max_calls else min(wanted, max_calls // 2 - held)
        names = tuple(f"{SPARE}{uuid.uuid4().hex}" for _ in range(max(room, 0)))
        if names:
            until = now + timedelta(seconds=lease)
            rows = [
                {
                    "client_id": client_id,
                    "call_id": name,
                    "server": server,
                    "direction": "outbound",
                    "acquired_at": now,
                    "lease_until": until,
                    "reserved": Decimal(0),
                }
                for name in names
            ]
            await connection.execute(_TAKE, rows)
        spent = Decimal(today or 0) + Decimal(reserved or 0)
        left = Decimal(balance or 0) - Decimal(reserved or 0)
        return Ahead(names, held + len(names), spent, left)

    return await transact(engine, take)


_RENAME = (
    update(_SLOT)
    .where(_SLOT.call_id == bindparam("spare"), _SLOT.server == bindparam("owner"))
    .values(
        call_id=bindparam("named"),
        direction=bindparam("heading"),
        acquired_at=bindparam("taken_at"),
    )
)


async def rename_slots(
    engine: AsyncEngine, server: str, renames: Collection[tuple[str, tuple[str, str, datetime]]]
) -> int:
    """Name slots taken ahead after the calls that took them: ``(slot, (call id,
    direction, admitted at))``, in one transaction; how many were still there (a slot
    released meanwhile is not). A call id some slot holds already keeps that one: the
    slot taken ahead is then released."""
    rows = [
        {"spare": spare, "owner": server, "named": call_id, "heading": heading, "taken_at": at}
        for spare, (call_id, heading, at) in renames
    ]
    if not rows:
        return 0

    async def rename(connection: AsyncConnection) -> int:
        return (await connection.execute(_RENAME, rows)).rowcount

    try:
        return await transact(engine, rename)
    except IntegrityError:  # one of them already held a slot: one by one, that one freed
        renamed = 0
        for row in rows:
            try:
                renamed += await transact(engine, _renamed_one(row))
            except IntegrityError:
                await release(engine, str(row["spare"]))
        return renamed


def _renamed_one(row: dict[str, Any]) -> Callable[[AsyncConnection], Any]:
    async def rename(connection: AsyncConnection) -> int:
        return (await connection.execute(_RENAME, row)).rowcount

    return rename


async def reserve(
    engine: AsyncEngine, *, client_id: int, call_id: str, amount: Decimal, now: datetime
) -> bool:
    """Make the slot ``call_id`` already holds hold ``amount`` of the client's balance, if
    the balance less what its other live calls hold covers it; False otherwise (the slot
    is left as it was). Serialised with every other reservation of the client by its row's
    lock (one statement on PostgreSQL, migration 0005)."""
    if amount < 0:
        raise ValueError(f"a reservation cannot be negative, not {amount}")
    params = {"client_id": client_id, "call_id": call_id, "amount": amount, "now": now}

    async def in_one(connection: AsyncConnection) -> bool:
        return bool(await connection.scalar(_RESERVE_IN_ONE, params))

    async def hold(connection: AsyncConnection) -> bool:
        query = _BALANCE_LOCKED
        if connection.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE serialises
            query = query.with_for_update()
        balance = await connection.scalar(query, params)
        others = await connection.scalar(_OTHERS_HOLD, {**params, "holder": call_id})
        if balance is None or Decimal(balance) - Decimal(others or 0) < amount:
            return False
        held = await connection.execute(_HOLD, {"holder": call_id, "amount": amount})
        return bool(held.rowcount)

    if engine.dialect.name == "postgresql":
        return await transact(engine, in_one, autocommit=True)
    return await transact(engine, hold)


async def release(engine: AsyncEngine, call_id: str) -> bool:
    """Free the slot of ``call_id``; False when it held none (already released, never
    taken, or reclaimed)."""

    async def free(connection: AsyncConnection) -> bool:
        return bool((await connection.execute(_RELEASE, {"call_id": call_id})).rowcount)

    return await transact(engine, free)


async def release_earlier(engine: AsyncEngine, server: str, call_id: str, before: datetime) -> bool:
    """Free the slot of ``call_id`` only if ``server`` took it before ``before`` (a run of
    the server that has since stopped); False when it held none such."""

    async def free(connection: AsyncConnection) -> bool:
        params = {"server": server, "now": before, "call_ids": [call_id]}
        return bool((await connection.execute(_FORGET, params)).rowcount)

    return await transact(engine, free)


async def release_within(connection: AsyncConnection, call_ids: Collection[str]) -> int:
    """Free the slots of ``call_ids`` inside the caller's transaction (the batched writer
    releases them with the calls' CDRs); how many there were."""
    freed = 0
    ordered = sorted(set(call_ids))  # one order of row locks for every writer
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        freed += (await connection.execute(_RELEASE_MANY, {"call_ids": chunk})).rowcount
    return freed


async def release_many(engine: AsyncEngine, call_ids: Collection[str]) -> int:
    """Free the slots of ``call_ids`` in one transaction; how many there were."""

    async def free(connection: AsyncConnection) -> int:
        return await release_within(connection, call_ids)

    return await transact(engine, free)


async def heartbeat(engine: AsyncEngine, server: str, now: datetime, lease: float) -> int:
    """Extend every slot of ``server`` to ``now + lease``; returns how many it renewed.

    A slot whose lease ran out but that no acquire has reclaimed yet is renewed too: its
    call is still up on this server."""
    if lease <= 0:
        raise ValueError(f"a slot's lease must be positive, not {lease}")
    until = now + timedelta(seconds=lease)

    async def renew(connection: AsyncConnection) -> int:
        result = await connection.execute(_RENEW, {"owner": server, "until": until})
        return result.rowcount

    return await transact(engine, renew)


async def reconcile(
    engine: AsyncEngine, server: str, live_call_ids: Collection[str], now: datetime
) -> int:
    """At ``server``'s (re)start: delete its slots whose call is not in
    ``live_call_ids`` (the calls its Asterisk still has, listed at ``now``) and keep the
    others; returns how many were deleted. Slots acquired from ``now`` on are kept: their
    calls may have started after the list was taken."""
    live = set(live_call_ids)

    async def forget(connection: AsyncConnection) -> int:
        params = {"server": server, "now": now}
        held = (await connection.scalars(_OLD_CALLS, params)).all()
        dead = sorted(call_id for call_id in held if call_id not in live)
        removed = 0
        for start in range(0, len(dead), _CHUNK):
            chunk = dead[start : start + _CHUNK]
            removed += (await connection.execute(_FORGET, {**params, "call_ids": chunk})).rowcount
        return removed

    removed = await transact(engine, forget)
    if removed:
        log.info("server %s: %d slots of calls that are gone removed", server, removed)
    return removed


_FORGET_SPARES = delete(_SLOT).where(
    _SLOT.server == bindparam("server"),
    _SLOT.call_id.startswith(SPARE, autoescape=True),
    _SLOT.acquired_at < bindparam("now"),
)


async def forget_spares(engine: AsyncEngine, server: str, before: datetime) -> int:
    """Free the slots ``server`` took ahead before ``before`` that no call took (an
    earlier run's, left when it stopped); how many there were."""

    async def forget(connection: AsyncConnection) -> int:
        params = {"server": server, "now": before}
        return (await connection.execute(_FORGET_SPARES, params)).rowcount

    freed = await transact(engine, forget)
    if freed:
        log.info("server %s: %d slots an earlier run took ahead freed", server, freed)
    return freed


async def count(engine: AsyncEngine, client_id: int, now: datetime) -> int:
    """The client's live slots at ``now`` (for ``explain``)."""

    async def live(connection: AsyncConnection) -> int:
        return await _live(connection, client_id, now)

    return await transact(engine, live, write=False)


async def _live(connection: AsyncConnection, client_id: int, now: datetime) -> int:
    held = await connection.scalar(_LIVE, {"client_id": client_id, "now": now})
    return int(held or 0)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SlotSettings(Protocol):
    """The settings a :class:`SlotKeeper` reads (``callcontrol.config.Config`` has them)."""

    @property
    def slot_lease(self) -> float: ...

    @property
    def slot_heartbeat(self) -> float: ...


VACUUM_EVERY = 5.0
"""Seconds between two vacuums of the slots table by each keeper, on PostgreSQL. Every
call inserts a row there and deletes it: left to autovacuum (a minute apart at its
default pace, and a server may have it off) the dead rows pile up by the ten thousand,
and each admission, which counts its client's live slots, reads them all (measured:
0.23 ms of the server's CPU per admission on a vacuumed table, 1.2 to 2.4 ms after
20,000 calls)."""


async def vacuum_slots(engine: AsyncEngine) -> None:
    """Vacuum the slots table (PostgreSQL; elsewhere nothing). ``SKIP_LOCKED``: while
    another server's keeper vacuums it, this one does not queue behind it."""
    if engine.dialect.name != "postgresql":
        return

    async def vacuum(connection: AsyncConnection) -> None:
        await connection.exec_driver_sql("VACUUM (SKIP_LOCKED) active_call_slots")

    await transact(engine, vacuum, autocommit=True)  # VACUUM runs in no transaction


class SlotKeeper:
    """Keeps one server's slots alive: renews them every ``slot_heartbeat`` seconds for
    ``slot_lease`` seconds, from ``start()`` to ``stop()``; on PostgreSQL it also vacuums
    their table every :data:`VACUUM_EVERY` seconds.

    Nothing it meets reaches a call: a failed renewal is logged and tried again at the
    next beat. ``release`` never raises for an outage either; the slot is released at a
    later beat (until then the heartbeat renews it with the others). Once stopped, the
    slots it kept expire with their lease."""

    def __init__(
        self,
        engine: AsyncEngine,
        server: str,
        config: SlotSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        stock: SlotStock | None = None,
    ) -> None:
        if config.slot_heartbeat <= 0 or config.slot_lease <= config.slot_heartbeat:
            raise ValueError("slot_heartbeat must be positive and shorter than slot_lease")
        self.engine = engine
        self.stock = stock
        """The slots this server takes ahead for busy clients (:mod:`models.slot_stock`),
        renewed with the others; those left unused are given back at a beat."""
        self.server = server
        self.lease = config.slot_lease
        self.interval = config.slot_heartbeat
        self.clock = clock
        self.unreleased: set[str] = set()
        """Calls whose release met an outage; released at the next beat that can."""
        self.vacuums = 0
        """Vacuums of the slots table done so far."""
        self._task: asyncio.Task[None] | None = None
        self._vacuum: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Renew now, then every ``slot_heartbeat`` seconds (in a task of the running loop).
        Slots an earlier run of this server took ahead and left are given back first."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._run(self.clock()), name=f"slot-keeper-{self.server}"
            )
        if self.engine.dialect.name == "postgresql" and (
            self._vacuum is None or self._vacuum.done()
        ):
            self._vacuum = asyncio.create_task(self._vacuums(), name=f"slot-vacuum-{self.server}")

    async def stop(self) -> None:
        """Stop renewing, giving back the slots taken ahead and left unused; returns once
        the tasks are over."""
        if self.stock is not None:
            await self.release_all(await self.stock.close())
        for task in (self._task, self._vacuum):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._vacuum = None

    def names(self, call_ids: Collection[str]) -> list[str]:
        """The slots to release for ``call_ids``: each call's, and the slot taken ahead it
        took (under whichever name its row has)."""
        return self.stock.names(call_ids) if self.stock is not None else list(call_ids)

    async def release(self, call_id: str) -> bool:
        """:func:`release`, or, while the database is unavailable, later (False now)."""
        names = self.names([call_id])
        if len(names) > 1:
            return await self.release_all(names)
        try:
            return await release(self.engine, call_id)
        except DatabaseUnavailable as exc:
            log.warning("call %s: slot released later, %s", call_id, exc)
            self.unreleased.add(call_id)
            return False

    async def release_all(self, call_ids: Collection[str]) -> bool:
        """Release the slots of ``call_ids`` in one transaction; False (and later) while
        the database is unavailable."""
        call_ids = self.names(call_ids)
        if not call_ids:
            return True
        try:
            await release_many(self.engine, call_ids)
        except DatabaseUnavailable as exc:
            log.warning("%d call slots released later, %s", len(call_ids), exc)
            self.later(call_ids)
            return False
        return True

    def later(self, call_ids: Collection[str]) -> None:
        """Slots an outage kept from being released: the next beat that can releases them."""
        self.unreleased.update(call_ids)

    async def beat(self) -> int:
        """Renew this server's slots, then release those an outage held back; returns
        how many were renewed. Raises ``DatabaseUnavailable``."""
        # Renewal first: a release that keeps failing must not let the live calls expire.
        renewed = await heartbeat(self.engine, self.server, self.clock(), self.lease)
        unused = self.stock.unused() if self.stock is not None else []
        if unused:
            try:
                await release_many(self.engine, unused)
            except DatabaseUnavailable:
                self.unreleased.update(unused)
                raise
        held_back = sorted(self.unreleased)
        if held_back:
            await release_many(self.engine, held_back)
            self.unreleased.difference_update(held_back)
            log.info("%d call slots released after the outage", len(held_back))
        return renewed

    async def _run(self, started: datetime) -> None:
        if self.stock is not None:
            try:
                # The calls that took slots from the stock carry their names first; the
                # unused ones are freed with an earlier run's.
                await self.stock.flush()
                self.stock.unused(everything=True)
                await forget_spares(self.engine, self.server, started)
            except DatabaseUnavailable as exc:  # they expire with their lease instead
                log.warning("server %s: earlier slots taken ahead not freed: %s", self.server, exc)
        while True:
            try:
                async with asyncio.timeout(self.interval):
                    await self.beat()
            except DatabaseUnavailable as exc:
                log.warning("server %s: call slots not renewed: %s", self.server, exc)
            except TimeoutError:
                log.warning(
                    "server %s: call slots not renewed within %ss", self.server, self.interval
                )
            except Exception:
                # Stopping would let every slot of this server expire while its calls
                # go on: log the fault and try again at the next beat.
                log.exception("server %s: call slots not renewed", self.server)
            await asyncio.sleep(self.interval)

    async def _vacuums(self) -> None:
        while True:
            await asyncio.sleep(VACUUM_EVERY)
            try:
                async with asyncio.timeout(VACUUM_EVERY):
                    await vacuum_slots(self.engine)
                self.vacuums += 1
            except (DatabaseUnavailable, TimeoutError) as exc:
                log.info("call slots not vacuumed: %s", exc or "no answer in time")
            except Exception:  # a fault here must not stop the vacuums, nor reach a call
                log.exception("call slots not vacuumed")
