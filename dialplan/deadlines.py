"""Deadlines for the many short waits of a busy server, on a shared clock of coarse ticks.

``asyncio.timeout`` schedules one timer per wait: a handle pushed onto the event loop's
heap (each comparison a Python method), cancelled when the wait ends in time, and popped
again when its moment comes. A call waits under four or five of them, and almost none
expires. :func:`deadline` behaves the same for the code inside it (past the deadline the
block is cancelled and ``TimeoutError`` raised in its place) but joins a tick of
:data:`TICK` seconds that the waits ending then share: one timer per tick in use, and a
wait that ends in time only leaves a set.

A deadline expires at the end of the tick it falls in: up to :data:`TICK` late, never early.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from types import TracebackType

TICK = 0.05
"""Seconds per tick: how late past its moment a deadline may expire."""


class _Ticks:
    """The deadlines of one event loop, by the tick they expire at."""

    __slots__ = ("loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[int, set[deadline]] = {}

    def add(self, entry: deadline, seconds: float) -> int:
        tick = math.ceil((self.loop.time() + seconds) / TICK)
        due = self.waiting.get(tick)
        if due is None:
            due = self.waiting[tick] = set()
            self.loop.call_at(tick * TICK, self._expire, tick)
        due.add(entry)
        return tick

    def discard(self, entry: deadline, tick: int) -> None:
        due = self.waiting.get(tick)
        if due is not None:
            due.discard(entry)

    def _expire(self, tick: int) -> None:
        for entry in self.waiting.pop(tick, ()):
            entry._expire()


_TICKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticks] = weakref.WeakKeyDictionary()


class deadline:
    """``async with deadline(seconds):`` the block, cancelled and turned into
    ``TimeoutError`` once ``seconds`` have passed (None: no deadline). A cancellation from
    elsewhere goes through as ``CancelledError``, as with ``asyncio.timeout``."""

    __slots__ = ("_expired", "_seconds", "_task", "_tick", "_ticks")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._ticks: _Ticks | None = None
        self._tick = 0
        self._expired = False

    @property
    def expired(self) -> bool:
        """Whether the deadline passed (and cancelled the block)."""
        return self._expired

    async def __aenter__(self) -> deadline:
        if self._seconds is None:
            return self
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        loop = asyncio.get_running_loop()
        ticks = _TICKS.get(loop)
        if ticks is None:
            ticks = _TICKS[loop] = _Ticks(loop)
        self._task, self._ticks = task, ticks
        self._tick = ticks.add(self, self._seconds)
        return self

    def _expire(self) -> None:
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is None:
            return None
        if not self._expired:
            assert self._ticks is not None
            self._ticks.discard(self, self._tick)
            return None
        # The cancellation was ours: taken back; when no other is pending, the block's
        # CancelledError becomes TimeoutError.
        if self._task.uncancel() == 0 and kind is asyncio.CancelledError:
            raise TimeoutError from error
        return None
