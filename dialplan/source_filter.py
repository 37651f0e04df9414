"""Source filter: may a call placed from a client's terminal come from where it comes from
(DESIGN §3.3). Pure: values in, a :class:`SourceVerdict` out.

:func:`judge` applies, in order:

1. the client's filter is **off** → allowed;
2. the filter is on with **no authorized source and no allowed country** → refused, every
   call (fail closed: an empty filter is a mistake, not "allow all");
3. an authorized source that is **not an address or CIDR** → refused, every call, until it is
   fixed (fail closed: a typo must not open or silently shrink the filter);
4. **no source address**, or one that is not an IP address → refused (fail closed);
5. the source's **country** (GeoIP, found by the caller) is an allowed country → allowed;
6. the source address is **inside an authorized source** → allowed;
7. else refused (the caller answers ``ip_not_allowed``).

IPv4-mapped IPv6 addresses (``::ffff:192.0.2.7``, what a dual-stack socket reports for an IPv4
peer) are the IPv4 address they carry, on both sides: such a source matches ``192.0.2.0/24``
and an authorized ``::ffff:192.0.2.0/120`` matches ``192.0.2.7``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_SHOWN = 5
"""How many entries of a list a verdict names before "and N more"."""


def parse_ip(text: str | None) -> IpAddress | None:
    """``text`` as an IP address (IPv4-mapped IPv6 becomes IPv4), or None when it is not one.

    Only a bare address is accepted: no port, no brackets, no prefix length.
    """
    if not text:
        return None
    # The addresses a server's calls come from repeat: each is read once. Whoever calls
    # chooses the text, so only an address's length is remembered, and so many of them.
    return _parsed(text) if len(text) <= _LONGEST_ADDRESS else _parsed.__wrapped__(text)


_LONGEST_ADDRESS = 64
"""Characters of the longest text remembered by :func:`parse_ip` (an IPv6 address with
its zone is shorter)."""


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(text: str) -> IpNetwork:
    """``text`` (a CIDR or a single address) as a network; ValueError when it is neither.

    Host bits must be zero (``10.0.0.5/24`` is refused, as provisioning refuses it): such an
    entry is ambiguous, and guessing would change who may call.
    """
    network = ipaddress.ip_network(text.strip(), strict=True)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        address = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((address, network.prefixlen - 96))
    return network


@dataclass(frozen=True, slots=True)
class Networks:
    """A list of addresses and CIDRs parsed once, then matched against many addresses.

    Build it with :meth:`parse` (or the cached :func:`networks`). ``invalid`` keeps, in
    order, the entries that are neither an address nor a CIDR; they match nothing, and the
    caller decides what they mean (:func:`judge` refuses every call).
    """

    entries: tuple[str, ...]
    """The valid entries as written (stripped), in order."""
    invalid: tuple[str, ...]
    _v4: tuple[tuple[int, int, str], ...]
    _v6: tuple[tuple[int, int, str], ...]

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Networks:
        entries: list[str] = []
        invalid: list[str] = []
        v4: list[tuple[int, int, str]] = []
        v6: list[tuple[int, int, str]] = []
        for raw in texts:
            text = raw.strip()
            try:
                network = _network(text)
            except ValueError:
                invalid.append(text)
                continue
            entries.append(text)
            # (network, mask) as integers: a match is one AND and one comparison.
            row = (int(network.network_address), int(network.netmask), text)
            (v4 if network.version == 4 else v6).append(row)
        return cls(tuple(entries), tuple(invalid), tuple(v4), tuple(v6))

    def match(self, address: IpAddress) -> str | None:
        """The first entry (as written) that contains ``address``, or None.

        Pass addresses from :func:`parse_ip`, so IPv4-mapped ones are already IPv4.
        """
        value = int(address)
        for network, mask, text in self._v4 if address.version == 4 else self._v6:
            if value & mask == network:
                return text
        return None

    def __bool__(self) -> bool:
        return bool(self.entries or self.invalid)


@functools.lru_cache(maxsize=4096)
def _cached(texts: tuple[str, ...]) -> Networks:
    return Networks.parse(texts)


def networks(texts: Sequence[str] | Networks) -> Networks:
    """``texts`` parsed, cached by value: a client's list is parsed once, not once per call."""
    if isinstance(texts, Networks):
        return texts
    return _cached(tuple(texts))


@dataclass(frozen=True, slots=True)
class SourceVerdict:
    """The source filter's answer for one call.

    ``matched`` is what let the call in: the authorized source as written (``10.0.0.0/8``)
    or the country (``ES``); None when the filter is off or the call is refused. ``why`` is
    one line for ``callcontrol explain`` and the log.
    """

    allowed: bool
    matched: str | None
    why: str


def judge(
    *,
    filter_on: bool,
    source_ip: str | None,
    country: str | None,
    authorized: Sequence[str] | Networks,
    allowed_countries: Collection[str],
) -> SourceVerdict:
    """Whether a call from ``source_ip`` (GeoIP ``country``, None when unknown) may go on,
    for a client with ``authorized`` sources and ``allowed_countries`` (ISO 3166 alpha-2,
    any case). The order is the module's; every doubt refuses.
    """
    if not filter_on:
        return SourceVerdict(True, None, "source filter is off")
    sources = networks(authorized)
    countries = {code.strip().upper() for code in allowed_countries if code.strip()}
    if not sources and not countries:
        return _refused(
            "source filter is on with no authorized source and no allowed country: "
            "every call is refused (fail closed)"
        )
    if sources.invalid:
        return _refused(
            "not an address or CIDR among the authorized sources: "
            f"{_listed([repr(text) for text in sources.invalid])}; "
            "every call is refused until it is fixed (fail closed)"
        )
    address = parse_ip(source_ip)
    if address is None:
        unknown = "unknown" if not source_ip else f"{source_ip!r}, not an IP address"
        return _refused(f"source address {unknown}: refused (fail closed)")
    place = country.strip().upper() if country else None
    if place is not None and place in countries:
        shown = address_text(address)
        return SourceVerdict(True, place, f"source {shown} is in {place}, an allowed country")
    entry = sources.match(address)
    if entry is not None:
        shown = address_text(address)
        return SourceVerdict(True, entry, f"source {shown} is inside authorized source {entry}")
    return _refused(_outside(address, place, sorted(countries), sources.entries))


@functools.lru_cache(maxsize=4096)
def address_text(address: IpAddress) -> str:
    """``address`` as text, remembered: ``ipaddress`` builds it in Python on every call,
    and the addresses a server's calls come from repeat (see :func:`parse_ip`)."""
    return str(address)


def _refused(why: str) -> SourceVerdict:
    return SourceVerdict(False, None, why)


def _outside(
    address: IpAddress, place: str | None, countries: Sequence[str], entries: Sequence[str]
) -> str:
    """Why a well-formed source was refused, naming what it was compared with."""
    checks = []
    if countries:
        checks.append(f"in an allowed country ({_listed(countries)})")
    if entries:
        checks.append(f"inside an authorized source ({_listed(entries)})")
    where = f" (GeoIP: {place or 'unknown'})" if countries else ""
    if len(checks) == 2:
        return f"source {address}{where} is neither {checks[0]} nor {checks[1]}"
    return f"source {address}{where} is not {checks[0]}"


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = len(items) - _SHOWN
    return f"{shown} and {more} more" if more > 0 else shown
