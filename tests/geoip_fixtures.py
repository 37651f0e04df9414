"""Small MaxMind databases built by the tests themselves: load with
``pytest_plugins = ["tests.geoip_fixtures"]``.

- ``geoip_db``: GeoIP2-Country-like (an IPv6 tree holding IPv4 too, as MaxMind's own);
- ``geoip_ipv4_db``: an IPv4-only country database;
- ``geoip_city_db``, ``geoip_enterprise_db``: city-like records under those types;
- ``geoip_asn_db``: a MaxMind DB without countries.

The networks are real public ranges with made-up countries; what matters is that each test
knows what the database says.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

COUNTRIES: Mapping[str, dict[str, Any]] = {
    "80.58.0.0/16": {"country": {"iso_code": "ES"}},
    "2a02:9000::/23": {"country": {"iso_code": "ES"}},
    "8.8.8.0/24": {"country": {"iso_code": "US"}},
    "2001:4860::/32": {"country": {"iso_code": "US"}},
    # A private network the database (wrongly) places: lookups must not believe it.
    "10.0.0.0/8": {"country": {"iso_code": "ES"}},
    # Known, but without a country (as some anycast and satellite ranges are).
    "185.60.0.0/16": {"registered_country": {"iso_code": "NL"}},
}

CITIES: Mapping[str, dict[str, Any]] = {
    "81.0.0.0/16": {"city": {"names": {"en": "Lisboa"}}, "country": {"iso_code": "PT"}},
    "2a01:1000::/32": {"city": {"names": {"en": "Porto"}}, "country": {"iso_code": "PT"}},
}


def write_mmdb(
    path: Path, database_type: str, records: Mapping[str, dict[str, Any]], *, ip_version: int = 6
) -> Path:
    """Write a MaxMind DB of ``database_type`` with one record per network to ``path``;
    an IPv6 database (the default) holds IPv4 networks too."""
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en"],
        description="callcontrol test database",
    )
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def geoip_db(tmp_path: Path) -> Path:
    """A GeoIP2-Country-like database holding :data:`COUNTRIES`."""
    return write_mmdb(tmp_path / "country.mmdb", "GeoIP2-Country", COUNTRIES)


@pytest.fixture
def geoip_ipv4_db(tmp_path: Path) -> Path:
    """An IPv4-only GeoLite2-Country-like database holding the IPv4 part of :data:`COUNTRIES`."""
    ipv4 = {network: record for network, record in COUNTRIES.items() if ":" not in network}
    return write_mmdb(tmp_path / "country-v4.mmdb", "GeoLite2-Country", ipv4, ip_version=4)


@pytest.fixture
def geoip_city_db(tmp_path: Path) -> Path:
    """A GeoIP2-City-like database holding :data:`CITIES`."""
    return write_mmdb(tmp_path / "city.mmdb", "GeoIP2-City", CITIES)


@pytest.fixture
def geoip_enterprise_db(tmp_path: Path) -> Path:
    """A GeoIP2-Enterprise-like database holding :data:`CITIES` (its records are city ones)."""
    return write_mmdb(tmp_path / "enterprise.mmdb", "GeoIP2-Enterprise", CITIES)


@pytest.fixture
def geoip_asn_db(tmp_path: Path) -> Path:
    """A GeoLite2-ASN-like database: a MaxMind DB that knows no countries."""
    records = {"8.8.8.0/24": {"autonomous_system_number": 15169}}
    return write_mmdb(tmp_path / "asn.mmdb", "GeoLite2-ASN", records)
