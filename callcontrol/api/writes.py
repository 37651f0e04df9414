"""How the API writes one client: it reads the client's whole provisioning document,
changes it and loads it back whole (the provisioning loader: the same validation, one
transaction). Two such writes at once would each load a document without the other's
change, and one change would vanish. So:

* in one process, :func:`one_writer` runs one write per client at a time (no pointless
  retries between the requests of one process);
* across processes (another API process, a ``callcontrol provision`` load), the write is
  optimistic: it reads the configuration's version *before* the document and the loader
  writes only if the version is still that one (:func:`models.changes.claim`, under the
  version row's lock). Otherwise nothing was written: the write reads the document again
  and applies its one change to it, at most :data:`TRIES` times, then gives up with
  :class:`ClientChanged` (HTTP 409).

The version is the platform's, not the client's: a change to another client, or to any of
the configuration, between the read and the write also starts the write over. That costs a
read and a validation, never a wrong write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.access import Principal
from callcontrol.api.context import Api
from models.changes import ConfigChanged

log = logging.getLogger("callcontrol.api.writes")

TRIES = 3
"""Reads and writes of one change before it answers 409."""
CHANGED = "the client changed meanwhile: try again"
NEW_CLIENT = 0
"""The ``client_id`` a new client's write runs under (no client has id 0): the creations
of one process run one at a time."""

P = ParamSpec("P")
T = TypeVar("T")
_writers: WeakKeyDictionary[AsyncEngine, dict[int, asyncio.Lock]] = WeakKeyDictionary()


class ClientChanged(Exception):
    """Every try of a write met another writer's change: nothing was written (HTTP 409)."""

    def __init__(self, client_id: int) -> None:
        super().__init__(CHANGED)
        self.client_id = client_id
        self.message = CHANGED


def one_writer(
    write: Callable[Concatenate[AsyncEngine, Principal, int, int, P], Awaitable[T]],
) -> Callable[Concatenate[Api, Principal, int, P], Awaitable[T]]:
    """``write(engine, who, client_id, seen, ...)`` reads the client's document, changes it
    and loads it back with ``expect_version=seen``; called as ``(context, who, client_id,
    ...)``, it runs alone among this process's writes of the client, with ``seen`` the
    version read just before, again after a ConfigChanged (at most TRIES times in all),
    then raises ClientChanged."""

    @functools.wraps(write)
    async def settled(
        context: Api, who: Principal, client_id: int, /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        engine = context.engine
        lock = _writers.setdefault(engine, {}).setdefault(client_id, asyncio.Lock())
        async with lock:
            for _ in range(TRIES):
                seen = await context.config_version(engine)
                try:
                    return await write(engine, who, client_id, seen, *args, **kwargs)
                except ConfigChanged:
                    log.debug("client %s changed meanwhile: its write starts over", client_id)
        raise ClientChanged(client_id)

    return settled
