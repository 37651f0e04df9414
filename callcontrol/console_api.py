"""The operator console's HTTP API of one server, beside /health and /metrics.

    GET  /calls                   this server's live calls (the FastAGI front's too)
    POST /calls/{id}/hangup       end a call (202); its outcome says an operator did
    POST /calls/{id}/recording    {"action": "start" | "stop"} (202), 409 when it cannot be

With ``console_token`` set, every request needs ``Authorization: Bearer <token>`` (401
otherwise): live calls show tenants' numbers. Errors are ``{"error": "<one line>"}``.
``callcontrol console`` is the client.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web

from callcontrol.ari_ import shown_url
from callcontrol.fastagi import AgiFront
from callcontrol.session import CallSession

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Link(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def sessions(self) -> set[CallSession]: ...


def error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


HangUp = Callable[[str], Awaitable[bool]]
"""Hang up a channel by id wherever it is (ARI can end any channel); False: not found."""


class ConsoleApi:
    """The routes over a server's links, and its FastAGI front's calls: those live in
    Asterisk's dialplan, and ``hang_up`` ends one through ARI."""

    def __init__(
        self,
        server: str,
        links: Sequence[Link],
        token: str = "",
        agi: AgiFront | None = None,
        hang_up: HangUp | None = None,
    ) -> None:
        self.server = server
        self.links = links
        self.token = token
        self.agi = agi
        self.hang_up = hang_up

    def install(self, app: web.Application) -> None:
        app.router.add_get("/calls", self._guard(self.calls))
        app.router.add_post("/calls/{call_id}/hangup", self._guard(self.hangup))
        app.router.add_post("/calls/{call_id}/recording", self._guard(self.recording))

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.token:
                given = request.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                    return error(401, "a valid console token is required")
            return await handler(request)

        return guarded

    def _find(self, call_id: str) -> CallSession | None:
        for link in self.links:
            for session in link.sessions:
                if session.call_id == call_id:
                    return session
        return None

    async def calls(self, _request: web.Request) -> web.Response:
        listed = [
            {**session.snapshot(), "asterisk": shown_url(link.url)}
            for link in self.links
            for session in sorted(link.sessions, key=lambda s: s.start_time)
        ]
        if self.agi is not None:
            listed += [
                {**decided.snapshot(), "asterisk": "fastagi"}
                for decided in list(self.agi.decided.values())
            ]
        return web.json_response({"server": self.server, "calls": listed})

    async def hangup(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        session = self._find(call_id)
        if session is not None:
            await session.hang_up_by_operator()
            return web.json_response({"call": call_id, "action": "hangup"}, status=202)
        decided = self.agi.decided.get(call_id) if self.agi is not None else None
        if decided is not None and self.hang_up is not None:
            decided.by_operator = True
            if await self.hang_up(call_id):
                return web.json_response({"call": call_id, "action": "hangup"}, status=202)
            decided.by_operator = False
        return error(404, f"no live call {call_id} on {self.server}")

    async def recording(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("start", "stop"):
            return error(400, 'the body must be {"action": "start"} or {"action": "stop"}')
        session = self._find(call_id)
        if session is None:
            return error(404, f"no live call {call_id} on {self.server}")
        if not session.record_by_operator(action == "start"):
            return error(409, f"call {call_id} cannot be recorded (unanswered, or no feature)")
        return web.json_response({"call": call_id, "action": action}, status=202)
