"""Where a call comes from: the source address the source filter judges (DESIGN §3.3).

The dialplan hands the channel to the service as
``Stasis(<app>,<origin>,${CHANNEL(pjsip,remote_addr)},${PJSIP_HEADER(read,<header>)})``,
so a StasisStart's ``args`` are ``[origin, remote_addr, header...]``:

- ``remote_addr`` is, for an inbound call, "the full IP address and port number that the
  INVITE request was received from" (Asterisk's CHANNEL() documentation, PJSIP items):
  ``192.0.2.7:5060``, ``[2001:db8::7]:5060``; empty when the channel has no transport
  information (a non-PJSIP channel). A dual-stack listener reports IPv4 peers as
  ``[::ffff:192.0.2.7]:5060``; those are read as the IPv4 address.
- the header is read **only when the peer is a trusted proxy** (``trusted_proxies``); from
  anyone else it is ignored, whatever it says. It is an X-Forwarded-For style list,
  ``client, proxy1, ...``, each proxy appending the address it received the request from.
  Asterisk splits application arguments at commas, so the list arrives spread over the
  arguments after ``remote_addr``; they are joined back.

Which entry of the list: the **right-most one that is not itself a trusted proxy**. Entries
are appended, so the right-most was written by the proxy that handed us the call (trusted);
everything to its left was only repeated by it and may come from the caller. With one proxy
this is the last entry; with a chain of trusted proxies, walking left past them stops at the
first address none of them is. An unreadable entry met on that walk ends it with no address
(the filter then refuses): skipping it would hand the choice to an entry the caller wrote.

In ``edge`` mode (a Kamailio edge in front of the servers) every call enters through one
PJSIP endpoint, ``edge``, and the dialplan passes
``edge,${CHANNEL(pjsip,remote_addr)},<X-CC-Terminal>,<X-CC-Carrier>,<header>``, the two
``X-CC-*`` values base64 (``BASE64_ENCODE``: nothing in them can shift the arguments), each
after a ``:`` (``BASE64_ENCODE`` of nothing warns on every call; see :func:`edge_value`). The
edge sets them (and strips any it did not set); they are believed only when the peer is a
trusted proxy: :func:`arrival` then names the terminal or carrier they say; from anyone
else the call names nobody and identify refuses it (``no_client``) with the reason.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from dialplan.call import Origin
from dialplan.errors import ConfigError, shown_plain
from dialplan.source_filter import IpAddress, Networks, address_text, networks, parse_ip

EDGE = "edge"
"""The origin the edge-mode dialplan passes first, and the PJSIP endpoint of the edge."""
TERMINAL_HEADER = "X-CC-Terminal"
"""The header in which the edge names the terminal that authenticated an INVITE."""
CARRIER_HEADER = "X-CC-Carrier"
"""The header in which the edge names the carrier (its endpoint) an INVITE came from."""


def peer_address(text: str) -> IpAddress | None:
    """An address as Asterisk or a proxy writes it, port or not: ``192.0.2.7``,
    ``192.0.2.7:5060``, ``2001:db8::7``, ``[2001:db8::7]``, ``[2001:db8::7]:5060``.
    IPv4-mapped IPv6 becomes IPv4; None when ``text`` is none of these."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None
    elif text.count(":") == 1:
        colon = text.index(":")
        host, rest = text[:colon], text[colon:]
    else:
        host, rest = text, ""
    if rest and not _is_port(rest):
        return None
    return parse_ip(host)


def _is_port(rest: str) -> bool:
    """``rest`` is a colon and a port number (``:5060``)."""
    digits = rest[1:]
    return rest[0] == ":" and digits.isascii() and digits.isdigit() and int(digits) <= 65535


def trusted_networks(trusted_proxies: str) -> Networks:
    """The ``trusted_proxies`` setting parsed; :class:`ConfigError` names a bad entry.

    The service calls this at start so that a typo stops it; :func:`source_address` on its
    own ignores a bad entry (it trusts nobody by it: the proxy's header is then not read).
    """
    parsed = _proxies(trusted_proxies)
    if parsed.invalid:
        bad = ", ".join(repr(entry) for entry in parsed.invalid)
        raise ConfigError(f"trusted_proxies: {bad} is not an address or CIDR")
    return parsed


@functools.lru_cache(maxsize=16)
def _proxies(trusted_proxies: str) -> Networks:
    return networks([entry for entry in trusted_proxies.split(",") if entry.strip()])


def source_address(args: Sequence[str], trusted_proxies: str) -> str | None:
    """The source address of a call from its StasisStart ``args``, or None when unknown.

    The peer's own address, unless the peer is inside ``trusted_proxies`` (comma-separated
    addresses/CIDRs) and sent the header: then the address the header names (see the
    module). Never None for a readable peer address without a header.
    """
    if len(args) < 2:
        return None
    peer = peer_address(args[1])
    if peer is None:
        return None
    header = ",".join(args[2:])
    proxies = _proxies(trusted_proxies)
    if not header.strip() or proxies.match(peer) is None:
        return address_text(peer)
    forwarded = _forwarded_for(header, proxies)
    return address_text(forwarded) if forwarded is not None else None


def _forwarded_for(header: str, proxies: Networks) -> IpAddress | None:
    """The right-most address of ``header`` that is not a trusted proxy (the left-most
    when all are); None when an entry on the way cannot be read."""
    entries = [entry for entry in header.split(",") if entry.strip()]
    address: IpAddress | None = None
    for entry in reversed(entries):
        address = peer_address(entry)
        if address is None or proxies.match(address) is None:
            return address
    return address


def edge_host(edge_address: str) -> IpAddress | None:
    """The IP address of an ``edge_address`` (``IP:PORT``, ``[v6]:PORT``), or None when it
    is not that (a host name is not: the edge is identified and trusted by address)."""
    host, separator, port = edge_address.strip().rpartition(":")
    if not separator or not host or not _is_port(f":{port}") or int(port) == 0:
        return None
    if host.startswith("[") != host.endswith("]"):
        return None
    bare = host[1:-1] if host.startswith("[") else host
    if ":" in bare and not host.startswith("["):
        return None
    return parse_ip(bare)


@dataclass(frozen=True, slots=True)
class Arrival:
    """Who a call says it is from, as the shell hands it to the pipeline."""

    origin: Origin | None
    endpoint: str
    """The terminal or carrier endpoint the call came from (named by the edge in edge mode)."""
    source_ip: str | None
    unidentified: str | None = None
    """Why the call names no endpoint that can be believed (identify refuses it)."""


def arrival(args: Sequence[str], endpoint: str, trusted_proxies: str) -> Arrival:
    """The origin, endpoint and source address of a call from its dialplan ``args`` and
    the PJSIP ``endpoint`` of its channel (see the module): a direct call as it came; an
    ``edge`` call as its ``X-CC-*`` headers say, only when the peer is a trusted proxy."""
    first = args[0] if args else ""
    if first != EDGE:
        origin: Origin | None = (
            "terminal" if first == "terminal" else "carrier" if first == "carrier" else None
        )
        return Arrival(origin, endpoint, source_address(args, trusted_proxies))
    remote, terminal, carrier = [*args[1:4], "", "", ""][:3]
    peer = peer_address(remote)
    if peer is None or _proxies(trusted_proxies).match(peer) is None:
        who = f"from {peer}" if peer is not None else f"from {shown_plain(remote) or 'nowhere'}"
        return Arrival(
            None,
            endpoint,
            str(peer) if peer is not None else None,
            f"edge call {who}, not a trusted proxy: its {TERMINAL_HEADER} and"
            f" {CARRIER_HEADER} headers are not believed",
        )
    source = source_address([EDGE, remote, *args[4:]], trusted_proxies)
    named = ((TERMINAL_HEADER, _decoded(terminal)), (CARRIER_HEADER, _decoded(carrier)))
    given = [(header, value) for header, value in named if value != ""]
    if not given:
        why = f"edge call names no caller: neither {TERMINAL_HEADER} nor {CARRIER_HEADER}"
        return Arrival(None, endpoint, source, why)
    if len(given) > 1:
        why = f"edge call names both {TERMINAL_HEADER} and {CARRIER_HEADER}: it is refused"
        return Arrival(None, endpoint, source, why)
    header, value = given[0]
    if value is None:
        why = f"edge call: its {header} is not what [from-edge] passes"
        return Arrival(None, endpoint, source, why)
    origin = "terminal" if header == TERMINAL_HEADER else "carrier"
    return Arrival(origin, value, source)


def edge_value(header: str) -> str:
    """An X-CC-* header's value as [from-edge] passes it: ``BASE64_ENCODE(:<value>)``."""
    return base64.b64encode(f":{header}".encode()).decode("ascii")


def _decoded(value: str) -> str | None:
    """An :func:`edge_value` argument as text ("" for no header); None when it is not one
    (never what the dialplan passes)."""
    value = value.strip()
    if not value:
        return ""
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text[1:] if text.startswith(":") else None
