"""The application servers' consoles, as the API reaches them: each server's console URL
and its console token live in ``application_servers`` (migration 0011), the token sealed
with the API's ``api_secret_key`` (Fernet: AES-128-CBC with an HMAC-SHA256 tag), so the
database alone never gives it away; it is unsealed in the API's memory only, to call the
server, and never logged or answered.

:class:`LiveCalls` polls every server's ``/calls`` from one task per API process, diffs
what it sees (a call started, was answered, ended) and fans the events out to bounded
queues, one per subscriber: a subscriber that does not keep up is dropped, not buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.errors import ConfigError, shown_plain
from models.admins import AuditedBy, record
from models.platform import ApplicationServer
from models.provisioning.audit import MASK

log = logging.getLogger("callcontrol.api.servers")

QUEUE_SIZE = 256
"""Events one subscriber may have waiting; past it the subscriber is dropped."""
MAX_CALLS = 10_000
"""Calls read of one server's answer at most (a bound on what one poll holds)."""


def new_key() -> str:
    """A fresh ``api_secret_key``."""
    return Fernet.generate_key().decode()


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:
        raise ConfigError(
            "api_secret_key is not a key (make one with `callcontrol api console-key`)"
        ) from None


def seal(key: str, token: str) -> str:
    return _fernet(key).encrypt(token.encode()).decode()


def unseal(key: str, sealed: str) -> str | None:
    """The token, or None when ``key`` did not seal it."""
    try:
        return _fernet(key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


@dataclass(frozen=True, slots=True)
class Console:
    """One server's console as the API calls it (``token`` in clear: memory only)."""

    server: str
    url: str
    token: str = field(repr=False)


async def register(
    engine: AsyncEngine,
    key: str,
    server: str,
    url: str,
    token: str,
    *,
    audited: AuditedBy | None = None,
) -> bool:
    """Store ``server``'s console URL and sealed token; False when there is no such server.
    With ``audited``, audited as it in the same transaction (``server.console``: the URL
    before and after, whether a token is kept, never the token)."""
    sealed = seal(key, token) if token else None
    async with engine.begin() as connection:
        found = (
            await connection.execute(
                select(ApplicationServer.console_url, ApplicationServer.console_token).where(
                    ApplicationServer.name == server
                )
            )
        ).first()
        if found is None:
            return False
        await connection.execute(
            update(ApplicationServer)
            .where(ApplicationServer.name == server)
            .values(console_url=url.rstrip("/"), console_token=sealed)
        )
        if audited is not None:
            before = {"console_url": found[0], "console_token": _shown(found[1])}
            after = {"console_url": url.rstrip("/"), "console_token": _shown(sealed)}
            await record(
                connection, audited.note("server.console", server, before=before, after=after)
            )
    return True


def _shown(token: str | None) -> str | None:
    """A console token as the audit trail keeps it: masked when there is one."""
    return None if token is None else MASK


async def consoles(engine: AsyncEngine, key: str) -> list[Console]:
    """Every server with a console URL; a token that ``key`` cannot unseal is logged (by
    the server's name only) and the server skipped."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    ApplicationServer.name,
                    ApplicationServer.console_url,
                    ApplicationServer.console_token,
                )
                .where(ApplicationServer.console_url.is_not(None))
                .order_by(ApplicationServer.name)
            )
        ).all()
    found = []
    for name, url, sealed in rows:
        token = "" if sealed is None else (unseal(key, sealed) if key else None)
        if token is None:
            log.warning("server %s: its console token is not sealed with api_secret_key", name)
            continue
        found.append(Console(name, url, token))
    return found


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]


async def ask(
    http: aiohttp.ClientSession, console: Console, method: str, path: str, body: object = None
) -> Reply:
    """One request to ``console``; a server that cannot be reached is a 502 reply."""
    headers = {"Authorization": f"Bearer {console.token}"} if console.token else {}
    try:
        async with http.request(method, console.url + path, json=body, headers=headers) as got:
            document = await got.json(content_type=None)
            status = got.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return Reply(502, {"error": f"server {console.server}: not reachable ({reason})"})
    if not isinstance(document, dict):
        return Reply(502, {"error": f"server {console.server}: not a callcontrol console"})
    return Reply(status, document)


Call = dict[str, Any]
Key = tuple[str, str]
"""(server, call id)."""


def diff(before: dict[Key, Call], after: dict[Key, Call]) -> list[tuple[str, Call]]:
    """The events between two polls: ``start``, ``answer``, ``update`` (its client or
    recording changed) and ``end``."""
    events: list[tuple[str, Call]] = []
    for key, call in after.items():
        old = before.get(key)
        if old is None:
            events.append(("start", call))
            if call.get("state") == "answered":
                events.append(("answer", call))
        elif call.get("state") == "answered" and old.get("state") != "answered":
            events.append(("answer", call))
        elif (old.get("client"), old.get("recording")) != (
            call.get("client"),
            call.get("recording"),
        ):
            events.append(("update", call))
    events += [("end", call) for key, call in before.items() if key not in after]
    return events


@dataclass(eq=False)
class Subscriber:
    """One listener: sees only the calls ``visible`` passes."""

    visible: Callable[[Call], bool]
    queue: asyncio.Queue[tuple[str, Call] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    dropped: bool = False


class LiveCalls:
    """The live calls of every server, polled by one task while anyone listens."""

    def __init__(
        self,
        fetch: Callable[[], Any],
        interval: float = 1.0,
    ) -> None:
        self._fetch = fetch
        self.interval = interval
        self.calls: dict[Key, Call] = {}
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> None:
        now: dict[Key, Call] = await self._fetch()
        events = diff(self.calls, now)
        self.calls = now
        for event in events:
            for subscriber in list(self.subscribers):
                if subscriber.visible(event[1]):
                    self._offer(subscriber, event)

    def _offer(self, subscriber: Subscriber, event: tuple[str, Call] | None) -> None:
        try:
            subscriber.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Too slow: dropped, its queue emptied and closed (it reconnects if it can).
            subscriber.dropped = True
            self.subscribers.discard(subscriber)
            while not subscriber.queue.empty():
                subscriber.queue.get_nowait()
            subscriber.queue.put_nowait(None)

    async def _run(self) -> None:
        while self.subscribers:
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception:  # a poll's failure must not end every listener's stream
                log.exception("live calls: a poll failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        self._task = None

    @contextlib.asynccontextmanager
    async def subscribe(self, visible: Callable[[Call], bool]) -> AsyncIterator[Subscriber]:
        """A subscriber (its queue ends with None when it was dropped); the poller runs
        while there is one."""
        subscriber = Subscriber(visible)
        self.subscribers.add(subscriber)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    async def close(self) -> None:
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def calls_of(server: str, reply: Reply) -> dict[Key, Call]:
    """The calls of one server's ``/calls`` answer, keyed, each marked with its server."""
    listed = reply.body.get("calls") if reply.status == 200 else None
    if not isinstance(listed, list):
        return {}
    found: dict[Key, Call] = {}
    for call in listed[:MAX_CALLS]:
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            found[(server, call["id"])] = {**call, "server": server}
    return found


def problem(server: str, reply: Reply) -> str:
    return shown_plain(str(reply.body.get("error", f"server {server}: HTTP {reply.status}")))
