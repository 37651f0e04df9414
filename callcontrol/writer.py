"""Hang-up writes off the call path (DESIGN §1): a call's CDR, its prepaid debit, its
addition to its client's day and the release of its concurrent-call slot are queued
here and committed in batches, one transaction per batch.

A call hands its end over with :meth:`EndWriter.end` and awaits it, or with
:meth:`EndWriter.hand` and goes on; the batch it joins is written as soon as the writer
is free, after lingering ``linger`` seconds for more ends to join (at most ``size`` per
batch), so under load each transaction carries many calls and the database sees a few
writers instead of one per call. Each call id is
written once, however many times its end is handed over. While the database is
unavailable the batch's CDRs go to the store's spool and its slots to the keeper, which
releases them at a later beat; the crossing e-mail is sent by the store once the batch
is committed, exactly as for a single CDR.

The writer runs only while there is something to write: a task starts with the first
end queued and ends once the queue is empty, so nothing needs starting and ``close``
only waits for what is queued.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from models.cdrs import Cdr, CdrStore
from models.slots import SlotKeeper

if TYPE_CHECKING:
    from callcontrol.guards import Guards

log = logging.getLogger("callcontrol.writer")

BATCH_SIZE = 200
"""Calls per transaction, at most."""
LINGER = 0.5
"""Seconds a batch waits for more calls to join it (the calls are over: only a slot's
release waits with them). A batch's round trips (begin, CDRs, debit, day, slots,
commit) cost this process 1.5–2.6 ms of CPU whatever it carries, and each CDR about
35 µs more: at 200 calls/s a batch of 100 charges each call 15–26 µs of the round
trips, one of 40 (a linger of 0.2 s) 38–65."""


@dataclass(slots=True)
class _End:
    cdr: Cdr | None
    release: bool
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    """One future per call of :meth:`EndWriter.end` waiting for it: cancelling one waiter
    cancels only its own (what ``asyncio.shield`` would do, with two callbacks fewer)."""

    def settle(self) -> None:
        for future in (self.done, *self.waiters):
            if not future.done():
                future.set_result(None)


class EndWriter:
    """Batches the hang-up writes of one server's calls (both fronts)."""

    def __init__(
        self,
        cdrs: CdrStore | None,
        keeper: SlotKeeper | None = None,
        *,
        size: int = BATCH_SIZE,
        linger: float = LINGER,
    ) -> None:
        if size < 1 or linger < 0:
            raise ValueError("a batch needs room for one call and a linger of 0 or more")
        self.cdrs = cdrs
        self.keeper = keeper
        self.size = size
        self.linger = linger
        self.batches = 0
        """Transactions written so far (for the benchmark and tests)."""
        self._queue: dict[str, _End] = {}
        self._task: asyncio.Task[None] | None = None

    async def end(self, call_id: str, cdr: Cdr | None, *, release: bool) -> None:
        """Write ``cdr`` (if any) and release the slot of ``call_id`` (with ``release``; a
        writer without a keeper keeps no slots and releases none), in the next batch;
        returns once that batch is committed or set aside. A call
        cancelled while it waits leaves its end queued: the writer still writes it."""
        if self.hand(call_id, cdr, release=release) is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._queue[call_id].waiters.append(waiter)
        await waiter

    def hand(self, call_id: str, cdr: Cdr | None, *, release: bool) -> asyncio.Future[None] | None:
        """Queue the end of ``call_id`` as :meth:`end` does, without waiting for it: the
        future is done once its batch is committed or set aside (None: nothing to write).
        A front with nothing left to do for the call hands it over and is free at once;
        :meth:`close` waits for it."""
        if cdr is None and not (release and self.keeper is not None):
            return None
        queued = self._queue.get(call_id)
        if queued is None:
            queued = self._queue[call_id] = _End(cdr, release)
        else:  # the same call again: one write, whatever it asked for first
            queued.cdr = queued.cdr or cdr
            queued.release = queued.release or release
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="end-writer")
        return queued.done

    @property
    def pending(self) -> int:
        """Calls whose end is queued and not yet written."""
        return len(self._queue)

    async def close(self) -> None:
        """Return once every queued end is written (or spooled)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        while self._queue:
            if len(self._queue) < self.size and self.linger:
                await asyncio.sleep(self.linger)
            call_ids = list(self._queue)[: self.size]
            batch = {call_id: self._queue.pop(call_id) for call_id in call_ids}
            try:
                await self._write(batch)
            except Exception:  # a bug: logged, and the calls waiting on it go on
                log.exception("hang-up writes of %d calls failed", len(batch))
            finally:
                for end in batch.values():
                    end.settle()

    async def _write(self, batch: dict[str, _End]) -> None:
        cdrs = [end.cdr for end in batch.values() if end.cdr is not None]
        keeper = self.keeper
        releases = (
            keeper.names([call_id for call_id, end in batch.items() if end.release])
            if keeper is not None
            else []
        )
        self.batches += 1
        if self.cdrs is not None:
            if not await self.cdrs.write_batch(cdrs, releases) and keeper is not None:
                keeper.later(releases)
        elif keeper is not None:
            await keeper.release_all(releases)


def own_writer(given: EndWriter | None, cdrs: CdrStore | None, guards: Guards | None) -> EndWriter:
    """``given``, else a writer for ``cdrs`` and the slots ``guards`` keep (a front that was
    given none makes its own at first use, from what it holds then)."""
    if given is not None:
        return given
    return EndWriter(cdrs, guards.keeper if guards is not None else None)
