"""The configuration watcher: keeps the snapshot in memory in step with the shared database.

Provisioning raises the configuration's version in its transaction (``models.changes``).
On PostgreSQL it also sends a notification at commit, which a listening connection hears
at once; the version is polled besides, every ``poll`` seconds (slower on PostgreSQL while
the listener is up), so a change reaches the server whatever the backend, and a missed
notification (a dropped listener) is caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from models.changes import CHANNEL
from models.db import first_line
from models.snapshot import Snapshots

log = logging.getLogger(__name__)

LISTENING_POLL = 10.0
"""Seconds between polls while a PostgreSQL listener is up (a safety net only)."""


class ConfigWatcher:
    def __init__(self, snapshots: Snapshots, poll: float, timeout: float = 5.0) -> None:
        self.snapshots = snapshots
        self.poll = poll
        self.timeout = max(timeout, 1.0) * 6
        """Seconds one load (or check) may take before it is given up and tried again."""
        self.listening = False
        self._changed = asyncio.Event()
        self._connection: AsyncConnection | None = None

    async def run(self) -> None:
        """Until cancelled: load the snapshot, then reload it on every change."""
        engine = self.snapshots.engine
        async with contextlib.AsyncExitStack() as stack:
            if engine.dialect.name == "postgresql":
                stack.push_async_callback(self._unlisten)
                await self._listen()
            while True:
                try:
                    async with asyncio.timeout(self.timeout):
                        await self.snapshots.refresh()  # the first load, or a check
                except Exception as exc:  # an outage: keep the snapshot in force, try again
                    log.warning("configuration not reloaded: %s", first_line(exc) or "no answer")
                if engine.dialect.name == "postgresql" and not self.listening:
                    await self._listen()
                interval = LISTENING_POLL if self.listening else max(self.poll, 0.05)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), interval)
                self._changed.clear()

    async def _listen(self) -> None:
        """LISTEN on a connection of its own (kept out of the pool's rotation)."""
        await self._unlisten()
        try:
            connection = await self.snapshots.engine.connect()
        except Exception as exc:  # no listener: polling alone keeps the snapshot fresh
            log.warning("configuration changes not listened to: %s", first_line(exc) or exc)
            return
        try:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.add_listener(CHANNEL, self._notified)
            driver.add_termination_listener(self._lost)
        except BaseException as exc:
            await _drop(connection)
            if not isinstance(exc, Exception):
                raise
            log.warning("configuration changes not listened to: %s", first_line(exc) or exc)
            return
        self._connection = connection
        self.listening = True

    def _notified(self, *_args: object) -> None:
        self._changed.set()

    def _lost(self, *_args: object) -> None:
        log.warning("configuration listener lost; polling until it is back")
        self.listening = False
        self._changed.set()

    async def _unlisten(self) -> None:
        connection, self._connection = self._connection, None
        self.listening = False
        if connection is not None:
            await _drop(connection)


async def _drop(connection: AsyncConnection) -> None:
    """Close a listening connection without waiting on a database that may not answer."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await connection.invalidate()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await connection.close()
