"""The operator console's HTTP API of one server, beside /health and /metrics.

    GET  /calls                   this server's live calls (the FastAGI front's too)
    POST /calls/{id}/hangup       end a call (202); its outcome says an operator did
    POST /calls/{id}/recording    {"action": "start" | "stop"} (202), 409 when it cannot be

With ``console_token`` set, every request needs ``Authorization: Bearer <token>`` (401
otherwise): live calls show tenants' numbers, and an action ends or records a call. Without
one, ``run`` serves the console only on a loopback ``health_host`` (:func:`check_exposure`).
Every operator action is logged in one line: who (the peer's address), what, which call.
Errors are ``{"error": "<one line>"}``: a malformed request is a 4xx, never a 500.
``callcontrol console`` is the client.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from callcontrol.errors import AriError
from callcontrol.fastagi import AgiFront
from callcontrol.masking import shown_url
from callcontrol.session import CallSession
from dialplan.errors import ConfigError, shown, shown_plain

log = logging.getLogger("callcontrol.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY = 64 * 1024
"""Bytes a request's body may have (after decompression); more is 413. The one body
read, ``{"action": "start"}``, is twenty."""


class Link(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def sessions(self) -> set[CallSession]: ...


def error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


class Refused(Exception):
    """A request answered with ``status`` and the one line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_loopback(host: str) -> bool:
    """True when ``host`` (``health_host``) listens on this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a name, "" or "0.0.0.0"-like: not known to be loopback
        return False


def check_exposure(host: str, port: int, token: str) -> None:
    """``run``'s rule for the console's /calls: without ``console_token`` it is served on a
    loopback ``health_host`` only (with a warning); elsewhere that is a ConfigError."""
    if token or not port:
        return
    if not is_loopback(host):
        raise ConfigError(
            f"health_host {shown(host)} is not a loopback address and console_token is "
            "not set: anyone reaching it could hang up calls; set console_token "
            "(or health_host = 127.0.0.1)"
        )
    log.warning(
        "console on %s:%d has no console_token: any local user can list, hang up and record calls",
        host,
        port,
    )


HangUp = Callable[[str], Awaitable[bool]]
"""Hang up a channel by id wherever it is (ARI can end any channel); False: not found."""


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


async def _body(request: web.Request) -> Any:
    """The request's JSON body, at most MAX_BODY bytes of UTF-8; Refused otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused(413, f"the body is over {MAX_BODY} bytes")
    charset = (request.charset or "utf-8").strip().lower()
    try:
        encoding = codecs.lookup(charset).name
    except LookupError:
        raise Refused(415, f"unknown charset {shown(charset)}: send UTF-8 JSON") from None
    if encoding not in ("utf-8", "ascii"):
        raise Refused(415, f"charset {shown(charset)} is not accepted: send UTF-8 JSON")
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refused(413, f"the body is over {MAX_BODY} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(400, f"the body is not JSON ({exc.msg} at {exc.pos})") from None
    except RecursionError:
        raise Refused(400, "the body is nested too deeply") from None


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
        self.agi = agi
        self.hang_up = hang_up
        self._expected = _digest(f"Bearer {token}".encode()) if token else None

    def install(self, app: web.Application) -> None:
        app.middlewares.append(_json_errors)
        app.router.add_get("/calls", self._guard(self.calls))
        app.router.add_post("/calls/{call_id}/hangup", self._guard(self.hangup))
        app.router.add_post("/calls/{call_id}/recording", self._guard(self.recording))

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self._expected is not None:
                # The header as its bytes (aiohttp keeps undecodable ones as surrogates),
                # both sides hashed: the comparison takes as long whatever was sent.
                given = request.headers.get("Authorization", "")
                raw = given.encode("utf-8", "surrogateescape")
                if not hmac.compare_digest(_digest(raw), self._expected):
                    log.warning(
                        "console: %s %s refused to %s: no valid token",
                        request.method,
                        shown_plain(request.path),
                        _peer(request),
                    )
                    return error(401, "a valid console token is required")
            try:
                return await handler(request)
            except Refused as refused:
                return error(refused.status, refused.reason)

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
        peer = _peer(request)
        try:
            done = await self._hang_up(call_id)
        except AriError as exc:
            _logged(peer, "hangup", call_id, f"Asterisk refused: {exc}")
            return error(502, f"call {shown_plain(call_id)}: Asterisk refused the hang-up ({exc})")
        if not done:
            _logged(peer, "hangup", call_id, "no such live call (404)")
            return error(404, f"no live call {shown_plain(call_id)} on {self.server}")
        _logged(peer, "hangup", call_id, "done (202)")
        return web.json_response({"call": call_id, "action": "hangup"}, status=202)

    async def _hang_up(self, call_id: str) -> bool:
        session = self._find(call_id)
        if session is not None:
            await session.hang_up_by_operator()
            return True
        decided = self.agi.decided.get(call_id) if self.agi is not None else None
        if decided is not None and self.hang_up is not None:
            decided.by_operator = True
            if await self.hang_up(call_id):
                return True
            decided.by_operator = False
        return False

    async def recording(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        peer = _peer(request)
        try:
            body = await _body(request)
        except Refused as refused:
            _logged(peer, "recording", call_id, f"malformed ({refused.status}): {refused.reason}")
            raise
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("start", "stop"):
            _logged(peer, "recording", call_id, "malformed (400): no start or stop")
            return error(400, 'the body must be {"action": "start"} or {"action": "stop"}')
        what = f"recording {action}"
        session = self._find(call_id)
        if session is None:
            _logged(peer, what, call_id, "no such live call (404)")
            return error(404, f"no live call {shown_plain(call_id)} on {self.server}")
        if not session.record_by_operator(action == "start"):
            _logged(peer, what, call_id, "cannot be recorded (409)")
            return error(
                409, f"call {shown_plain(call_id)} cannot be recorded (unanswered, or no feature)"
            )
        _logged(peer, what, call_id, "done (202)")
        return web.json_response({"call": call_id, "action": action}, status=202)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals under /calls (no such route, a method it does not take) in
    the console's shape: one JSON line, like every other answer of the API."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/calls"):
            raise
        return error(exc.status, f"{exc.reason}: {request.method} {shown_plain(request.path)}")


def _peer(request: web.Request) -> str:
    return request.remote or "an unknown peer"


def _logged(peer: str, what: str, call_id: str, result: str) -> None:
    """The one line an operator action leaves: who, what, which call, and how it ended."""
    log.info("operator at %s: %s of call %s: %s", peer, what, shown_plain(call_id), result)
