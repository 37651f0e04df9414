"""Slots a busy server takes ahead (DESIGN §3.4): admitting a client's calls without a
round trip each, still within one limit across every server.

Admitting an external call costs a round trip to the shared database (its slot taken
with the client's counters, :func:`models.slots.acquire`), and that round trip was most
of what a call cost the server beyond the hook itself. A server that admits many calls of
one client (``busy`` or more in the last second) therefore takes a few of the client's
slots ahead, ``size`` at most, in one transaction held to the same lock and the same
limit as every acquire (:func:`models.slots.take_ahead`). Its next calls of that client
are admitted from them, with the client's counters as the last read left them (at most
``fresh`` seconds old, and of the same day), and nothing sent to the database: the slot
is named after the call once it has lasted ``RENAME_AFTER`` seconds, and released at
hang-up by either name; a call that ends sooner puts it back in the stock, and costs the
database nothing.

What it costs the rest of the platform, and the bounds kept on it:

* A slot taken ahead counts as a live call of its client from the moment it is taken, on
  every server: no limit is ever exceeded. Until used it is a call that is not there, so
  a client can be refused a little below its limit on another server. Slots are taken
  ahead only while the client holds at most half its limit with them, never for a limit
  under ``FEW`` (such limits are counted call by call, as before), never for a prepaid
  client (its calls reserve from the balance, which needs the database each time), and a
  slot left unused for ``idle`` seconds is given back.
* A decision from the stock reads counters up to ``fresh`` seconds old: a daily limit
  crossed on another server within that second lets a call or two more through. A
  postpaid call's cost counts when it ends anyway, so the day's figure is always behind
  by the calls in progress.
* A slot taken ahead is named ``~`` and 32 hex digits until the call that took it has
  lasted ``RENAME_AFTER`` seconds; it is renewed with the server's other slots, and freed
  with them when the server is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.errors import DatabaseUnavailable, NotFound
from dialplan.views import ClientView
from models.slots import SlotVerdict, release_many, rename_slots, take_ahead

log = logging.getLogger("callcontrol.slots")

SIZE = 64
"""Slots taken ahead for one client at a time, at most."""
BUSY = 20
"""Admissions of one client within a second that make it worth taking slots ahead."""
FRESH = 1.0
"""Seconds the counters read with the last slot stay good for a decision from the stock."""
IDLE = 2.0
"""Seconds a slot taken ahead waits unused before it is given back."""
FEW = 128
"""A limit under this is counted call by call: nothing is taken ahead of it."""
RENAME_AFTER = 2.0
"""Seconds a call holds a slot taken ahead before the slot is named after it. A call that
ends sooner gives its slot back to the stock as it was: nothing is written for it."""
LINGER = 0.2
"""Seconds between two looks for slots due to be renamed (each look: one transaction)."""
PREPAID = frozenset({"prepaid", "pseudoprepaid"})


@dataclass(slots=True)
class _Shelf:
    """One client's slots taken ahead, and its counters as last read."""

    spares: list[str] = field(default_factory=list)
    live: int = 0
    spent: Decimal = Decimal(0)
    balance: Decimal = Decimal(0)
    day: date | None = None
    read_at: float = float("-inf")
    used_at: float = float("-inf")
    recent: deque[float] = field(default_factory=deque)
    filling: asyncio.Task[None] | None = None


def stocked(client: ClientView) -> bool:
    """Whether slots of ``client`` may be taken ahead at all."""
    limit = client.max_calls
    return client.billing_method not in PREPAID and (limit == 0 or limit >= FEW)


class SlotStock:
    """One server's slots taken ahead, by client (see the module)."""

    def __init__(
        self,
        engine: AsyncEngine,
        server: str,
        lease: float,
        *,
        size: int = SIZE,
        busy: int = BUSY,
        fresh: float = FRESH,
        idle: float = IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1 or busy < 1 or fresh <= 0 or idle <= 0:
            raise ValueError("a stock needs a size, a busy rate, a freshness and an idle time")
        self.engine, self.server, self.lease = engine, server, lease
        self.size, self.busy, self.fresh, self.idle = size, busy, fresh, idle
        self.clock = clock
        self.local = 0
        """Calls admitted from the stock so far (for the benchmark and tests)."""
        self.taken = 0
        """Slots taken ahead so far."""
        self._shelves: dict[int, _Shelf] = {}
        self._held: dict[str, tuple[str, int]] = {}
        """Call id → the slot taken ahead it holds and its client, until released."""
        self._renames: dict[str, tuple[str, str, datetime, float]] = {}
        """Slot taken ahead → the call it is to be named after (id, direction, admitted at),
        and when (on ``clock``), in the order they were taken."""
        self._everything = False
        """True while :meth:`flush` has every pending rename written at once."""
        self._writing: asyncio.Task[None] | None = None
        self._giving: asyncio.Task[None] | None = None
        self._lost: set[str] = set()
        """Unused slots an outage kept from being given back: with the next ones."""

    def take(
        self, client: ClientView, call_id: str, direction: str, now: datetime, day: date
    ) -> SlotVerdict | None:
        """A slot for ``call_id`` from the stock, with the client's counters; None when
        there is none to take, or the counters are too old or of another day (the call is
        then admitted through the database)."""
        shelf = self._shelves.get(client.id)
        if shelf is None or not shelf.spares or not stocked(client):
            return None
        at = self.clock()
        if at - shelf.read_at > self.fresh or shelf.day != day:
            return None
        spare = shelf.spares.pop()
        shelf.used_at = at
        self._held[call_id] = (spare, client.id)
        self._renames[spare] = (call_id, direction, now, at + RENAME_AFTER)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write(), name="slot-renames")
        self.local += 1
        self._busy(client, shelf, at)
        limit = client.max_calls
        held = min(shelf.live, limit) if limit else shelf.live
        return SlotVerdict(True, held, limit, spent=shelf.spent, balance=shelf.balance)

    def note(self, client: ClientView, verdict: SlotVerdict, day: date) -> None:
        """An admission through the database: the client's counters as it read them; a
        busy client's stock is filled up in the background."""
        if verdict.spent is None or verdict.balance is None:
            return
        shelf = self._shelves.get(client.id)
        if shelf is None:
            shelf = self._shelves[client.id] = _Shelf()
        at = self.clock()
        shelf.live, shelf.spent, shelf.balance = verdict.held, verdict.spent, verdict.balance
        shelf.day, shelf.read_at = day, at
        self._busy(client, shelf, at)

    def _busy(self, client: ClientView, shelf: _Shelf, at: float) -> None:
        recent = shelf.recent
        recent.append(at)
        while recent and recent[0] < at - 1.0:
            recent.popleft()
        if len(recent) < self.busy or len(shelf.spares) > self.size // 2 or not stocked(client):
            return
        if shelf.filling is None or shelf.filling.done():
            shelf.filling = asyncio.create_task(self._fill(client, shelf), name="slot-stock")

    async def _fill(self, client: ClientView, shelf: _Shelf) -> None:
        day = shelf.day
        if day is None:
            return
        try:
            async with asyncio.timeout(self.lease):
                ahead = await take_ahead(
                    self.engine,
                    client_id=client.id,
                    max_calls=client.max_calls,
                    server=self.server,
                    wanted=self.size - len(shelf.spares),
                    now=datetime.now(UTC),
                    lease=self.lease,
                    day=day,
                )
        except (DatabaseUnavailable, NotFound, TimeoutError) as exc:
            log.info("client %s: no slots taken ahead: %s", client.name, exc or "no answer")
            return
        shelf.spares.extend(ahead.call_ids)
        shelf.live, shelf.spent, shelf.balance = ahead.held, ahead.spent, ahead.balance
        shelf.read_at = shelf.used_at = self.clock()  # unused from now on, not before
        self.taken += len(ahead.call_ids)
        if ahead.call_ids and (self._giving is None or self._giving.done()):
            self._giving = asyncio.create_task(self._give_back(), name="slot-stock-unused")

    async def _give_back(self) -> None:
        """While the stock holds slots: every ``idle`` seconds, free those left unused
        that long (an outage leaves them to their lease, or to the next try)."""
        while any(shelf.spares for shelf in self._shelves.values()):
            await asyncio.sleep(self.idle)
            unused = self.unused()
            if not unused:
                continue
            try:
                await release_many(self.engine, unused)
            except DatabaseUnavailable as exc:
                log.warning("%d call slots taken ahead not given back yet: %s", len(unused), exc)
                self._lost.update(unused)
            except asyncio.CancelledError:  # stopping: given back by whoever stops it
                self._lost.update(unused)
                raise

    def names(self, call_ids: Collection[str]) -> list[str]:
        """The slot names to release for ``call_ids``: each call's own, and the slot taken
        ahead it holds (under whichever name the row has by then)."""
        found = []
        for call_id in call_ids:
            held = self._held.pop(call_id, None)
            if held is None:
                found.append(call_id)
                continue
            spare, client_id = held
            if self._renames.pop(spare, None) is None:
                found += [call_id, spare]
                continue
            # Not renamed yet: the row is still the stock's, and goes back on its shelf.
            shelf = self._shelves.get(client_id)
            if shelf is None:
                shelf = self._shelves[client_id] = _Shelf()
            shelf.spares.append(spare)
            shelf.used_at = self.clock()
        return found

    def unused(self, *, everything: bool = False) -> list[str]:
        """Slots taken ahead and left unused for ``idle`` seconds (``everything``: all
        the unused ones), out of the stock: the caller gives them back."""
        at = self.clock()
        found: list[str] = sorted(self._lost)
        self._lost.clear()
        for client_id, shelf in list(self._shelves.items()):
            if shelf.spares and (everything or at - shelf.used_at > self.idle):
                found.extend(shelf.spares)
                shelf.spares.clear()
            if not shelf.spares and at - max(shelf.read_at, shelf.used_at) > 60:
                del self._shelves[client_id]  # a client not called for a minute
        return found

    async def flush(self) -> None:
        """Return once the slots used so far carry their calls' names."""
        self._everything = True
        try:
            if self._renames and (self._writing is None or self._writing.done()):
                self._writing = asyncio.create_task(self._write(), name="slot-renames")
            while self._writing is not None and not self._writing.done():
                await asyncio.shield(self._writing)
        finally:
            self._everything = False

    async def _write(self) -> None:
        pause = LINGER
        while self._renames:
            await asyncio.sleep(0 if self._everything else pause)
            at, batch = self.clock(), []
            for spare, named in list(self._renames.items()):  # oldest first
                if named[3] > at and not self._everything:
                    break
                batch.append((spare, named[:3]))
                del self._renames[spare]
            if not batch:
                continue
            try:
                await rename_slots(self.engine, self.server, batch)
                pause = LINGER
            except DatabaseUnavailable as exc:
                log.warning("%d call slots not renamed yet: %s", len(batch), exc)
                for spare, (call_id, heading, taken_at) in batch:  # unless released since
                    held = self._held.get(call_id)
                    if held is not None and held[0] == spare:
                        self._renames.setdefault(spare, (call_id, heading, taken_at, at))
                pause = 1.0

    async def close(self) -> list[str]:
        """Write the pending renames and empty the stock: the unused slots to give back."""
        with contextlib.suppress(Exception):
            await self.flush()
        tasks = [shelf.filling for shelf in self._shelves.values()] + [self._giving]
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        return self.unused(everything=True)
