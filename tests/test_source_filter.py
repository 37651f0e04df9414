"""Source filter (DESIGN §3.3): the verdict table, GeoIP lookups on databases the tests
build, the start-up checks, and where a call's source address comes from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcontrol.geoip import GeoIp, require_geoip
from callcontrol.source import peer_address, source_address, trusted_networks
from dialplan.errors import ConfigError
from dialplan.source_filter import Networks, judge, networks, parse_ip
from tests.cases.source_filter import CASES, HQ_V6, OFFICE, Case

pytest_plugins = ["tests.geoip_fixtures"]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_verdict(case: Case) -> None:
    verdict = judge(
        filter_on=case.filter_on,
        source_ip=case.source,
        country=case.country,
        authorized=case.authorized,
        allowed_countries=case.countries,
    )
    assert (verdict.allowed, verdict.matched) == (case.allowed, case.matched), verdict.why
    assert case.why in verdict.why


def test_an_address_is_read_the_same_however_often_and_however_long_the_text() -> None:
    for _ in range(3):  # read, then remembered: the same answer
        assert str(parse_ip("192.0.2.7")) == "192.0.2.7"
        assert str(parse_ip("::ffff:192.0.2.7")) == "192.0.2.7"
        assert parse_ip("192.0.2.7:5060") is None
    assert parse_ip("1" * 10_000) is None  # too long to be remembered, still read
    assert parse_ip(" 2001:db8::1 ") == parse_ip("2001:db8::1")


def test_a_refusal_names_at_most_five_sources() -> None:
    sources = [f"10.{n}.0.0/16" for n in range(8)]
    verdict = judge(
        filter_on=True,
        source_ip="192.0.2.1",
        country=None,
        authorized=sources,
        allowed_countries=(),
    )
    assert verdict.why.endswith("(10.0.0.0/16, 10.1.0.0/16, 10.2.0.0/16, 10.3.0.0/16, "
                                "10.4.0.0/16 and 3 more)")  # fmt: skip


def test_a_list_is_parsed_once_and_a_parsed_list_is_accepted() -> None:
    parsed = networks([OFFICE, HQ_V6])
    assert networks((OFFICE, HQ_V6)) is parsed
    assert networks(parsed) is parsed
    assert parsed.entries == (OFFICE, HQ_V6)
    verdict = judge(
        filter_on=True,
        source_ip="2001:db8:1::9",
        country=None,
        authorized=parsed,
        allowed_countries=(),
    )
    assert verdict.matched == HQ_V6


def test_a_parsed_list_keeps_its_bad_entries_apart() -> None:
    parsed = Networks.parse([" 10.0.0.0/8 ", "300.1.1.1", "2001:db8::/129"])
    assert parsed.entries == ("10.0.0.0/8",)
    assert parsed.invalid == ("300.1.1.1", "2001:db8::/129")
    assert not Networks.parse([])


# -- GeoIP ---------------------------------------------------------------------------------


@pytest.fixture
def geoip(geoip_db: Path) -> Iterator[GeoIp]:
    database = GeoIp(str(geoip_db))
    yield database
    database.close()


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("80.58.1.1", "ES"),
        ("8.8.8.8", "US"),
        ("2a02:9000::1", "ES"),
        ("2001:4860:4860::8888", "US"),
        ("::ffff:80.58.1.1", "ES"),
        (" 8.8.8.8 ", "US"),
        ("1.1.1.1", None),  # not in the database
        ("2606:4700::1111", None),  # not in the database
        ("185.60.1.1", None),  # in the database, without a country
        ("10.1.2.3", None),  # private: the database's ES is not believed
        ("::ffff:10.1.2.3", None),
        ("127.0.0.1", None),
        ("192.0.2.1", None),  # documentation range
        ("fe80::1", None),
        ("not an address", None),
        ("80.58.1.1:5060", None),
        ("", None),
    ],
)
def test_country_of_an_address(geoip: GeoIp, ip: str, country: str | None) -> None:
    assert geoip.country(ip) == country


def test_a_city_database_answers_countries(geoip_city_db: Path) -> None:
    database = GeoIp(str(geoip_city_db))
    try:
        assert database.database_type == "GeoIP2-City"
        assert [database.country(ip) for ip in ("81.0.3.4", "2a01:1000::1", "8.8.8.8")] == [
            "PT",
            "PT",
            None,
        ]
    finally:
        database.close()


def test_an_enterprise_database_answers_countries(geoip_enterprise_db: Path) -> None:
    database = GeoIp(str(geoip_enterprise_db))
    try:
        assert [database.country(ip) for ip in ("81.0.3.4", "2a01:1000::1")] == ["PT", "PT"]
    finally:
        database.close()


def test_an_ipv4_database_misses_ipv6_addresses(geoip_ipv4_db: Path) -> None:
    database = GeoIp(str(geoip_ipv4_db))
    try:
        assert database.database_type == "GeoLite2-Country"
        assert [database.country(ip) for ip in ("80.58.1.1", "2a02:9000::1")] == ["ES", None]
    finally:
        database.close()


def test_a_closed_database_answers_nothing(geoip_db: Path) -> None:
    database = GeoIp(str(geoip_db))
    assert database.country("80.58.1.1") == "ES"
    database.close()
    database.close()
    assert database.country("80.58.1.1") is None


def test_a_missing_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "GeoLite2-Country.mmdb"
    with pytest.raises(ConfigError, match="cannot be opened: No such file or directory") as info:
        GeoIp(str(path))
    assert str(info.value).startswith(f"geoip_database {path} ")
    assert "\n" not in str(info.value)


def test_a_file_that_is_no_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "country.mmdb"
    path.write_text("not a database\n")
    with pytest.raises(ConfigError, match=r"is not a MaxMind \(\.mmdb\) database"):
        GeoIp(str(path))


def test_a_database_without_countries_is_a_config_error(geoip_asn_db: Path) -> None:
    with pytest.raises(ConfigError) as info:
        GeoIp(str(geoip_asn_db))
    assert str(info.value) == (
        f"geoip_database {geoip_asn_db} is a GeoLite2-ASN database, "
        "not a country, city or enterprise one"
    )


# -- require_geoip at start ----------------------------------------------------------------


def test_clients_filtering_by_country_need_a_database() -> None:
    with pytest.raises(ConfigError) as info:
        require_geoip("", ["acme", "globex", "acme"])
    assert str(info.value) == (
        "clients acme, globex filter calls by country (GeoIP) but geoip_database is not set"
    )


def test_one_client_is_named_in_the_singular() -> None:
    with pytest.raises(ConfigError, match=r"^client acme filters calls by country"):
        require_geoip("  ", ["acme"])


def test_many_clients_are_named_in_short() -> None:
    names = [f"c{n}" for n in range(7)]
    with pytest.raises(ConfigError, match=r"^clients c0, c1, c2, c3, c4 and 2 more filter calls"):
        require_geoip("", names)


def test_a_database_that_cannot_be_opened_names_the_clients(tmp_path: Path) -> None:
    path = tmp_path / "missing.mmdb"
    with pytest.raises(ConfigError) as info:
        require_geoip(str(path), ["acme"])
    assert str(info.value) == (
        f"client acme filters calls by country (GeoIP) but geoip_database {path} "
        "cannot be opened: No such file or directory"
    )


def test_a_configured_database_must_open_even_when_unused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be opened"):
        require_geoip(str(tmp_path / "missing.mmdb"), [])


def test_no_database_is_needed_when_no_client_filters_by_country() -> None:
    assert require_geoip("", []) is None


def test_a_configured_database_is_opened(geoip_db: Path) -> None:
    database = require_geoip(str(geoip_db), ["acme"])
    assert database is not None
    try:
        assert database.country("2a02:9000::1") == "ES"
    finally:
        database.close()


# -- where the source address comes from ---------------------------------------------------

PROXY = "192.0.2.10"
PROXIES = "192.0.2.0/28, 2001:db8:ff::/64"


@dataclass(frozen=True)
class SourceCase:
    name: str
    args: tuple[str, ...]
    source: str | None
    trusted: str = PROXIES


SOURCE_CASES = [
    # -- the peer's own address
    SourceCase("peer ipv4 with port", ("t", "198.51.100.9:5060", ""), "198.51.100.9"),
    SourceCase("peer ipv4 without port", ("t", "198.51.100.9"), "198.51.100.9"),
    SourceCase("peer ipv6 in brackets", ("t", "[2001:db8::1]:5060", ""), "2001:db8::1"),
    SourceCase("peer ipv6 in brackets without port", ("t", "[2001:db8::1]"), "2001:db8::1"),
    SourceCase("peer ipv6 bare", ("t", "2001:db8::1"), "2001:db8::1"),
    SourceCase("peer ipv4-mapped", ("t", "[::ffff:198.51.100.9]:5060", ""), "198.51.100.9"),
    SourceCase("untrusted peer's header is ignored", ("t", "198.51.100.9:5060", "192.168.10.1"),
               "198.51.100.9"),
    SourceCase("no proxy is trusted by default", ("t", f"{PROXY}:5060", "203.0.113.5"), PROXY,
               trusted=""),
    SourceCase("a trusted proxy without the header", ("t", f"{PROXY}:5060", ""), PROXY),
    SourceCase("a trusted proxy with a blank header", ("t", f"{PROXY}:5060", "  "), PROXY),
    # -- a trusted proxy's header
    SourceCase("trusted proxy names the caller", ("t", f"{PROXY}:5060", "203.0.113.5"),
               "203.0.113.5"),
    SourceCase("the right-most entry is the proxy's", ("t", f"{PROXY}:5060", "10.9.9.9",
               " 203.0.113.5"), "203.0.113.5"),
    SourceCase("header entries may carry ports", ("t", f"{PROXY}:5060", "203.0.113.5:5062"),
               "203.0.113.5"),
    SourceCase("header ipv6 in brackets", ("t", f"{PROXY}:5060", "[2001:db8:5::5]:5060"),
               "2001:db8:5::5"),
    SourceCase("header ipv6 bare", ("t", f"{PROXY}:5060", "2001:db8:5::5"), "2001:db8:5::5"),
    SourceCase("header ipv4-mapped", ("t", f"{PROXY}:5060", "::ffff:203.0.113.5"),
               "203.0.113.5"),
    SourceCase("ipv6 trusted proxy", ("t", "[2001:db8:ff::2]:5060", "203.0.113.5"),
               "203.0.113.5"),
    SourceCase("mapped trusted proxy", ("t", f"[::ffff:{PROXY}]:5060", "203.0.113.5"),
               "203.0.113.5"),
    SourceCase("a chain of trusted proxies is walked past", ("t", f"{PROXY}:5060",
               "203.0.113.5", "192.0.2.11"), "203.0.113.5"),
    SourceCase("only trusted proxies: the first of them", ("t", f"{PROXY}:5060", "192.0.2.12",
               "192.0.2.11"), "192.0.2.12"),
    SourceCase("empty entries are skipped", ("t", f"{PROXY}:5060", "203.0.113.5", "", " "),
               "203.0.113.5"),
    SourceCase("an unreadable right-most entry gives no address", ("t", f"{PROXY}:5060",
               "203.0.113.5", "unknown"), None),
    SourceCase("a garbage header gives no address", ("t", f"{PROXY}:5060", "<script>"), None),
    # -- no address
    SourceCase("no args", (), None),
    SourceCase("origin only (an old dialplan)", ("t",), None),
    SourceCase("empty remote address", ("t", "", "203.0.113.5"), None),
    SourceCase("a host name", ("t", "pbx.example.com:5060"), None),
    SourceCase("a port out of range", ("t", "198.51.100.9:70000"), None),
    SourceCase("a colon without port", ("t", "198.51.100.9:"), None),
    SourceCase("a port that is not a number", ("t", "198.51.100.9:50a"), None),
    SourceCase("an unclosed bracket", ("t", "[2001:db8::1:5060"), None),
    SourceCase("text after the bracket", ("t", "[2001:db8::1]x5060"), None),
    SourceCase("an ipv4 octet out of range", ("t", "198.51.100.256:5060"), None),
]  # fmt: skip


@pytest.mark.parametrize("case", SOURCE_CASES, ids=[case.name for case in SOURCE_CASES])
def test_source_address(case: SourceCase) -> None:
    assert source_address(case.args, case.trusted) == case.source


def test_a_bad_trusted_proxy_entry_trusts_nobody_by_it() -> None:
    args = ("t", f"{PROXY}:5060", "203.0.113.5")
    assert source_address(args, "192.0.2.0/33") == PROXY
    assert source_address(args, "bogus, 192.0.2.10") == "203.0.113.5"


def test_trusted_proxies_are_checked_at_start() -> None:
    parsed = trusted_networks(" 192.0.2.0/28 , 2001:db8:ff::/64 ,")
    assert parsed.entries == ("192.0.2.0/28", "2001:db8:ff::/64")
    assert not trusted_networks("")
    with pytest.raises(ConfigError) as info:
        trusted_networks("192.0.2.0/28, proxy.example.com")
    assert str(info.value) == "trusted_proxies: 'proxy.example.com' is not an address or CIDR"


def test_peer_addresses_read_by_the_source_filter() -> None:
    source = source_address(("t", "[::ffff:192.168.10.25]:5060", ""), "")
    verdict = judge(
        filter_on=True,
        source_ip=source,
        country=None,
        authorized=(OFFICE,),
        allowed_countries=(),
    )
    assert (verdict.allowed, verdict.matched) == (True, OFFICE)
    assert str(peer_address('"[2001:db8::1]:5060"')) == "2001:db8::1"
