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
"""

from __future__ import annotations

import asyncio
import contextlib
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
        return (
            f"{self.packets} RTP packets, {self.bytes} bytes, "
            f"{self.audio_seconds:.2f} s of G.711 over {self.span:.2f} s, "
            f"payload types {sorted(self.payload_types)}, from {sorted(self.sources)}, "
            f"{len(self.ssrcs)} SSRC(s), {self.other} other datagram(s)"
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
        tuple((name, str(value)) for name, value in keys.items()),
    )
