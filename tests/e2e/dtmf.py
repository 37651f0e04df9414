"""RFC 2833 / RFC 4733 DTMF captures for SIPp's ``<exec play_pcap_audio="…"/>``.

The sip-tester package ships one capture per digit, ``dtmf_2833_<d>.pcap`` for 0–9
(:func:`shipped_capture`); a test that needs another key (``*`` for ``*<code>``) gets one built
at test time by :func:`build_capture`, which rewrites the event of a shipped digit's capture.
(Debian's 3.6.1 also ships ``dtmf_2833_star.pcap`` and ``_pound``; the tests do not count on
them, and use the shipped star only to check the one built.) No pcap library: the layout below
is all this module relies on, and :func:`read_capture` checks it, failing loudly when a
capture differs.

The layout of the shipped captures (as sip-tester 3.6.1 ships them)
--------------------------------------------------------------------
A classic libpcap file, little-endian, microsecond timestamps:

- global header, 24 bytes ``<IHHiIII``: magic ``0xa1b2c3d4``, version 2.4, thiszone, sigfigs,
  snaplen 65535, link type 1 (Ethernet);
- then one record per packet: a 16-byte header ``<IIII`` (seconds, microseconds, captured
  length, original length; the two lengths are equal, SIPp refuses truncated packets) and the
  frame:

  - Ethernet II, 14 bytes, EtherType ``0x0800`` (IPv4);
  - IPv4, 20 bytes (IHL 5, no options), protocol 17 (UDP);
  - UDP, 8 bytes: ports ``49176 → 10000``, length, a checksum over the IPv4 pseudo-header;
  - RTP, 12 bytes (RFC 3550 §5.1): version 2, no CSRC, no extension, payload type 101, the
    marker bit on the first packet of the event only, a sequence number rising by one per
    packet, one RTP timestamp (the event's start) for all its packets, one SSRC;
  - the telephone-event payload, 4 bytes (RFC 4733 §2.3): the event code (0–9 the digits,
    10 ``*``, 11 ``#``), then ``E|R|volume`` (E, bit 7, marks the end; volume 10), then the
    duration so far in 8 kHz samples (16 bits).

- Ten packets: seven in progress 20 ms apart (duration 0, 320 … 1920), 20 ms later the end
  packet (duration 2240), sent three times within a millisecond with the same sequence number
  (the retransmission RFC 4733 §2.5.1.4 asks for). The whole plays in 0.14 s, though the
  durations, rising 40 ms a packet, claim 280 ms (Asterisk reports ``duration_ms`` 280).

What SIPp does with it (``play_pcap_audio``): it keeps each packet's UDP payload as it is (RTP
sequence numbers, timestamp and SSRC of the capture, not the call's), sends it from the call's
media address (``-mi``/``-mp``) to the address and port the peer's SDP announced, paced by the
capture's timestamps, through a raw socket (root only), recomputing the UDP checksum from the
payload. A play runs in the background: the scenario must pause at least a capture's length
(~0.15 s) before the next play, or the next one replaces it.

Rewriting the event (:func:`build_capture`) changes one byte per packet and the UDP checksum
that covers it; timestamps, sequence numbers, durations, marker and end bits stay those of the
source capture, so the built event is as coherent as the shipped one. The capture of ``1`` is
the default source (any shipped digit would do; its ``*`` matches the shipped
``dtmf_2833_star.pcap`` field for field but for sequence numbers and timestamp).

Several keys in one call (:func:`key_stream`) get one capture each, renumbered into one
stream: every shipped capture has the same SSRC, but its own sequence numbers and timestamp,
and replaying one twice would send the same event twice. Asterisk's native RTP bridge
forwards such packets to the other party untouched, so what a test reads there is what it sent.

Usage::

    star = build_capture("*", tmp_path)           # dtmf_2833_star.pcap, from the shipped "1"
    five = shipped_capture("5")                   # the package's own
    paths = key_stream([(0.0, "*"), (0.3, "5")], tmp_path)   # one coherent "*5"
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "sip-tester"
DEFAULT_FOLDER = Path("/usr/share/sip-tester")
"""Where the Debian package puts the captures; asked of ``dpkg -L`` first."""

EVENTS = {**{str(digit): digit for digit in range(10)}, "*": 10, "#": 11}
"""RFC 4733 §3.2: the event code of each DTMF key (A–D, 12–15, are not used here)."""
KEYS = {code: key for key, code in EVENTS.items()}
SOURCE_DIGIT = "1"
"""The shipped capture :func:`build_capture` rewrites."""

PCAP_MAGIC = 0xA1B2C3D4
PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
LINKTYPE_ETHERNET = 1
ETHERNET = 14
ETHERTYPE_IPV4 = 0x0800
UDP_PROTOCOL = 17
UDP_HEADER = 8
RTP_HEADER = 12
TELEPHONE_EVENT = 4
"""Bytes of one RFC 4733 event payload."""


class CaptureError(ValueError):
    """A capture is not laid out the way this module relies on (see the module docstring)."""


@dataclass(frozen=True)
class CapturedEvent:
    """One packet of a DTMF capture, as SIPp will send it."""

    at: float
    """Seconds since the capture's first packet."""
    source_port: int
    destination_port: int
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    event: int
    end: bool
    volume: int
    duration: int
    """Samples at 8 kHz since the event began."""
    checksum_ok: bool
    """Whether the UDP checksum matches the packet (SIPp recomputes it anyway)."""

    @property
    def key(self) -> str:
        return KEYS[self.event]


def captures_folder() -> Path | None:
    """The folder of the shipped DTMF captures, as ``dpkg -L sip-tester`` lists it (the
    Debian default when dpkg cannot say); None when the captures are not installed."""
    folder = DEFAULT_FOLDER
    dpkg = shutil.which("dpkg")
    if dpkg is not None:
        listed = subprocess.run(
            [dpkg, "-L", PACKAGE], capture_output=True, text=True, check=False, timeout=30
        )
        for line in listed.stdout.splitlines():
            if line.endswith(f"/dtmf_2833_{SOURCE_DIGIT}.pcap"):
                folder = Path(line).parent
                break
    return folder if (folder / f"dtmf_2833_{SOURCE_DIGIT}.pcap").is_file() else None


def shipped_capture(digit: str, folder: Path | None = None) -> Path:
    """The capture sip-tester ships for ``digit`` (0–9); FileNotFoundError without it."""
    if digit not in "0123456789" or len(digit) != 1:
        raise ValueError(f"sip-tester ships captures for the digits 0-9, not {digit!r}")
    folder = folder or captures_folder()
    path = (folder or DEFAULT_FOLDER) / f"dtmf_2833_{digit}.pcap"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: install the Debian package {PACKAGE}")
    return path


def capture_for(key: str, workdir: Path, folder: Path | None = None) -> Path:
    """A capture that presses ``key``: the shipped one for a digit, else one built into
    ``workdir`` (``*``, ``#``)."""
    if key in "0123456789" and len(key) == 1:
        return shipped_capture(key, folder)
    return build_capture(key, workdir, shipped_capture(SOURCE_DIGIT, folder))


def build_capture(key: str, workdir: Path, source: Path | None = None) -> Path:
    """Write ``workdir/dtmf_2833_<key name>.pcap``: ``source`` (the shipped ``1`` by default)
    with every telephone-event's code set to ``key``'s and its UDP checksum recomputed."""
    source = source or shipped_capture(SOURCE_DIGIT)
    return _rewrite(source, workdir / f"dtmf_2833_{_name(key)}.pcap", key)


def key_stream(
    keys: list[tuple[float, str]], workdir: Path, folder: Path | None = None
) -> list[Path]:
    """One capture per ``(seconds after the first key, key)``, to be played in turn, that
    together make one coherent RTP stream, as a phone would send: one SSRC, sequence numbers
    going on from each capture to the next, each event's RTP timestamp advanced from the
    first by the time between them (8 kHz). Played verbatim, the same capture twice would
    repeat sequence numbers and timestamps: a receiver may take the repeat for a duplicate of
    the earlier event. Digits come from their shipped captures, other keys from ``1``'s."""
    paths: list[Path] = []
    sequence = timestamp = 0
    for number, (seconds, key) in enumerate(keys, start=1):
        if key not in EVENTS:
            raise ValueError(f"no RFC 4733 event for {key!r}")
        digit = key if key in "0123456789" else SOURCE_DIGIT
        source = shipped_capture(digit, folder)
        if number == 1:
            first = read_capture(source)[0]
            sequence, timestamp = first.sequence, first.timestamp
        target = workdir / f"dtmf-{number:02d}-{_name(key)}.pcap"
        at = (timestamp + round(seconds * 8000)) & 0xFFFFFFFF
        paths.append(_rewrite(source, target, key, sequence, at))
        sequence = (max(packet.sequence for packet in read_capture(target)) + 1) & 0xFFFF
    return paths


def read_capture(path: Path) -> list[CapturedEvent]:
    """Every packet of a DTMF capture, checked against the layout this module relies on."""
    data = path.read_bytes()
    packets: list[CapturedEvent] = []
    first: float | None = None
    for frame in _frames(data, path):
        seconds, micros = struct.unpack_from("<II", data, frame - RECORD_HEADER.size)
        at = seconds + micros / 1e6
        first = at if first is None else first
        ip = frame + ETHERNET
        udp = ip + 20
        rtp = udp + UDP_HEADER
        length = int.from_bytes(data[udp + 4 : udp + 6], "big")
        stored = int.from_bytes(data[udp + 6 : udp + 8], "big")
        zeroed = data[udp : udp + 6] + b"\0\0" + data[udp + 8 : udp + length]
        event, flags, duration = struct.unpack_from(">BBH", data, rtp + RTP_HEADER)
        packets.append(
            CapturedEvent(
                at=at - first,
                source_port=int.from_bytes(data[udp : udp + 2], "big"),
                destination_port=int.from_bytes(data[udp + 2 : udp + 4], "big"),
                payload_type=data[rtp + 1] & 0x7F,
                marker=bool(data[rtp + 1] & 0x80),
                sequence=int.from_bytes(data[rtp + 2 : rtp + 4], "big"),
                timestamp=int.from_bytes(data[rtp + 4 : rtp + 8], "big"),
                ssrc=int.from_bytes(data[rtp + 8 : rtp + 12], "big"),
                event=event,
                end=bool(flags & 0x80),
                volume=flags & 0x3F,
                duration=duration,
                checksum_ok=stored == _udp_checksum(data[ip + 12 : ip + 20], zeroed),
            )
        )
    return packets


def _name(key: str) -> str:
    return {"*": "star", "#": "pound"}.get(key, key)


def _rewrite(
    source: Path,
    target: Path,
    key: str,
    sequence: int | None = None,
    timestamp: int | None = None,
) -> Path:
    """Copy ``source`` to ``target`` with the event code of ``key`` and, when given, the
    first packet's sequence number and the event's RTP timestamp (the other packets keep
    their offsets from the first); every UDP checksum recomputed. Timing, marker and end
    bits, durations and SSRC stay the source's."""
    if key not in EVENTS:
        raise ValueError(f"no RFC 4733 event for {key!r}")
    data = bytearray(source.read_bytes())
    frames = _frames(data, source)
    rtp0 = frames[0] + ETHERNET + 20 + UDP_HEADER
    first_sequence = int.from_bytes(data[rtp0 + 2 : rtp0 + 4], "big")
    first_timestamp = int.from_bytes(data[rtp0 + 4 : rtp0 + 8], "big")
    for frame in frames:
        ip = frame + ETHERNET
        udp = ip + 20
        rtp = udp + UDP_HEADER
        data[rtp + RTP_HEADER] = EVENTS[key]
        if sequence is not None:
            offset = int.from_bytes(data[rtp + 2 : rtp + 4], "big") - first_sequence
            data[rtp + 2 : rtp + 4] = ((sequence + offset) & 0xFFFF).to_bytes(2, "big")
        if timestamp is not None:
            offset = int.from_bytes(data[rtp + 4 : rtp + 8], "big") - first_timestamp
            data[rtp + 4 : rtp + 8] = ((timestamp + offset) & 0xFFFFFFFF).to_bytes(4, "big")
        length = int.from_bytes(data[udp + 4 : udp + 6], "big")
        data[udp + 6 : udp + 8] = b"\0\0"
        checksum = _udp_checksum(data[ip + 12 : ip + 20], data[udp : udp + length])
        data[udp + 6 : udp + 8] = checksum.to_bytes(2, "big")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


def _frames(data: bytes | bytearray, path: Path) -> list[int]:
    """The offset of each packet's Ethernet frame, every header checked on the way."""
    if len(data) < PCAP_HEADER.size:
        raise CaptureError(f"{path}: shorter than a pcap header")
    magic, major, minor, _, _, _, link = PCAP_HEADER.unpack_from(data)
    if (magic, major, minor, link) != (PCAP_MAGIC, 2, 4, LINKTYPE_ETHERNET):
        raise CaptureError(
            f"{path}: expected a little-endian pcap 2.4 of Ethernet frames, got magic "
            f"{magic:#x}, version {major}.{minor}, link type {link}"
        )
    frames: list[int] = []
    offset = PCAP_HEADER.size
    while offset < len(data):
        _, _, captured, original = RECORD_HEADER.unpack_from(data, offset)
        frame = offset + RECORD_HEADER.size
        offset = frame + captured
        where = f"{path}, packet {len(frames) + 1}"
        if captured != original or offset > len(data):
            raise CaptureError(f"{where}: truncated")
        ip = frame + ETHERNET
        if int.from_bytes(data[frame + 12 : ip], "big") != ETHERTYPE_IPV4:
            raise CaptureError(f"{where}: not IPv4 over Ethernet")
        if data[ip] != 0x45 or data[ip + 9] != UDP_PROTOCOL:
            raise CaptureError(f"{where}: not UDP in an IPv4 header without options")
        udp = ip + 20
        length = int.from_bytes(data[udp + 4 : udp + 6], "big")
        rtp = udp + UDP_HEADER
        if length != UDP_HEADER + RTP_HEADER + TELEPHONE_EVENT or udp + length > offset:
            raise CaptureError(f"{where}: not one RTP telephone-event (UDP length {length})")
        if data[rtp] != 0x80:
            raise CaptureError(f"{where}: not RTP version 2 without CSRC, extension, padding")
        frames.append(frame)
    if not frames:
        raise CaptureError(f"{path}: no packets")
    return frames


def _udp_checksum(addresses: bytes | bytearray, segment: bytes | bytearray) -> int:
    """RFC 768: the ones' complement sum over the IPv4 pseudo-header (source and destination
    ``addresses``, protocol, length) and the UDP ``segment`` with a zero checksum field."""
    pseudo = bytes(addresses) + bytes([0, UDP_PROTOCOL]) + len(segment).to_bytes(2, "big")
    words = pseudo + bytes(segment) + (b"\0" if len(segment) % 2 else b"")
    total = sum(int.from_bytes(words[i : i + 2], "big") for i in range(0, len(words), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    return checksum or 0xFFFF  # 0 means "no checksum" in UDP over IPv4
