"""Legs that leave a server through the edge (``mode = "edge"``; docs/design/edge.md §4).

In edge mode Asterisk has one PJSIP endpoint, ``edge``, whose outbound proxy is the edge's
SIP socket; every leg is dialled through it with the Request-URI the edge routes by:

- to a terminal: ``sip:<terminal>@<its client's SIP domain>`` (the edge looks the
  terminal up in the shared location table);
- to a carrier: ``sip:<number>@<carrier host>:<port>`` (the edge relays it as given).

Each leg carries ``X-CC-Relay-Set: <set id>``, the media relay set whose rtpengine anchors
it at the edge: the callee terminal's client's set, or the calling client's set for a
carrier leg; ``0`` is the default set.

The core's :class:`~dialplan.decisions.Dial` names only the endpoint (a terminal, or a
carrier with a number); the domain, the carrier's address and the sets are looked up here,
in the same directory the pipeline read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dialplan.decisions import Dial
from dialplan.directory import Directory
from dialplan.errors import CallControlError, shown
from dialplan.views import ClientView

EDGE_ENDPOINT = "edge"
"""The PJSIP endpoint of the edge in the rendered ``pjsip.conf``."""
RELAY_SET_HEADER = "X-CC-Relay-Set"
NO_RELAY_CAUSE = 58
"""The Q.850 cause of a leg the edge refused because its media relay set has no live
rtpengine: the edge answers a server's leg 488 (``route[NO_RELAY]``), which Asterisk
reads as 58, bearer capability not available. A server plays the caller
``service_unavailable`` for it; a leg that is the caller's own gets a bare 503."""
NO_RELAY_RESULT = "callee's media relay unavailable"
"""The result of a call ended so, whichever front carried it."""

_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
"""A terminal name as provisioning and rendering allow it."""
_NUMBER = re.compile(r"\+?[0-9*#]{1,32}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


class EdgeError(CallControlError):
    """A leg cannot be addressed through the edge (its data changed or cannot be written)."""


@dataclass(frozen=True, slots=True)
class EdgeLeg:
    """Where a leg goes through the edge, and the relay set that anchors its media."""

    uri: str
    """The Request-URI: ``sip:<terminal>@<domain>`` or ``sip:<number>@<host>:<port>``."""
    relay_set: int
    """``media_relay_sets.id``; 0 = the edge's default set."""

    @property
    def dial_string(self) -> str:
        """What Asterisk dials: the ``edge`` endpoint with the Request-URI."""
        return f"PJSIP/{EDGE_ENDPOINT}/{self.uri}"

    @property
    def header(self) -> str:
        """The value of ``X-CC-Relay-Set``."""
        return str(self.relay_set)


async def edge_leg(directory: Directory, caller: ClientView | None, decision: Dial) -> EdgeLeg:
    """The leg ``decision`` dials, addressed through the edge (``caller``: the calling
    client, whose set anchors a carrier leg); :class:`EdgeError` when the
    terminal or carrier it names is no longer in the configuration, or holds a value that
    cannot be written into a SIP URI."""
    if decision.target == "terminal":
        terminal = await directory.terminal(decision.endpoint)
        if terminal is None:
            raise EdgeError(f"terminal {shown(decision.endpoint)} is no longer configured")
        name, domain = decision.endpoint, terminal.client.sip_domain.lower()
        if not _USER.fullmatch(name) or not _DOMAIN.fullmatch(domain):
            raise EdgeError(f"terminal {shown(name)}@{shown(domain)} is not a SIP address")
        return EdgeLeg(f"sip:{name}@{domain}", terminal.client.media_relay_set_id or 0)
    carrier = await directory.carrier(decision.endpoint)
    if carrier is None:
        raise EdgeError(f"carrier endpoint {shown(decision.endpoint)} is no longer configured")
    if not _NUMBER.fullmatch(decision.number):
        raise EdgeError(f"number {shown(decision.number)} cannot be a SIP user")
    host = sip_host(carrier.host)
    if host is None or not 0 < carrier.port < 65536:
        raise EdgeError(f"carrier {carrier.name}: {shown(carrier.host)} is not a SIP host")
    relay_set = caller.media_relay_set_id if caller is not None else None
    return EdgeLeg(f"sip:{decision.number}@{host}:{carrier.port}", relay_set or 0)


def sip_host(host: str) -> str | None:
    """``host`` as a SIP URI writes it (an IPv6 address in brackets), or None when it is
    neither an IP address nor a DNS name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host if _DOMAIN.fullmatch(host) else None
    return f"[{address}]" if address.version == 6 else str(address)
