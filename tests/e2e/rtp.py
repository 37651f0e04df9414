"""Count the RTP a SIPp party is sent: how a test hears early media without decoding it.

SIPp binds its own media ports and cannot say what reached them, so a scenario that must
hear audio advertises, in its SDP, the port of an :class:`RtpCounter` instead (pass it as
``-key rtp_port``; see :class:`SippWithKeys`). The counter is a UDP socket on this test's loop
that counts what arrives: RTP version 2 datagrams (packets, bytes, G.711 payload, when the
first and last came, from where) and anything else apart. It never sends: Asterisk (its
endpoints have ``rtp_symmetric``) sends early media to the SDP's address at once, without
waiting to learn the caller's address from the caller's own RTP.

Usage::

    async with rtp_counter() as rtp:
        caller = with_keys(sipp("terminal_refused_early_media.xml"), rtp_port=rtp.port)
        result = await run_sipp(caller, asterisk.sip_target, ...)
        await rtp.until_quiet()  # the stream ended (or never began)
    assert rtp.stats.packets >= 40, rtp.stats.describe()

Counting is bounded in time: after ``lifetime`` seconds the socket closes by itself, so a test
that forgets to leave the block cannot count (or hold the port) forever.

The counter also keeps every RFC 4733 telephone-event it is sent (DTMF as RTP, RFC 2833's
successor): ``rtp.stats.digits(payload_type)`` is the keys pressed, in order, one per event
however many packets carried it, for the payload type the SDP negotiated for
``telephone-event/8000`` (Asterisk offers 101; see :func:`telephone_event_payload_type`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from tests.e2e.harness import until
from tests.e2e.sipp import Sipp

RTP_HEADER = 12
"""Bytes of a fixed RTP header (RFC 3550 §5.1), before CSRCs and extensions."""
G711 = {0: "PCMU", 8: "PCMA"}
"""Static payload types whose payload is one byte per sample at 8 kHz."""
TELEPHONE_EVENT = 4
"""Bytes of one RFC 4733 event payload (event, E|R|volume, duration)."""
DTMF_KEYS = "0123456789*#ABCD"
"""RFC 4733 §3.2: event codes 0–15 are these keys, in this order."""


@dataclass(frozen=True)
class TelephoneEvent:
    """One RTP packet whose payload is one RFC 4733 event (RFC 4733 §2.3)."""

    payload_type: int
    ssrc: int
    sequence: int
    timestamp: int
    """The event's start: the same in every packet of one event, retransmissions included."""
    event: int
    end: bool
    volume: int
    duration: int
    """Samples at the RTP clock (8 kHz) since the event began."""
    marker: bool

    @property
    def key(self) -> str:
        """The DTMF key of the event ("?" for a code that is none, e.g. a hook flash)."""
        return DTMF_KEYS[self.event] if self.event < len(DTMF_KEYS) else "?"


@dataclass(frozen=True)
class Dtmf:
    """One key press: the packets of one event (same SSRC and RTP timestamp) folded."""

    key: str
    ssrc: int
    timestamp: int
    ended: bool
    """Whether an end packet (E bit) came."""
    duration: int
    """The longest duration its packets reported, in 8 kHz samples."""
    packets: int


@dataclass
class RtpStats:
    """What an :class:`RtpCounter` received so far."""

    packets: int = 0
    """RTP version 2 datagrams."""
    bytes: int = 0
    """Their size on the wire (UDP payload), headers included."""
    g711_bytes: int = 0
    """Bytes of G.711 payload (PCMU/PCMA): one sample each, at 8 kHz."""
    other: int = 0
    """Datagrams that are not RTP version 2 (never expected)."""
    payload_types: set[int] = field(default_factory=set)
    sources: set[tuple[str, int]] = field(default_factory=set)
    ssrcs: set[int] = field(default_factory=set)
    first_at: float | None = None
    last_at: float | None = None
    """``time.monotonic()`` of the first and last RTP packet."""
    events: list[TelephoneEvent] = field(default_factory=list)
    """Packets of a payload type other than G.711 whose payload is one RFC 4733 event, in
    order of arrival (which of them are DTMF depends on the negotiated payload type)."""

    def dtmf(self, payload_type: int) -> list[Dtmf]:
        """The events sent with ``payload_type``, in order, one per event. The packets of one
        event share its SSRC and RTP timestamp (RFC 4733 §2.5.1) and come in a row, so the
        updates and retransmitted end packets of one press fold into one; a packet with
        another SSRC or timestamp than the one before begins the next press (even one that
        repeats an earlier timestamp, as a capture replayed twice does)."""
        pressed: list[Dtmf] = []
        for packet in self.events:
            if packet.payload_type != payload_type:
                continue
            last = pressed[-1] if pressed else None
            if last is None or (last.ssrc, last.timestamp) != (packet.ssrc, packet.timestamp):
                pressed.append(
                    Dtmf(packet.key, packet.ssrc, packet.timestamp, packet.end, packet.duration, 1)
                )
                continue
            pressed[-1] = Dtmf(
                last.key,
                last.ssrc,
                last.timestamp,
                last.ended or packet.end,
                max(last.duration, packet.duration),
                last.packets + 1,
            )
        return pressed

    def digits(self, payload_type: int) -> str:
        """The keys pressed, in order (``"*5*5"``), one per event of ``payload_type``."""
        return "".join(press.key for press in self.dtmf(payload_type))

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio the G.711 payload carries."""
        return self.g711_bytes / 8000

    @property
    def span(self) -> float:
        """Seconds from the first RTP packet to the last (0 with fewer than two)."""
        if self.first_at is None or self.last_at is None:
            return 0.0
        return self.last_at - self.first_at

    def describe(self) -> str:
        events = ""
        if self.events:
            by_type = sorted({packet.payload_type for packet in self.events})
            events = ", telephone-events " + "; ".join(
                f"PT {pt}: {self.digits(pt)!r}" for pt in by_type
            )
        return (
            f"{self.packets} RTP packets, {self.bytes} bytes, "
            f"{self.audio_seconds:.2f} s of G.711 over {self.span:.2f} s, "
            f"payload types {sorted(self.payload_types)}, from {sorted(self.sources)}, "
            f"{len(self.ssrcs)} SSRC(s), {self.other} other datagram(s){events}"
        )


class RtpCounter(asyncio.DatagramProtocol):
    """A UDP sink on ``port`` counting RTP until it is closed or its lifetime ends."""

    def __init__(self) -> None:
        self.stats = RtpStats()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport is not a DatagramTransport subclass on every
        # Python, so no isinstance check: the endpoint we created is a datagram one.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        stats = self.stats
        header = _rtp_header_length(data)
        if header is None:
            stats.other += 1
            return
        now = time.monotonic()
        stats.packets += 1
        stats.bytes += len(data)
        payload_type = data[1] & 0x7F
        stats.payload_types.add(payload_type)
        if payload_type in G711:
            stats.g711_bytes += len(data) - header - _padding(data)
        elif len(data) - header - _padding(data) == TELEPHONE_EVENT:
            stats.events.append(_telephone_event(data, header))
        stats.sources.add((str(addr[0]), int(addr[1])))
        stats.ssrcs.add(int.from_bytes(data[8:12], "big"))
        if stats.first_at is None:
            stats.first_at = now
        stats.last_at = now

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def until_packets(self, packets: int, within: float = 10.0) -> None:
        """Wait for at least ``packets`` RTP packets; TimeoutError after ``within`` seconds."""
        await until(lambda: self.stats.packets >= packets, within)

    async def until_quiet(self, quiet: float = 0.3, within: float = 5.0) -> None:
        """Wait until no RTP came for ``quiet`` seconds (the stream ended, or never began)."""

        def silent() -> bool:
            last = self.stats.last_at
            return last is None or time.monotonic() - last >= quiet

        await until(silent, within)


def _rtp_header_length(data: bytes) -> int | None:
    """The length of the RTP header of ``data`` (CSRCs and extension included), or None when
    ``data`` is not an RTP version 2 packet (RTCP's payload types 200–204 are not RTP)."""
    if len(data) < RTP_HEADER or data[0] >> 6 != 2 or 72 <= data[1] & 0x7F <= 76:
        return None
    length = RTP_HEADER + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:  # a header extension: 4 bytes, then its length in 32-bit words
        if len(data) < length + 4:
            return None
        length += 4 + 4 * int.from_bytes(data[length + 2 : length + 4], "big")
    return length if length <= len(data) else None


def _padding(data: bytes) -> int:
    return data[-1] if data[0] & 0x20 and data else 0


def _telephone_event(data: bytes, header: int) -> TelephoneEvent:
    flags = data[header + 1]
    return TelephoneEvent(
        payload_type=data[1] & 0x7F,
        ssrc=int.from_bytes(data[8:12], "big"),
        sequence=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        event=data[header],
        end=bool(flags & 0x80),
        volume=flags & 0x3F,
        duration=int.from_bytes(data[header + 2 : header + 4], "big"),
        marker=bool(data[1] & 0x80),
    )


_TELEPHONE_EVENT_MAP = re.compile(r"^a=rtpmap:(\d+) telephone-event/8000", re.M | re.I)


def telephone_event_payload_type(sdp: str) -> int | None:
    """The payload type an SDP maps to ``telephone-event/8000`` (None when it has none)."""
    found = _TELEPHONE_EVENT_MAP.search(sdp.replace("\r\n", "\n"))
    return int(found[1]) if found else None


@contextlib.asynccontextmanager
async def rtp_counter(
    address: str = "127.0.0.1", lifetime: float = 60.0
) -> AsyncIterator[RtpCounter]:
    """An :class:`RtpCounter` on a free even port of ``address`` (RTP ports are even; RTCP
    goes to the next, which nobody holds), closed on leaving the block or after ``lifetime``
    seconds, whichever comes first."""
    loop = asyncio.get_running_loop()
    counter: RtpCounter | None = None
    for _ in range(50):
        transport, protocol = await loop.create_datagram_endpoint(
            RtpCounter, local_addr=(address, 0), family=socket.AF_INET
        )
        if protocol.port % 2 == 0 and protocol.port < 65000:
            counter = protocol
            break
        transport.close()
    if counter is None:
        raise RuntimeError("no free even UDP port found in 50 tries")
    expiry = loop.call_later(lifetime, counter.close)
    try:
        yield counter
    finally:
        expiry.cancel()
        counter.close()


@dataclass(frozen=True)
class SippWithKeys(Sipp):
    """A SIPp role given extra ``-key name value`` pairs: ``[name]`` in its scenario (e.g.
    ``[rtp_port]``, the port of an :class:`RtpCounter` the SDP advertises)."""

    keys: tuple[tuple[str, str], ...] = ()

    def command(self, remote: str | None, **options: object) -> tuple[list[str], str]:
        command, stem = super().command(remote, **options)  # type: ignore[arg-type]
        for name, value in self.keys:
            command += ["-key", name, value]
        return command, stem


def with_keys(role: Sipp, **keys: object) -> SippWithKeys:
    """``role`` with ``-key`` values for its scenario."""
    return SippWithKeys(
        role.scenario,
        role.local_port,
        role.media_port,
        role.workdir,
        role.address,
        role.scenarios,
        keys=tuple((name, str(value)) for name, value in keys.items()),
        messages=role.messages,
    )
