"""The source filter's verdicts (DESIGN §3.3), case by case: the filter on or off, the
client's authorized sources (addresses and CIDRs, IPv4, IPv6, IPv4-mapped IPv6) and allowed
countries (GeoIP), and failing closed.

``country`` is what the GeoIP database says of ``source``. Run by
tests/test_source_filter.py (the filter on its own) and tests/test_service_geoip.py (the
service on the simulator with a GeoIP database holding these countries, and ``explain``,
which must agree with it on every case).
"""

from __future__ import annotations

from dataclasses import dataclass

OFFICE = "192.168.10.0/24"
HQ_V6 = "2001:db8:1::/48"
SOHO = "203.0.113.7"


@dataclass(frozen=True)
class Case:
    name: str
    source: str | None
    authorized: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    country: str | None = None
    filter_on: bool = True
    allowed: bool = False
    matched: str | None = None
    why: str = ""
    """A piece of the verdict's explanation."""
    service_allowed: bool | None = None
    """The verdict of the service (and of ``explain``) when Asterisk reports ``source`` as
    the call's address, if it differs from ``allowed``: Asterisk's ``remote_addr`` carries a
    port, which the service reads off (DESIGN §3.3); the filter itself takes bare addresses.
    The service looks ``country`` up in its GeoIP database, which knows it for a public
    ``source`` only (a private one has no country, whatever a database says)."""

    @property
    def through_the_service(self) -> bool:
        return self.allowed if self.service_allowed is None else self.service_allowed


CASES = [
    # -- filter off: nothing is looked at
    Case("filter off lets anything in", None, filter_on=False, allowed=True, why="is off"),
    Case("filter off ignores a broken list", "8.8.8.8", ("bogus",), filter_on=False, allowed=True),
    # -- IPv4
    Case("ipv4 inside a cidr", "192.168.10.25", ("10.0.0.0/8", OFFICE), allowed=True,
         matched=OFFICE, why="192.168.10.25 is inside authorized source 192.168.10.0/24"),
    Case("ipv4 outside every cidr", "192.168.11.1", ("10.0.0.0/8", OFFICE),
         why="source 192.168.11.1 is not inside an authorized source "
             "(10.0.0.0/8, 192.168.10.0/24)"),
    Case("the first matching entry is named", "10.1.2.3", ("10.1.0.0/16", "10.0.0.0/8"),
         allowed=True, matched="10.1.0.0/16"),
    Case("a single address matches itself", SOHO, (SOHO,), allowed=True, matched=SOHO),
    Case("a single address matches only itself", "203.0.113.8", (SOHO,)),
    Case("a /0 lets every ipv4 in", "8.8.8.8", ("0.0.0.0/0",), allowed=True, matched="0.0.0.0/0"),
    # -- IPv6
    Case("ipv6 inside a cidr", "2001:db8:1:2::5", (HQ_V6,), allowed=True, matched=HQ_V6),
    Case("ipv6 outside the cidr", "2001:db8:2::1", (HQ_V6,), why="2001:db8:2::1 is not inside"),
    Case("ipv6 single address written long", "2001:db8::7", ("2001:0db8:0000::7",),
         allowed=True, matched="2001:0db8:0000::7"),
    Case("ipv6 source written long", "2001:0DB8:0001:0000::1", (HQ_V6,), allowed=True,
         matched=HQ_V6, why="source 2001:db8:1::1 is inside"),
    Case("ipv4 never matches an ipv6 cidr", "192.168.10.25", ("::/0",)),
    Case("ipv6 never matches an ipv4 cidr", "2001:db8:1::1", ("0.0.0.0/0",)),
    # -- IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer)
    Case("mapped source matches the ipv4 cidr", "::ffff:192.168.10.25", (OFFICE,),
         allowed=True, matched=OFFICE, why="source 192.168.10.25 is inside"),
    Case("mapped source outside the ipv4 cidr", "::ffff:192.168.11.1", (OFFICE,),
         why="source 192.168.11.1 is not inside"),
    Case("mapped cidr matches the ipv4 source", "192.168.10.25", ("::ffff:192.168.10.0/120",),
         allowed=True, matched="::ffff:192.168.10.0/120"),
    # -- GeoIP countries, looked at before the addresses
    Case("allowed country", "80.58.1.1", countries=("ES", "PT"), country="ES", allowed=True,
         matched="ES", why="source 80.58.1.1 is in ES, an allowed country"),
    Case("countries compare in any case", "80.58.1.1", countries=("es",), country="Es",
         allowed=True, matched="ES"),
    Case("the country wins over a matching cidr", "80.58.1.1", ("80.58.0.0/16",), ("ES",),
         "ES", allowed=True, matched="ES"),
    Case("another country, but inside a cidr", "80.58.1.1", ("80.58.0.0/16",), ("PT",), "ES",
         allowed=True, matched="80.58.0.0/16"),
    Case("another country and outside every cidr", "90.90.1.1", (OFFICE,), ("PT", "ES"), "FR",
         why="source 90.90.1.1 (GeoIP: FR) is neither in an allowed country (ES, PT) "
         "nor inside an authorized source (192.168.10.0/24)"),
    Case("unknown country with only countries", "192.168.10.25", countries=("ES",),
         why="source 192.168.10.25 (GeoIP: unknown) is not in an allowed country (ES)"),
    # -- fail closed
    Case("both lists empty refuse every call", "192.168.10.25", country="ES",
         why="no authorized source and no allowed country: every call is refused (fail closed)"),
    Case("blank countries count as none", "192.168.10.25", countries=(" ",),
         why="every call is refused (fail closed)"),
    Case("no source address", None, (OFFICE,), why="source address unknown: refused (fail closed)"),
    Case("empty source address", "", ("0.0.0.0/0",), why="source address unknown"),
    Case("source that is not an address", "pbx.example.com", ("0.0.0.0/0",),
         why="source address 'pbx.example.com', not an IP address: refused (fail closed)"),
    Case("a source with its port is not a bare address", "192.168.10.25:5060", (OFFICE,),
         why="not an IP address", service_allowed=True),
    Case("no source address, even with an allowed country", None, countries=("ES",),
         country="ES", why="source address unknown"),
    Case("a bad cidr refuses every call", "192.168.10.25", (OFFICE, "10.0.0/8x"),
         why="not an address or CIDR among the authorized sources: '10.0.0/8x'; every call "
         "is refused until it is fixed (fail closed)"),
    Case("host bits make a cidr bad", "10.0.0.9", ("10.0.0.5/24",), why="'10.0.0.5/24'"),
    Case("a bad cidr refuses an allowed country too", "80.58.1.1", ("bogus",), ("ES",), "ES",
         why="'bogus'"),
    Case("an empty entry is a bad cidr", "192.168.10.25", (OFFICE, ""), why="''"),
]  # fmt: skip
