"""CDRs (billable calls): each written exactly once, and none lost to a database outage.

``CdrStore.write`` inserts a CDR keyed by its call id, and ``write_batch`` many at once
with the release of their calls' slots, in one transaction; a call id the table already
holds is skipped (looked up first; a concurrent writer's insert of the same id fails on
the unique key and the transaction is run again), so writing a CDR again is a no-op and
its debit and daily addition happen once. When the database cannot be reached, the CDR
goes to a spool folder instead (JSON lines, fsynced) and the call carries on; ``flush``
replays the spool later. Because the insert is idempotent, a replay interrupted
anywhere (a crash, a second outage) is simply replayed again.

Spool layout: a process holds ``<owner>.lock`` (``flock``) while it lives and appends
to its newest segment ``<owner>.<n>.jsonl``. Flushing replays sealed segments: this
process's own and those of any owner that holds no lock (a previous run); once they
are all written it seals the newest one (new CDRs go to a new one) and replays it
too. A replayed segment is removed, or atomically rewritten with the lines not yet
written. Lines the database refuses (or that are not CDRs) are moved to
``rejected.cdrs`` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import operator
import os
import secrets
import sys
import threading
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import String, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from dialplan.daily import local_day
from dialplan.errors import ConfigError, NotFound, shown
from dialplan.text import unprintable
from models.billing import BillableCall
from models.daily_usage import add_within
from models.db import first_line, is_unavailable, transact
from models.files import atomic_bytes, sync_folder
from models.slots import release_within
from models.tenants import Client
from models.vocabulary import CALL_DIRECTIONS

log = logging.getLogger("callcontrol.cdrs")

SEGMENT_SUFFIX = ".jsonl"
LOCK_SUFFIX = ".lock"
REJECTED_FILE = "rejected.cdrs"
_BATCH = 200
_TABLE = BillableCall.__table__
_DATETIMES = ("start_time", "answer_time", "end_time")
_KINDS: dict[str, type] = {
    "client_id": int,
    "duration": int,
    "billed_seconds": int,
    "price": Decimal,
    "emergency": bool,
    **dict.fromkeys(_DATETIMES, datetime),
}
_OPTIONAL = frozenset(
    {
        "ddi",
        "answer_time",
        "price",
        "currency",
        "rating_plan",
        "matched_prefix",
        "outcome_reason",
        "server",
    }
)
_MONEY_STEP = Decimal("0.0001")


@dataclass(frozen=True, slots=True, kw_only=True)
class Cdr:
    """One external call's billing record, valid for the ``billable_calls`` table.

    Construction checks types, lengths, aware datetimes and a price the money column
    holds exactly, so a CDR the database would refuse fails here, not at hang-up.
    """

    call_id: str
    client_id: int
    caller: str
    callee: str
    direction: str
    ddi: str | None = None
    start_time: datetime
    answer_time: datetime | None = None
    end_time: datetime
    duration: int = 0
    billed_seconds: int = 0
    price: Decimal | None = None
    currency: str | None = None
    rating_plan: str | None = None
    matched_prefix: str | None = None
    hangup_cause: str
    outcome_reason: str | None = None
    server: str | None = None
    emergency: bool = False
    """A call to an emergency number: no guard judged it, and it is not priced."""

    def __post_init__(self) -> None:
        if not _plainly_valid(self):
            self._check_fields()
        if self.direction not in CALL_DIRECTIONS:
            raise ValueError(f"CDR {shown(self.call_id)}: unknown direction {self.direction!r}")
        if self.duration < 0 or self.billed_seconds < 0:
            raise ValueError(f"CDR {shown(self.call_id)}: negative duration")
        if self.price is not None and not _is_money(self.price):
            raise ValueError(f"CDR {shown(self.call_id)}: price {self.price} is not 4-place money")

    def _check_fields(self) -> None:
        """Each field's type, length and characters, one by one: ``ValueError`` names the
        first that the table would refuse."""
        for name, optional, longest in _TEXTS:
            text = getattr(self, name)
            if text is None and optional:
                continue
            if not isinstance(text, str):
                raise ValueError(f"CDR {shown(self.call_id)}: {name} must be str")
            if longest is not None and len(text) > longest:
                raise ValueError(f"CDR {shown(self.call_id)}: {name} is longer than allowed")
            if unprintable(text) is not None:
                # PostgreSQL refuses a NUL in text; no log line should carry one either
                raise ValueError(f"CDR {shown(self.call_id)}: {name} holds a control character")
        for name, kind, optional in _VALUES:
            value = getattr(self, name)
            if value is None and optional:
                continue
            if type(value) is not kind and (
                not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
            ):
                raise ValueError(f"CDR {shown(self.call_id)}: {name} must be {kind.__name__}")
            if isinstance(value, datetime) and value.utcoffset() is None:
                raise ValueError(f"CDR {shown(self.call_id)}: {name} has no time zone")

    def to_json(self) -> str:
        """One line of JSON: Decimal as a string, datetimes ISO 8601 with their offset."""
        return json.dumps({name: _plain(getattr(self, name)) for name in CDR_FIELDS})

    @classmethod
    def from_json(cls, text: str | bytes) -> Cdr:
        """The CDR of a :meth:`to_json` line; ``ValueError`` for anything else."""
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.keys() not in _SPOOLED_KEYS:
                raise ValueError("not an object with exactly the CDR fields")
            values = dict(document)
            for name in _DATETIMES:
                if values[name] is not None:
                    values[name] = datetime.fromisoformat(values[name])
            if values["price"] is not None:
                if not isinstance(values["price"], str):
                    raise ValueError("price must be a string")
                values["price"] = Decimal(values["price"])
            return cls(**values)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"not a CDR: {exc}") from exc

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CDR_FIELDS}


CDR_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(Cdr))


def _length(column_type: object) -> int | None:
    return (column_type.length or 0) if isinstance(column_type, String) else None


_TEXTS: tuple[tuple[str, bool, int | None], ...] = tuple(
    (name, name in _OPTIONAL, _length(_TABLE.c[name].type))
    for name in CDR_FIELDS
    if name not in _KINDS
)
"""Each text field's name, whether it may be None and its column's length: what a CDR's
text is checked against, worked out once."""
_VALUES: tuple[tuple[str, type, bool], ...] = tuple(
    (name, _KINDS[name], name in _OPTIONAL) for name in CDR_FIELDS if name in _KINDS
)
"""Each other field's name, type and whether it may be None."""
_TEXT_VALUES = operator.attrgetter(*(name for name, _, _ in _TEXTS))
_REQUIRED_TEXTS = operator.attrgetter(*(name for name, optional, _ in _TEXTS if not optional))
_TEXT_LIMITS = tuple(sys.maxsize if longest is None else longest for _, _, longest in _TEXTS)
_OTHER_VALUES = operator.attrgetter(*(name for name, _, _ in _VALUES))
_OTHER_TYPES = tuple(
    frozenset({kind, type(None)} if optional else {kind}) for _, kind, optional in _VALUES
)
_DATETIME_VALUES = operator.attrgetter(*_DATETIMES)
_PRESENT = functools.partial(operator.is_not, None)


def _plainly_valid(cdr: Cdr) -> bool:
    """Whether every field is plainly what the table holds, checked in a few passes of C
    over all of them (a CDR is built at every hang-up): each text a ``str`` within its
    length, all of them printable ASCII, each other value of exactly its type, each
    date aware. False sends the CDR through the checks one field at a time, which say
    what is wrong, or let it pass (a name in another script, a subclass of ``int``)."""
    texts = _TEXT_VALUES(cdr)
    try:
        joined = "".join(filter(_PRESENT, texts))
    except TypeError:  # a value that is not text
        return False
    return (
        joined.isascii()
        and joined.isprintable()
        and None not in _REQUIRED_TEXTS(cdr)
        and all(map(operator.le, map(operator.length_hint, texts), _TEXT_LIMITS))
        and all(map(frozenset.__contains__, _OTHER_TYPES, map(type, _OTHER_VALUES(cdr))))
        and all(
            moment is None or moment.utcoffset() is not None for moment in _DATETIME_VALUES(cdr)
        )
    )


_CDR_VALUES = operator.attrgetter(*CDR_FIELDS)
_DATETIME_COLUMNS = tuple(CDR_FIELDS.index(name) for name in _DATETIMES)
_SPOOLED_KEYS = (set(CDR_FIELDS), set(CDR_FIELDS) - {"emergency"})
"""The keys of a spooled CDR: a line spooled before ``emergency`` existed lacks it."""


def _is_money(price: Decimal) -> bool:
    try:
        return price.is_finite() and abs(price) < 10**14 and price.quantize(_MONEY_STEP) == price
    except ArithmeticError:
        return False


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class Stored(StrEnum):
    """Where :meth:`CdrStore.write` put a CDR."""

    DATABASE = "database"
    SPOOL = "spool"
    LOG = "log"
    """Neither the database nor the spool folder took it: its JSON is in the error log."""


@dataclass(frozen=True, slots=True)
class FlushReport:
    """One flush: CDRs written to the database, moved to the rejected file, still spooled."""

    written: int = 0
    rejected: int = 0
    remaining: int = 0


_DIALECTS = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})
_PLAIN_INSERT = insert(BillableCall)
_PG_TYPES = {
    "client_id": "integer",
    "start_time": "timestamp",
    "answer_time": "timestamp",
    "end_time": "timestamp",
    "duration": "integer",
    "billed_seconds": "integer",
    "price": "numeric",
    "emergency": "boolean",
}
_INSERT_NEW_PG = (
    f"INSERT INTO billable_calls ({', '.join(CDR_FIELDS)}) SELECT * FROM unnest("
    + ", ".join(
        f"${number}::{_PG_TYPES.get(name, 'varchar')}[]"
        for number, name in enumerate(CDR_FIELDS, 1)
    )
    + ") ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
)
"""PostgreSQL: the CDRs not written yet inserted, their call ids returned, in one
statement of one array per column: the same SQL for every batch, so nothing is compiled
or rendered per row (the dialect's ``ON CONFLICT`` insert has no cache key, and compiling
and rendering it cost more than all the rest of a batch's Python)."""
_INSERT_NEW: dict[str, Executable] = {
    "sqlite": sqlite.insert(BillableCall)
    .on_conflict_do_nothing(index_elements=["call_id"])
    .returning(BillableCall.call_id),
}
"""Insert the CDRs not written yet and return their call ids (PostgreSQL, SQLite)."""
_KNOWN = select(BillableCall.call_id).where(
    BillableCall.call_id.in_(bindparam("call_ids", expanding=True))
)
_DEBIT = (
    update(Client)
    .where(Client.id == bindparam("client_id"))
    .where(Client.billing_method.in_(("prepaid", "pseudoprepaid")))
    .values(balance=Client.balance - bindparam("amount"))
)


_LOW_BALANCES = select(Client.id, Client.balance, Client.low_balance_threshold).where(
    Client.id.in_(bindparam("ids", expanding=True)),
    Client.low_balance_threshold.is_not(None),
    Client.billing_method.in_(("prepaid", "pseudoprepaid")),
)
"""The balances just debited, of the clients that want to hear when one runs low."""

_DAILY_LIMITS = select(Client.id, Client.timezone, Client.max_daily_usage).where(
    Client.id.in_(bindparam("ids", expanding=True))
)


@dataclass(frozen=True, slots=True)
class Crossing:
    """A written CDR whose price took its client's local day to the daily limit: the
    day's e-mail is due. At most one per client and local day (see models.daily_usage)."""

    client_id: int
    day: date
    spent: Decimal
    call_id: str


@dataclass(frozen=True, slots=True)
class BalanceCrossing:
    """A written CDR whose debit took its client's balance from its low-balance threshold
    or above to below it: the ``low_balance`` e-mail is due. Once per crossing: a later
    debit starts below the threshold, so only a top-up back to it or above arms it again.
    """

    client_id: int
    balance: Decimal
    threshold: Decimal
    call_id: str


Crossings = Crossing | BalanceCrossing
OnCrossing = Callable[[Crossings], Awaitable[None]]


class CdrStore:
    """Writes CDRs exactly once and never loses one to an unavailable database.

    ``write`` never raises for an outage (the CDR is spooled); it raises only for a
    CDR the database refuses (an unknown client: a bug), after setting it aside in the
    rejected file. Run ``run_flusher`` alongside, and ``close`` (or use ``async with``)
    at the end. One store per process and spool folder.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        spool_dir: Path | str,
        *,
        write_timeout: float = 5.0,
        on_crossing: OnCrossing | None = None,
    ) -> None:
        if engine.dialect.name not in _DIALECTS:
            raise ConfigError(f"CDRs cannot be stored on {engine.dialect.name}")
        self.engine = engine
        self.spool = _Spool(Path(spool_dir))
        self.write_timeout = write_timeout
        self.on_crossing = on_crossing
        self._flushing = asyncio.Lock()

    async def __aenter__(self) -> CdrStore:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def write(self, cdr: Cdr) -> Stored:
        """Store ``cdr`` once: in the database, or in the spool while it is unavailable."""
        try:
            crossings = await self._insert([cdr])
        except asyncio.CancelledError:
            # The call is being torn down: keep the CDR before the cancellation goes on.
            self._append(cdr, "write cancelled")
            raise
        except Exception as exc:  # drivers raise their own classes; only outages are kept
            if not is_unavailable(exc):
                log.error("CDR %s refused by the database: %s", cdr.call_id, first_line(exc))
                await asyncio.to_thread(self.spool.reject, [cdr.to_json().encode() + b"\n"])
                raise
            return await asyncio.to_thread(self._append, cdr, first_line(exc))
        await self._announce(crossings)
        return Stored.DATABASE

    def _append(self, cdr: Cdr, detail: str) -> Stored:
        line = cdr.to_json()
        try:
            self.spool.append(line.encode() + b"\n")
        except OSError as exc:
            log.error("CDR %s not stored (%s; spool: %s): %s", cdr.call_id, detail, exc, line)
            return Stored.LOG
        log.warning("CDR %s spooled, database unavailable: %s", cdr.call_id, detail)
        return Stored.SPOOL

    async def write_batch(self, cdrs: Sequence[Cdr], releases: Collection[str] = ()) -> bool:
        """The hang-up writes of many calls in one transaction: the CDRs not written yet,
        the debits and daily additions of the priced ones, and the release of the slots
        of ``releases`` (call ids). The crossings are announced after the commit.

        While the database is unavailable the CDRs are spooled and the slots are left to
        their keeper: False then (True once they are released). A batch the database
        refuses is written CDR by CDR, so only the refused ones are set aside."""
        unique = list({cdr.call_id: cdr for cdr in reversed(cdrs)}.values())[::-1]
        try:
            crossings = await self._insert(unique, releases)
        except asyncio.CancelledError:
            for cdr in unique:  # shutting down: keep the CDRs before the cancellation goes on
                self._append(cdr, "write cancelled")
            raise
        except Exception as exc:  # drivers raise their own classes; outages are kept
            if is_unavailable(exc):
                detail = first_line(exc)
                await asyncio.to_thread(lambda: [self._append(cdr, detail) for cdr in unique])
                return False
            log.warning("a batch of %d CDRs refused, written one by one: %s", len(unique), exc)
            for cdr in unique:
                with contextlib.suppress(Exception):  # each refusal is logged and set aside
                    await self.write(cdr)
            if not releases:
                return True
            try:
                await self._insert([], releases)
            except Exception as failure:
                if not is_unavailable(failure):
                    raise
                return False
            return True
        await self._announce(crossings)
        return True

    async def _insert(self, cdrs: Sequence[Cdr], releases: Collection[str] = ()) -> list[Crossings]:
        async def settle(connection: AsyncConnection) -> list[Crossings]:
            crossings = await _insert_and_charge(connection, cdrs)
            if releases:
                await release_within(connection, releases)
            return crossings

        async with asyncio.timeout(self.write_timeout):
            try:
                return await transact(self.engine, settle)
            except IntegrityError:
                # Another writer (a spool replay, another server) committed one of these
                # call ids since this one looked: look again, and skip it.
                return await transact(self.engine, settle)

    async def _announce(self, crossings: Sequence[Crossings]) -> None:
        for crossing in crossings:
            if isinstance(crossing, BalanceCrossing):
                log.info(
                    "client %s: balance below %s after call %s (%s)",
                    crossing.client_id,
                    crossing.threshold,
                    crossing.call_id,
                    crossing.balance,
                )
            else:
                log.info(
                    "client %s: daily limit crossed on %s by call %s (spent %s)",
                    crossing.client_id,
                    crossing.day,
                    crossing.call_id,
                    crossing.spent,
                )
            if self.on_crossing is None:
                continue
            try:
                await self.on_crossing(crossing)
            except Exception as exc:  # the CDR is written; only the e-mail is lost
                what = "low balance" if isinstance(crossing, BalanceCrossing) else "daily limit"
                log.error("client %s: %s notice failed: %s", crossing.client_id, what, exc)

    async def flush(self) -> FlushReport:
        """Replay spooled CDRs (this run's and leftovers of previous runs), removing
        from the spool only what the database now holds. Stops at the first outage.

        Segments sealed earlier go first; the one being appended to is sealed and
        replayed only once they are all written, so an outage grows one file rather
        than adding one per flush."""
        written = rejected = remaining = 0
        async with self._flushing:
            for seal in (False, True):
                segments = await asyncio.to_thread(self.spool.claim, seal)
                left: list[Path] = []
                for number, segment in enumerate(segments):
                    done, refused, stopped = await self._replay(segment)
                    written += done
                    rejected += refused
                    if stopped:
                        left = [*segments[number:], *self.spool.active()]
                        break
                if left:
                    remaining = await asyncio.to_thread(_count_lines, left)
                    break
            await asyncio.to_thread(self.spool.release_finished)
        report = FlushReport(written, rejected, remaining)
        if written or rejected:
            log.info("CDR spool flushed: %s", report)
        return report

    async def _replay(self, segment: Path) -> tuple[int, int, bool]:
        """Write one sealed segment and put back what is not written: (written, set
        aside, stopped by an outage or a database error)."""
        good: list[tuple[bytes, Cdr]] = []
        bad: list[bytes] = []
        for line in await asyncio.to_thread(_read_lines, segment):
            try:
                good.append((line, Cdr.from_json(line)))
            except ValueError as exc:
                log.error("CDR spool %s: set aside a line that is %s", segment.name, exc)
                bad.append(line)
        finished = written = 0  # good[:finished] are written or set aside
        stopped = False
        try:
            for start in range(0, len(good), _BATCH):
                batch = good[start : start + _BATCH]
                try:
                    await self._announce(await self._insert([cdr for _, cdr in batch]))
                    finished = start + len(batch)
                    written += len(batch)
                except (IntegrityError, DataError):
                    # A row the database refuses: find it, write the others one by one.
                    for line, cdr in batch:
                        try:
                            await self._announce(await self._insert([cdr]))
                            written += 1
                        except (IntegrityError, DataError) as exc:
                            log.error("CDR %s refused: %s", cdr.call_id, first_line(exc))
                            bad.append(line)
                        finished += 1
        except Exception as exc:  # an outage or a database error ends the pass; a bug does not
            if not is_unavailable(exc):
                if not isinstance(exc, SQLAlchemyError):
                    raise
                log.error("CDR spool not flushed: %s", first_line(exc))
            stopped = True
        finally:
            if finished or bad:
                left = [line for line, _ in good[finished:]]
                await asyncio.to_thread(self.spool.settle, segment, bad, left)
        return written, len(bad), stopped

    async def run_flusher(self, interval: float) -> None:
        """Flush now (leftovers of a previous run included), then every ``interval``
        seconds, until cancelled."""
        while True:
            await self.flush()
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Release the spool; what is still in it is flushed by the next run."""
        await asyncio.to_thread(self.spool.close)


async def _insert_and_charge(connection: AsyncConnection, cdrs: Sequence[Cdr]) -> list[Crossings]:
    """Insert the CDRs the table does not hold yet; for the priced ones among them, debit
    (pseudo)prepaid balances and add to their clients' local days (DESIGN §3.5). In the
    caller's transaction, so the charges happen exactly when their CDRs are new, whether
    written at hang-up or replayed from the spool; the crossings this made (of daily
    limits, and of low-balance thresholds)."""
    if not cdrs:
        return []
    returning = _INSERT_NEW.get(connection.dialect.name)
    if connection.dialect.name == "postgresql":
        # One array per column: the rows read and turned into columns in C, the dates
        # made naive UTC as their columns hold them.
        columns: list[Sequence[object]] = list(zip(*map(_CDR_VALUES, cdrs), strict=True))
        for index in _DATETIME_COLUMNS:
            columns[index] = [_naive(value) for value in columns[index]]
        inserted = set((await connection.exec_driver_sql(_INSERT_NEW_PG, tuple(columns))).scalars())
        new = [cdr for cdr in cdrs if cdr.call_id in inserted]
    elif returning is not None:  # one statement inserts the new ones and names them
        rows = [cdr.as_row() for cdr in cdrs]
        inserted = set((await connection.scalars(returning, rows)).all())
        new = [cdr for cdr in cdrs if cdr.call_id in inserted]
    else:  # MariaDB returns nothing from INSERT IGNORE: look first
        known = set(
            (await connection.scalars(_KNOWN, {"call_ids": [cdr.call_id for cdr in cdrs]})).all()
        )
        new = [cdr for cdr in cdrs if cdr.call_id not in known]
        if new:
            await connection.execute(_PLAIN_INSERT, [cdr.as_row() for cdr in new])
    if not new:
        return []
    priced = [cdr for cdr in new if cdr.price]
    if not priced:
        return []
    debits: dict[int, Decimal] = defaultdict(Decimal)
    for cdr in priced:
        debits[cdr.client_id] += cdr.price or Decimal(0)
    debited: dict[int, Decimal] = {}
    for client_id in sorted(debits):  # one order of row locks for every writer
        params = {"client_id": client_id, "amount": debits[client_id]}
        if (await connection.execute(_DEBIT, params)).rowcount:
            debited[client_id] = debits[client_id]
    # Only a debited balance can have crossed its threshold: a batch of postpaid calls
    # reads no balance back.
    low = await _low_balances(connection, priced, debited) if debited else []
    return [*await _add_to_days(connection, priced, sorted(debits)), *low]


def _naive(value: object) -> object:
    """A CDR's value as its column holds it: an instant as naive UTC (as UTCDateTime
    stores it), anything else as it is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


async def _low_balances(
    connection: AsyncConnection, priced: Sequence[Cdr], debits: dict[int, Decimal]
) -> list[BalanceCrossing]:
    """The low-balance thresholds the debits just made crossed downwards. Read after the
    debit, in its transaction: the client's row is locked by it, so of two concurrent
    writers the second sees the first's balance and only one of them crosses."""
    crossings = []
    params = {"ids": sorted(debits)}
    for row in await connection.execute(_LOW_BALANCES, params):
        after, threshold = _money(row.balance), _money(row.low_balance_threshold)
        running = after + debits[row.id]
        if not running >= threshold > after:
            continue
        crossing = None
        for cdr in priced:  # the call that took the balance below the threshold
            if cdr.client_id == row.id:
                running -= cdr.price or Decimal(0)
                if running < threshold:
                    crossing = cdr
                    break
        assert crossing is not None
        crossings.append(BalanceCrossing(row.id, after, threshold, crossing.call_id))
    return crossings


def _money(value: object) -> Decimal:
    return Decimal(str(value)).quantize(_MONEY_STEP)


async def _add_to_days(
    connection: AsyncConnection, priced: Sequence[Cdr], client_ids: list[int]
) -> list[Crossing]:
    """Add priced CDRs to their clients' local days, one addition per client and day, for
    clients with a daily limit; the crossing of each addition that reaches it, named by
    the call that took the day over."""
    limits = {row.id: row for row in await connection.execute(_DAILY_LIMITS, {"ids": client_ids})}
    days: dict[tuple[int, date], list[Cdr]] = {}
    for cdr in priced:
        client = limits.get(cdr.client_id)
        if client is None or client.max_daily_usage is None or not cdr.price or cdr.price < 0:
            continue
        try:
            day = local_day(cdr.end_time, client.timezone)
        except ValueError as exc:  # a broken zone must not cost the CDR: count the UTC day
            log.error("client %s: %s; daily usage counted on the UTC day", cdr.client_id, exc)
            day = cdr.end_time.astimezone(UTC).date()
        days.setdefault((cdr.client_id, day), []).append(cdr)
    crossings = []
    for (client_id, day), group in sorted(days.items()):
        limit: Decimal = limits[client_id].max_daily_usage
        amount = sum((cdr.price or Decimal(0) for cdr in group), Decimal(0))
        added = await add_within(connection, client_id, day, amount, limit)
        if not added.notify:
            continue
        running, crossing = added.before, group[-1]
        for cdr in group:
            running += cdr.price or Decimal(0)
            if running >= limit:
                crossing = cdr
                break
        crossings.append(Crossing(client_id, day, added.after, crossing.call_id))
    return crossings


def _read_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]


def _count_lines(paths: Sequence[Path]) -> int:
    count = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            count += len(_read_lines(path))
    return count


def _owner_of(name: str) -> str:
    return name.split(".", 1)[0]


class _Spool:
    """The spool folder (layout in the module docstring). Thread-safe: appends run in
    worker threads while the event loop seals and claims."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.owner = f"cdrs-{os.getpid()}-{secrets.token_hex(4)}"
        self._mutex = threading.Lock()
        self._locks: dict[str, BinaryIO] = {}  # owners whose lock we hold: us, and the dead
        self._active: BinaryIO | None = None
        self._sequence = 0

    def append(self, line: bytes) -> None:
        with self._mutex:
            if self._active is None:
                self._active = self._new_segment()
            try:
                self._active.write(line)
                self._active.flush()
                os.fsync(self._active.fileno())
            except OSError:
                self._seal()  # a torn line must not swallow the next one
                raise

    def _new_segment(self) -> BinaryIO:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.owner not in self._locks:
            # Locked before it has its name, so no flusher sees a live owner unlocked.
            temporary = self.folder / f"{self.owner}{LOCK_SUFFIX}.new"
            handle = temporary.open("wb")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            temporary.rename(self.folder / f"{self.owner}{LOCK_SUFFIX}")
            self._locks[self.owner] = handle
        self._sequence += 1
        segment = (self.folder / f"{self.owner}.{self._sequence:06d}{SEGMENT_SUFFIX}").open("xb")
        sync_folder(self.folder)
        return segment

    def _seal(self) -> None:
        if self._active is not None:
            active, self._active = self._active, None
            active.close()

    def claim(self, seal: bool) -> list[Path]:
        """Every segment this process may replay now: its own sealed ones (after
        sealing the active one, with ``seal``) and those of owners no longer alive."""
        with self._mutex:
            if seal:
                self._seal()
            active = {path.name for path in self._active_path()}
            try:
                names = sorted(os.listdir(self.folder))
            except FileNotFoundError:
                return []
            for name in names:  # adopt dead owners, even those without segments left
                if name.endswith(LOCK_SUFFIX):
                    self._hold(_owner_of(name))
            return [
                self.folder / name
                for name in names
                if name.endswith(SEGMENT_SUFFIX)
                and name not in active
                and self._hold(_owner_of(name))
            ]

    def active(self) -> list[Path]:
        """The segment being appended to, if any."""
        with self._mutex:
            return self._active_path()

    def _active_path(self) -> list[Path]:
        return [] if self._active is None else [Path(self._active.name)]

    def _hold(self, owner: str) -> bool:
        """True when no live process owns ``owner``'s segments: we hold its lock, or none exists."""
        if owner in self._locks:
            return True
        try:
            handle = (self.folder / f"{owner}{LOCK_SUFFIX}").open("rb")
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._locks[owner] = handle
        return True

    def settle(self, segment: Path, rejected: list[bytes], left: list[bytes]) -> None:
        """Set ``rejected`` lines aside, then leave only ``left`` in ``segment``."""
        if rejected:
            self.reject(rejected)
        if left:
            with atomic_bytes(segment) as out:
                out.writelines(left)
        else:
            segment.unlink(missing_ok=True)
        sync_folder(self.folder)

    def reject(self, lines: list[bytes]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / REJECTED_FILE).open("ab") as out:
            out.writelines(line if line.endswith(b"\n") else line + b"\n" for line in lines)
            out.flush()
            os.fsync(out.fileno())

    def release_finished(self) -> None:
        """Delete and let go of the lock of every adopted owner with no segment left."""
        with self._mutex:
            names = os.listdir(self.folder) if self.folder.is_dir() else []
            busy = {_owner_of(name) for name in names if name.endswith(SEGMENT_SUFFIX)}
            for owner in [owner for owner in self._locks if owner not in busy]:
                if owner != self.owner:
                    self._release(owner)

    def _release(self, owner: str) -> None:
        # Unlinked before it is unlocked: nobody can lock this file once we let it go.
        (self.folder / f"{owner}{LOCK_SUFFIX}").unlink(missing_ok=True)
        self._locks.pop(owner).close()

    def close(self) -> None:
        with self._mutex:
            self._seal()
            for owner in list(self._locks):
                self._release(owner)


@dataclass(frozen=True, slots=True)
class ListedCdr:
    """A CDR with the name of its client, as the CLI lists and exports it."""

    client: str
    cdr: Cdr


_COLUMNS = tuple(_TABLE.c[name] for name in CDR_FIELDS)
_LIST = (
    select(Client.name.label("client_name"), *_COLUMNS)
    .join(Client, Client.id == BillableCall.client_id)
    .order_by(BillableCall.start_time, BillableCall.call_id)
)
_CLIENT_ID = select(Client.id).where(Client.name == bindparam("name")).limit(1)


async def stream_cdrs(
    engine: AsyncEngine,
    client: str | None = None,
    since: date | None = None,
    until: date | None = None,
    outcome: str | None = None,
    *,
    zone: tzinfo = UTC,
) -> AsyncGenerator[ListedCdr, None]:
    """CDRs by start time: of the client named ``client``, started from ``since`` to
    ``until`` (both days of ``zone``, inclusive), with outcome reason ``outcome``.
    ``NotFound`` when no client has that name."""
    query = _LIST
    if client is not None:
        query = query.where(Client.name == client)
    if since is not None:
        query = query.where(BillableCall.start_time >= _midnight(since, zone))
    if until is not None:
        query = query.where(BillableCall.start_time < _midnight(until + timedelta(days=1), zone))
    if outcome is not None:
        query = query.where(BillableCall.outcome_reason == outcome)
    async with engine.connect() as connection:
        if client is not None:
            known = await connection.scalar(_CLIENT_ID, {"name": client})
            if known is None:
                raise NotFound("client", client)
        result = await connection.stream(query.execution_options(yield_per=500))
        async for row in result:
            values = row._asdict()
            name = values.pop("client_name")
            yield ListedCdr(name, Cdr(**values))


async def list_cdrs(
    engine: AsyncEngine,
    client: str | None = None,
    since: date | None = None,
    until: date | None = None,
    outcome: str | None = None,
) -> list[ListedCdr]:
    """:func:`stream_cdrs`, as a list."""
    return [listed async for listed in stream_cdrs(engine, client, since, until, outcome)]


def _midnight(day: date, zone: tzinfo = UTC) -> datetime:
    """The UTC instant ``day`` begins in ``zone``."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
