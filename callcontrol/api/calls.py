"""Live calls through the API: every server's ``/calls`` (found in the shared database,
:mod:`callcontrol.api.servers`), scoped per administrator by :func:`decide`:

- listing and the live events: section ``billable_calls``, read (a live call becomes a CDR);
- hang up: ``billable_calls``, update;
- recording start: ``recordings``, create; stop: ``recordings``, update.

A call whose client is not yet known (still deciding) is god's alone. A call outside the
caller's scope answers 404, as one that does not exist. Every action is audited.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.access import ClientFacts, Decision, Principal, Verb, decide, shows_prices
from callcontrol.api.accounts import resolve
from callcontrol.api.context import Caller, Context, Credentials
from callcontrol.api.servers import (
    Call,
    Console,
    Key,
    LiveCalls,
    ask,
    calls_of,
    consoles,
    problem,
)
from models.admins import record
from models.counters import client_counters
from models.tenants import Client, ClientFeature

PAGE = Path(__file__).with_name("console.html")
TICKET_TTL = 30.0
"""Seconds a stream ticket (``EventSource`` sends no header) may wait to be used, once."""
MAX_TICKETS = 1024
STREAM_LIFETIME = 3600.0
"""Seconds one event stream lasts at most; the page opens another."""
PING = 15.0
"""Seconds between two keep-alive comments of a quiet stream."""


async def all_facts(engine: AsyncEngine) -> dict[int, ClientFacts]:
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    Client.id,
                    Client.brand_id,
                    Client.show_invoices,
                    Client.show_rating_profiles,
                    Client.show_external_call_prices,
                    Client.allow_recording_removal,
                )
            )
        ).all()
        features: dict[int, set[str]] = {}
        for client_id, feature in await connection.execute(
            select(ClientFeature.client_id, ClientFeature.feature)
        ):
            features.setdefault(client_id, set()).add(feature)
    return {
        row.id: ClientFacts(
            id=row.id,
            brand_id=row.brand_id,
            features=frozenset(features.get(row.id, ())),
            show_invoices=bool(row.show_invoices),
            show_rating_profiles=bool(row.show_rating_profiles),
            show_external_call_prices=bool(row.show_external_call_prices),
            allow_recording_removal=bool(row.allow_recording_removal),
        )
        for row in rows
    }


def decision_on(
    who: Principal, facts: dict[int, ClientFacts], call: Call, section: str, verb: Verb
) -> Decision:
    client_id = call.get("client_id")
    client = facts.get(client_id) if isinstance(client_id, int) else None
    if client is None:
        return Decision.ALLOW if who.kind == "god" else Decision.NOT_FOUND
    return decide(who, client, section, verb)


def shown_call(who: Principal, call: Call) -> Call:
    """The call as ``who`` sees it: the Asterisk URL is the platform operator's."""
    return call if who.kind == "god" else {k: v for k, v in call.items() if k != "asterisk"}


@dataclass(frozen=True, slots=True)
class Ticket:
    who: Principal
    until: float
    token: str = field(repr=False)
    """The bearer token it was given for: the stream ends when that session does."""


class Fleet:
    """The servers' consoles as one API process reaches them."""

    def __init__(
        self, engine: AsyncEngine, key: str, interval: float = 1.0, timeout: float = 5.0
    ) -> None:
        self.engine = engine
        self.key = key
        self.timeout = timeout
        self.facts: dict[int, ClientFacts] = {}
        self.problems: list[str] = []
        self.live = LiveCalls(self.snapshot, interval)
        self.tickets: dict[str, Ticket] = {}
        self._http: aiohttp.ClientSession | None = None

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    async def console(self, server: str) -> Console | None:
        for found in await consoles(self.engine, self.key):
            if found.server == server:
                return found
        return None

    async def snapshot(self) -> dict[Key, Call]:
        """Every server's calls now (and the clients' facts, refreshed with them)."""
        found = await consoles(self.engine, self.key)
        replies = await asyncio.gather(*(ask(self.http(), c, "GET", "/calls") for c in found))
        self.facts = await all_facts(self.engine)
        calls: dict[Key, Call] = {}
        problems = []
        for console, reply in zip(found, replies, strict=True):
            if reply.status != 200:
                problems.append(problem(console.server, reply))
            calls.update(calls_of(console.server, reply))
        self.problems = problems
        return calls

    def ticket(self, who: Principal, token: str) -> str:
        now = time.monotonic()
        self.tickets = {k: t for k, t in self.tickets.items() if t.until > now}
        if len(self.tickets) >= MAX_TICKETS:
            raise HTTPException(429, "too many stream tickets waiting: try again shortly")
        value = secrets.token_urlsafe(24)
        self.tickets[value] = Ticket(who, now + TICKET_TTL, token)
        return value

    def redeem(self, value: str) -> Ticket | None:
        found = self.tickets.pop(value, None)
        return found if found is not None and found.until > time.monotonic() else None

    async def close(self) -> None:
        await self.live.close()
        if self._http is not None:
            await self._http.close()


def fleet(request: Request) -> Fleet:
    found = request.app.state.fleet
    assert isinstance(found, Fleet)
    return found


async def _audit(engine: AsyncEngine, who: Principal, facts: ClientFacts | None, note: str,
                 target: str, call: Call) -> None:  # fmt: skip
    entry = who.note(
        note,
        target,
        brand_id=facts.brand_id if facts is not None else None,
        client_id=facts.id if facts is not None else None,
        before={k: v for k, v in call.items() if k != "asterisk"},
    )
    async with engine.begin() as connection:
        await record(connection, entry)


def install(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    @app.get("/console", include_in_schema=False)
    async def page() -> HTMLResponse:
        """The live console page (one static file: the data comes from the API)."""
        return HTMLResponse(
            PAGE.read_text(encoding="utf-8"),
            headers={
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    @app.get("/api/calls", tags=["calls"])
    async def calls(who: Caller, request: Request) -> dict[str, Any]:
        """The live calls of every server that the caller may see (``billable_calls``, read)."""
        servers = fleet(request)
        now = await servers.snapshot()
        visible = [
            shown_call(who, call)
            for call in now.values()
            if decision_on(who, servers.facts, call, "billable_calls", "read") is Decision.ALLOW
        ]
        return {"calls": visible, "problems": servers.problems if who.kind == "god" else []}

    async def act(
        who: Principal,
        request: Request,
        server: str,
        call_id: str,
        section: str,
        verb: Verb,
        path: str,
        body: object,
        action: str,
    ) -> dict[str, Any]:
        servers = fleet(request)
        console = await servers.console(server)
        if console is None:
            raise HTTPException(404, f"no live call {call_id} on {server}")
        reply = await ask(servers.http(), console, "GET", "/calls")
        if reply.status != 200:
            raise HTTPException(502, problem(server, reply))
        call = calls_of(server, reply).get((server, call_id))
        facts = await all_facts(servers.engine)
        decision = (
            Decision.NOT_FOUND if call is None else decision_on(who, facts, call, section, verb)
        )
        if decision is Decision.NOT_FOUND:
            raise HTTPException(404, f"no live call {call_id} on {server}")
        if decision is Decision.DENY:
            raise HTTPException(403, f"{who.username} may not {verb} {section}")
        assert call is not None
        quoted = urllib.parse.quote(call_id, safe="")
        done = await ask(servers.http(), console, "POST", f"/calls/{quoted}/{path}", body)
        if done.status != 202:
            raise HTTPException(
                done.status if done.status in (404, 409) else 502, problem(server, done)
            )
        client_id = call.get("client_id")
        await _audit(
            servers.engine,
            who,
            facts.get(client_id) if isinstance(client_id, int) else None,
            action,
            f"{server}/{call_id}",
            call,
        )
        return {"server": server, "call": call_id, "action": action}

    @app.post("/api/calls/{server}/{call_id}/hangup", status_code=202, tags=["calls"])
    async def hangup(server: str, call_id: str, who: Caller, request: Request) -> dict[str, Any]:
        """End a live call (``billable_calls``, update); audited."""
        return await act(
            who, request, server, call_id, "billable_calls", "update", "hangup", None, "call.hangup"
        )

    @app.post("/api/calls/{server}/{call_id}/record/{action}", status_code=202, tags=["calls"])
    async def recording(
        server: str,
        call_id: str,
        action: Literal["start", "stop"],
        who: Caller,
        request: Request,
    ) -> dict[str, Any]:
        """Start (``recordings``, create) or stop (``recordings``, update) recording a live
        call; audited."""
        verb: Verb = "create" if action == "start" else "update"
        return await act(
            who,
            request,
            server,
            call_id,
            "recordings",
            verb,
            "recording",
            {"action": action},
            f"call.record_{action}",
        )

    @app.get("/api/counters", tags=["calls"])
    async def counters(who: Caller, context: Context) -> list[dict[str, Any]]:
        """Each visible client's live external calls (``max_calls``: 0 is no limit) and its
        local ``day``; today's spend, daily limit and balance only where its prices are
        shown to the caller."""
        facts = await all_facts(context.engine)
        shown = []
        async with context.engine.connect() as connection:
            ids = {
                row.name: row.id for row in await connection.execute(select(Client.id, Client.name))
            }
        for found in await client_counters(context.engine):
            client = facts.get(ids.get(found.client, -1))
            if (
                client is None
                or decide(who, client, "billable_calls", "read") is not Decision.ALLOW
            ):
                continue
            shown.append(found.shown(shows_prices(who, client)))
        return shown

    @app.post("/api/calls/events/ticket", tags=["calls"])
    async def ticket(who: Caller, request: Request, credentials: Credentials) -> dict[str, Any]:
        """A one-use ticket for ``GET /api/calls/events?ticket=`` (``EventSource`` sends
        no header), valid for TICKET_TTL seconds."""
        if not who.may("billable_calls", "read"):
            raise HTTPException(403, f"{who.username} may not read billable_calls")
        assert credentials is not None  # the Caller dependency refused a request without
        value = fleet(request).ticket(who, credentials.credentials)
        return {"ticket": value, "expires_in": TICKET_TTL}

    @app.get("/api/calls/events", tags=["calls"], response_model=None)
    async def events(ticket: str, request: Request, context: Context) -> StreamingResponse:
        """Server-sent events of the visible calls: ``start``, ``answer``, ``update``,
        ``end`` (each ``data`` a call as ``GET /api/calls`` lists it); ``expired`` when
        the session ends (logout or expiry), ``dropped`` when the listener fell behind."""
        servers = fleet(request)
        found = servers.redeem(ticket)
        if found is None:
            raise HTTPException(401, "the stream ticket is unknown, used or expired")
        who = found.who
        check_every = min(PING, 5 * servers.live.interval)

        def visible(call: Call) -> bool:
            decision = decision_on(who, servers.facts, call, "billable_calls", "read")
            return decision is Decision.ALLOW

        async def stream() -> AsyncIterator[str]:
            ends = time.monotonic() + STREAM_LIFETIME
            async with servers.live.subscribe(visible) as subscriber:
                yield ": connected\n\n"
                while time.monotonic() < ends and not await request.is_disconnected():
                    try:
                        event = await asyncio.wait_for(subscriber.queue.get(), check_every)
                    except TimeoutError:
                        if await resolve(context.engine, found.token, context.clock) is None:
                            yield "event: expired\ndata: {}\n\n"
                            return
                        yield ": ping\n\n"
                        continue
                    if event is None:
                        yield "event: dropped\ndata: {}\n\n"
                        return
                    name, call = event
                    yield f"event: {name}\ndata: {json.dumps(shown_call(who, call))}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
