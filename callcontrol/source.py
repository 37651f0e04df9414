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
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from dialplan.errors import ConfigError
from dialplan.source_filter import IpAddress, Networks, networks, parse_ip


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
        return str(peer)
    forwarded = _forwarded_for(header, proxies)
    return str(forwarded) if forwarded is not None else None


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
