"""A small SIP user agent over UDP, the terminals and carriers of ``callcontrol demo
--platform`` and of the edge's tests: it registers and calls with digest authentication
(qop=auth, MD5 as SIP digest requires), answers requests with a fixed status per method,
sends ACK and BYE in a dialog, and keeps every message it received so a caller can read
headers and bodies. Every wait for an answer is bounded (``within`` seconds, then
TimeoutError). No media: the SDP names a port that nothing needs to listen on."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast


@dataclass
class Message:
    first: str
    headers: list[tuple[str, str]]
    body: str
    source: tuple[str, int]

    @property
    def status(self) -> int:
        return int(self.first.split(" ")[1]) if self.first.startswith("SIP/2.0 ") else 0

    @property
    def method(self) -> str:
        return "" if self.status else self.first.split(" ", 1)[0]

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key == name.lower()), "")

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]


def parse(data: bytes, source: tuple[str, int]) -> Message:
    text = data.decode(errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return Message(lines[0], headers, body, source)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sdp(address: str, port: int) -> str:
    return "\r\n".join(
        [
            "v=0",
            f"o=- 1 1 IN IP4 {address}",
            "s=-",
            f"c=IN IP4 {address}",
            "t=0 0",
            f"m=audio {port} RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            "",
        ]
    )


@dataclass
class Agent(asyncio.DatagramProtocol):
    """One UDP SIP socket: sends requests, answers requests by ``answer`` (status for each
    method; OPTIONS always 200), keeps what it received."""

    answer: dict[str, str] = field(default_factory=lambda: {"INVITE": "486 Busy Here"})
    received: list[Message] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    waiters: list[tuple[str, asyncio.Future[Message]]] = field(default_factory=list)
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    media_port: int = 32000
    """The RTP port our SDP names (nothing listens there)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse(data, addr)
        self.received.append(message)
        if message.status:
            key = f"{message.header('call-id')} {message.header('cseq')}"
            for wanted, future in self.waiters:
                if wanted == key and message.status >= 200 and not future.done():
                    future.set_result(message)
            return
        if message.method == "OPTIONS":
            self.reply(message, "200 OK")
        elif message.method in self.answer:
            self.reply(message, self.answer[message.method])
        elif message.method in ("BYE", "CANCEL"):
            self.reply(message, "200 OK")

    def requests(self, method: str) -> list[Message]:
        return [m for m in self.received if m.method == method]

    def reply(self, request: Message, status: str) -> None:
        """Answer ``request``; a 2xx to an INVITE with an offer answers it (our address,
        ``media_port``) and names our Contact."""
        host, port = self.address
        body = ""
        if request.method == "INVITE" and status.startswith("2") and request.body:
            body = sdp(host, self.media_port)
        lines = [f"SIP/2.0 {status}"]
        lines += [f"Via: {value}" for value in request.all("via")]
        lines += [f"Record-Route: {value}" for value in request.all("record-route")]
        lines += [f"From: {request.header('from')}"]
        to = request.header("to")
        lines += [f"To: {to}" if ";tag=" in to else f"To: {to};tag={self.tag}"]
        lines += [f"Call-ID: {request.header('call-id')}", f"CSeq: {request.header('cseq')}"]
        if request.method == "INVITE":
            lines.append(f"Contact: <sip:agent@{host}:{port}>")
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body.encode())}", "", body]
        assert self.transport is not None
        self.transport.sendto("\r\n".join(lines).encode(), request.source)

    async def in_dialog(
        self, to: tuple[str, int], method: str, answer: Message, *, within: float = 10.0
    ) -> Message | None:
        """Send ``method`` within the dialog a 2xx ``answer`` (to our INVITE) set up: to its
        Contact, along its Record-Route set. ACK gets no answer (None)."""
        assert self.transport is not None
        host, port = self.address
        contact = answer.header("contact").strip("<>").split(">", 1)[0]
        routes = [value for header in answer.all("record-route") for value in header.split(",")]
        number = int(answer.header("cseq").split()[0])
        cseq = number if method == "ACK" else number + 1
        branch = secrets.token_hex(6)
        lines = [
            f"{method} {contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport",
            "Max-Forwards: 70",
            *[f"Route: {route.strip()}" for route in reversed(routes)],
            f"From: {answer.header('from')}",
            f"To: {answer.header('to')}",
            f"Call-ID: {answer.header('call-id')}",
            f"CSeq: {cseq} {method}",
            "Content-Length: 0",
            "",
            "",
        ]
        if method == "ACK":
            self.transport.sendto("\r\n".join(lines).encode(), to)
            return None
        return await self._send_and_wait(
            to, lines, f"{answer.header('call-id')} {cseq} {method}", within
        )

    async def request(
        self,
        to: tuple[str, int],
        method: str,
        uri: str,
        *,
        from_uri: str,
        to_uri: str,
        headers: tuple[str, ...] = (),
        body: str = "",
        call_id: str | None = None,
        cseq: int = 1,
        within: float = 10.0,
    ) -> Message:
        """Send one request; its final response (TimeoutError when none comes)."""
        assert self.transport is not None
        host, port = self.address
        call_id = call_id or secrets.token_hex(8)
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <{from_uri}>;tag={self.tag}",
            f"To: <{to_uri}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{from_uri.split(':', 1)[1].split('@', 1)[0]}@{host}:{port}>",
            *headers,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body.encode())}", "", body]
        return await self._send_and_wait(to, lines, f"{call_id} {cseq} {method}", within)

    async def _send_and_wait(
        self, to: tuple[str, int], lines: list[str], key: str, within: float
    ) -> Message:
        """Send a request's ``lines``; its final response, matched by ``key`` ("CALL-ID
        CSEQ METHOD"), within ``within`` seconds (TimeoutError when none comes)."""
        assert self.transport is not None
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        waiter = (key, future)
        self.waiters.append(waiter)
        try:
            self.transport.sendto("\r\n".join(lines).encode(), to)
            return await asyncio.wait_for(future, within)
        finally:
            self.waiters.remove(waiter)

    async def authenticated(
        self,
        to: tuple[str, int],
        method: str,
        uri: str,
        *,
        user: str,
        domain: str,
        password: str,
        to_uri: str,
        headers: tuple[str, ...] = (),
        body: str = "",
        within: float = 10.0,
    ) -> tuple[Message, Message]:
        """A request, then (when challenged) the same with digest credentials:
        (the challenge or first answer, the final answer)."""
        call_id = secrets.token_hex(8)
        from_uri = f"sip:{user}@{domain}"
        first = await self.request(
            to,
            method,
            uri,
            from_uri=from_uri,
            to_uri=to_uri,
            headers=headers,
            body=body,
            call_id=call_id,
            within=within,
        )
        if first.status not in (401, 407):
            return first, first
        challenge = first.header(
            "www-authenticate" if first.status == 401 else "proxy-authenticate"
        )
        values = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        cnonce, nc = secrets.token_hex(4), "00000001"
        ha1 = md5(f"{user}:{values['realm']}:{password}")
        ha2 = md5(f"{method}:{uri}")
        response = md5(f"{ha1}:{values['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        name = "Authorization" if first.status == 401 else "Proxy-Authorization"
        credentials = (
            f'{name}: Digest username="{user}", realm="{values["realm"]}", '
            f'nonce="{values["nonce"]}", uri="{uri}", response="{response}", '
            f'algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )
        second = await self.request(
            to,
            method,
            uri,
            from_uri=from_uri,
            to_uri=to_uri,
            headers=(*headers, credentials),
            body=body,
            call_id=call_id,
            cseq=2,
            within=within,
        )
        return first, second

    async def register(
        self,
        edge: tuple[str, int],
        user: str,
        domain: str,
        password: str,
        *,
        expires: int = 300,
        within: float = 10.0,
    ) -> tuple[Message, Message]:
        """REGISTER ``user@domain`` at ``edge`` with digest credentials (``expires`` 0
        removes our contact): (the challenge or first answer, the final answer)."""
        return await self.authenticated(
            edge,
            "REGISTER",
            f"sip:{domain}",
            user=user,
            domain=domain,
            password=password,
            to_uri=f"sip:{user}@{domain}",
            headers=(f"Expires: {expires}",),
            within=within,
        )

    async def invite(
        self,
        edge: tuple[str, int],
        user: str,
        domain: str,
        password: str,
        number: str,
        *,
        headers: tuple[str, ...] = (),
        body: str = "",
        within: float = 10.0,
    ) -> tuple[Message, Message]:
        """INVITE ``number@domain`` at ``edge`` as ``user``, with digest credentials when
        challenged: (the challenge or first answer, the final answer)."""
        return await self.authenticated(
            edge,
            "INVITE",
            f"sip:{number}@{domain}",
            user=user,
            domain=domain,
            password=password,
            to_uri=f"sip:{number}@{domain}",
            headers=headers,
            body=body,
            within=within,
        )

    async def call_in(
        self,
        edge: tuple[str, int],
        number: str,
        caller: str,
        *,
        media_port: int,
        within: float = 10.0,
    ) -> Message:
        """As a carrier: INVITE ``number`` (a DDI) at ``edge`` from ``caller`` at our
        address, our SDP naming ``media_port``; the final answer."""
        host = self.address[0]
        return await self.request(
            edge,
            "INVITE",
            f"sip:{number}@{edge[0]}:{edge[1]}",
            from_uri=f"sip:{caller}@{host}",
            to_uri=f"sip:{number}@{edge[0]}",
            body=sdp(host, media_port),
            within=within,
        )


@contextlib.asynccontextmanager
async def agent(host: str, port: int = 0, **answer: str) -> AsyncIterator[Agent]:
    """An :class:`Agent` bound to ``host:port`` for the block, answering each method named
    in ``answer`` with its status (default: INVITE gets 486)."""
    loop = asyncio.get_running_loop()
    answers = answer or {"INVITE": "486 Busy Here"}
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Agent(answer=dict(answers)), local_addr=(host, port)
    )
    try:
        yield protocol
    finally:
        transport.close()
