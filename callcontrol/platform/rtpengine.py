"""rtpengine in user space, one process per media relay instance, and its ng control protocol.

Each instance has its own loopback address and port range, so a test can tell which instance
carried a call's RTP. It runs in the foreground with ``--table=-1`` (no kernel forwarding:
the module cannot load here) and ``--config-file=none`` (the package's configuration is not
ours). It serves once its ng port answers ``ping`` with ``pong``.

The ng protocol: one UDP datagram ``<cookie> <bencoded dictionary>`` each way, the answer
carrying the request's cookie; ``result`` is ``ok`` (or ``pong``), else ``error-reason``
says why.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from typing import Any

from callcontrol.platform import bencode
from callcontrol.platform.processes import Daemon, PlatformError, Recorded, Supervisor

BINARY = "rtpengine"


@dataclass(frozen=True, slots=True)
class RelaySpec:
    """One rtpengine instance: where it relays media and where it is controlled."""

    name: str
    """The daemon's name in the run folder (``rtpengine-1``)."""
    address: str
    """The IP it relays media on and listens for ng / CLI commands on."""
    port_min: int
    port_max: int
    ng_port: int = 2223
    cli_port: int = 2224

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Address(self.address)
        except ValueError:
            raise PlatformError(
                f"rtpengine address {self.address!r} is not an IPv4 address"
            ) from None
        for port in (self.port_min, self.port_max, self.ng_port, self.cli_port):
            if not 1024 <= port <= 65535:
                raise PlatformError(f"rtpengine {self.name}: port {port} is not in 1024-65535")
        if self.port_max - self.port_min < 3:
            raise PlatformError(
                f"rtpengine {self.name}: media ports {self.port_min}-{self.port_max} "
                "hold no call (4 ports at least)"
            )
        if self.ng_port == self.cli_port:
            raise PlatformError(f"rtpengine {self.name}: ng and CLI ports must differ")

    @property
    def control_url(self) -> str:
        """How Kamailio's rtpengine module names it (``media_relays.control_url``)."""
        return f"udp:{self.address}:{self.ng_port}"

    def argv(self, binary: str) -> tuple[str, ...]:
        return (
            binary,
            "--config-file=none",
            "--table=-1",
            "--foreground",
            "--log-stderr",
            f"--interface={self.address}",
            f"--listen-ng={self.address}:{self.ng_port}",
            f"--listen-cli={self.address}:{self.cli_port}",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
        )


def binary() -> str:
    found = shutil.which(BINARY) or shutil.which(BINARY, path="/usr/bin:/usr/sbin")
    if found is None:
        raise PlatformError(
            "rtpengine is not installed (Debian package rtpengine-daemon; its service is "
            "not used: the platform starts its own)"
        )
    return found


def start(
    supervisor: Supervisor, spec: RelaySpec, timeout: float = 30.0, stop_timeout: float = 10.0
) -> Recorded:
    """Start ``spec``'s rtpengine; returns once it answers ``ping``."""

    if ping(spec, timeout=0.5):  # or the probe would take another process's pong for ours
        raise PlatformError(
            f"rtpengine {spec.name}: something answers on {spec.address}:{spec.ng_port} already"
        )

    def probe() -> str | None:
        return None if ping(spec, timeout=0.5) else "no pong"

    daemon = Daemon(spec.name, spec.argv(binary()))
    return supervisor.start(daemon, probe, timeout, stop_timeout)


# ---- the ng protocol ------------------------------------------------------------------------


def command(spec: RelaySpec, request: dict[str, Any], timeout: float = 2.0) -> dict[bytes, Any]:
    """Send one ng command and return the answer's dictionary. PlatformError when nobody
    answers within ``timeout`` or the answer is not ours or not bencode."""
    cookie = secrets.token_hex(8).encode()
    datagram = cookie + b" " + bencode.encode(request)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((spec.address, spec.ng_port))
        try:
            sock.send(datagram)
        except OSError as exc:
            raise PlatformError(f"rtpengine {spec.name}: {exc.strerror}") from None
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                answer = sock.recv(65535)
            except TimeoutError:
                break
            except OSError as exc:  # ECONNREFUSED: nothing listens on the ng port
                raise PlatformError(f"rtpengine {spec.name}: {exc.strerror}") from None
            got, _, body = answer.partition(b" ")
            if got != cookie:
                continue  # a late answer to an earlier request
            try:
                decoded = bencode.decode(body)
            except bencode.BencodeError as exc:
                raise PlatformError(f"rtpengine {spec.name}: bad answer ({exc})") from None
            if not isinstance(decoded, dict):
                raise PlatformError(f"rtpengine {spec.name}: the answer is not a dictionary")
            return decoded
    raise PlatformError(
        f"rtpengine {spec.name} at {spec.address}:{spec.ng_port} did not answer "
        f"within {timeout:g} s"
    )


def ping(spec: RelaySpec, timeout: float = 2.0) -> bool:
    """True when the instance answers ``ping`` with ``pong``."""
    try:
        return command(spec, {"command": "ping"}, timeout).get(b"result") == b"pong"
    except PlatformError:
        return False


def _ok(spec: RelaySpec, answer: dict[bytes, Any], what: str) -> dict[bytes, Any]:
    if answer.get(b"result") != b"ok":
        reason = answer.get(b"error-reason", b"no reason given")
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise PlatformError(f"rtpengine {spec.name}: {what} refused: {text}")
    return answer


def offer(spec: RelaySpec, call_id: str, from_tag: str, sdp: str) -> str:
    """The SDP ``sdp`` rewritten by the instance (its own address and ports)."""
    answer = _ok(
        spec,
        command(spec, {"command": "offer", "call-id": call_id, "from-tag": from_tag, "sdp": sdp}),
        "offer",
    )
    rewritten = answer.get(b"sdp")
    if not isinstance(rewritten, bytes):
        raise PlatformError(f"rtpengine {spec.name}: the offer's answer holds no SDP")
    return rewritten.decode(errors="replace")


def delete(spec: RelaySpec, call_id: str, from_tag: str) -> None:
    _ok(
        spec,
        command(spec, {"command": "delete", "call-id": call_id, "from-tag": from_tag}),
        "delete",
    )


def calls(spec: RelaySpec, limit: int = 1000) -> list[str]:
    """The Call-IDs the instance relays now (at most ``limit``)."""
    answer = _ok(spec, command(spec, {"command": "list", "limit": str(limit)}), "list")
    listed = answer.get(b"calls", [])
    return [c.decode(errors="replace") for c in listed if isinstance(c, bytes)]


def query(spec: RelaySpec, call_id: str) -> dict[bytes, Any]:
    """What the instance knows of one call (its tags, streams, packet counters)."""
    return _ok(spec, command(spec, {"command": "query", "call-id": call_id}), "query")


def local_ports(spec: RelaySpec, call_id: str) -> dict[int, int]:
    """Packets the instance received for one call, by its own (local) media port: the RTP
    of a call "seen at that instance's ports"."""
    seen: dict[int, int] = {}
    tags = query(spec, call_id).get(b"tags", {})
    for tag in tags.values() if isinstance(tags, dict) else ():
        for media in tag.get(b"medias", []):
            for stream in media.get(b"streams", []):
                port = stream.get(b"local port")
                packets = stream.get(b"stats", {}).get(b"packets", 0)
                if isinstance(port, int) and isinstance(packets, int):
                    seen[port] = seen.get(port, 0) + packets
    return seen
