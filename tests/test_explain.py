"""``callcontrol explain`` tells what the service would do: the configured GeoIP database
and a what-if country, answered and unanswered prices, times in the client's zone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.provisioning import DEMO_DATASET
from tests.cases.times import AT_CASES, AtCase
from tests.test_cli import cli

FRENCH = "90.90.1.1"
"""An address the test database places in France."""
SPANISH = "80.58.1.1"


@pytest.fixture(scope="module")
def geo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The demo with seine-studio allowing calls from France too, and a GeoIP database."""
    from tests.geoip_fixtures import write_mmdb  # here: a plugin module elsewhere

    folder = tmp_path_factory.mktemp("geo")
    url = f"sqlite:///{folder / 'geo.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    document = DEMO_DATASET.read_text(encoding="utf-8").replace(
        '    authorized_sources: [198.51.100.0/24, "2001:db8:100::/48"]\n',
        '    authorized_sources: [198.51.100.0/24, "2001:db8:100::/48"]\n'
        "    geoip_countries: [FR]\n",
    )
    (folder / "geo.yaml").write_text(document, encoding="utf-8")
    code, _, err = cli("provision", str(folder / "geo.yaml"), "--database-url", url)
    assert code == 0, err
    records = {
        "90.90.0.0/16": {"country": {"iso_code": "FR"}},
        "80.58.0.0/16": {"country": {"iso_code": "ES"}},
    }
    return url, write_mmdb(folder / "country.mmdb", "GeoIP2-Country", records)


def explain(url: str, *args: str) -> tuple[int, str, str]:
    return cli("explain", "--database-url", url, *args)


def explained(url: str, *args: str) -> dict[str, Any]:
    code, out, err = explain(url, "--json", *args)
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def source_step(document: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in document["steps"] if s["step"] == "source_filter")
    return step


def test_explain_looks_the_source_up_in_the_configured_geoip_database(
    geo: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, mmdb = geo
    monkeypatch.setenv("CALLCONTROL_GEOIP_DATABASE", str(mmdb))
    french = explained(url, "--from", "seine-margaux", "--to", "22", "--source-ip", FRENCH)
    spanish = explained(url, "--from", "seine-margaux", "--to", "22", "--source-ip", SPANISH)
    assert french["decision"]["kind"] == "dial"
    assert french["request"]["source_country"] == "FR"
    assert source_step(french)["details"]["matched"] == "FR"
    assert spanish["decision"]["reason"] == "ip_not_allowed"
    assert "(GeoIP: ES)" in source_step(spanish)["summary"]
    code, out, _ = explain(url, "--from", "seine-margaux", "--to", "22", "--source-ip", FRENCH)
    assert code == 0
    assert f"from {FRENCH} (GeoIP: FR)" in out.splitlines()[0]


def test_a_geoip_database_explain_cannot_open_is_one_line(
    geo: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, _ = geo
    missing = tmp_path / "missing.mmdb"
    monkeypatch.setenv("CALLCONTROL_GEOIP_DATABASE", str(missing))
    code, _, err = explain(url, "--from", "seine-margaux", "--to", "22", "--source-ip", FRENCH)
    assert code == 1
    assert err.startswith(f"error: geoip_database {missing} cannot be opened: ")
    assert err.count("\n") == 1


def test_without_a_database_the_country_is_unknown(geo: tuple[str, Path]) -> None:
    url, _ = geo
    french = explained(url, "--from", "seine-margaux", "--to", "22", "--source-ip", FRENCH)
    assert french["decision"]["reason"] == "ip_not_allowed"
    assert french["request"]["source_country"] is None
    assert "(GeoIP: unknown)" in source_step(french)["summary"]


def test_source_country_is_a_what_if_that_replaces_the_lookup(
    geo: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, mmdb = geo
    monkeypatch.setenv("CALLCONTROL_GEOIP_DATABASE", str(mmdb))
    call = ("--from", "seine-margaux", "--to", "22", "--source-ip")
    as_french = explained(url, *call, SPANISH, "--source-country", "fr")
    as_spanish = explained(url, *call, FRENCH, "--source-country", "ES")
    assert as_french["decision"]["kind"] == "dial"
    assert as_french["request"]["source_country"] == "FR"
    assert as_spanish["decision"]["reason"] == "ip_not_allowed"
    code, out, _ = explain(url, *call, SPANISH, "--source-country", "fr")
    assert code == 0
    assert f"from {SPANISH} (given: FR)" in out.splitlines()[0]


@pytest.mark.parametrize("bad", ["FRA", "F", "1A", "é1", ""])
def test_a_bad_source_country_is_one_line(geo: tuple[str, Path], bad: str) -> None:
    url, _ = geo
    code, _, err = explain(url, "--from", "seine-margaux", "--to", "22", "--source-country", bad)
    assert code == 1
    assert err == f"error: --source-country {bad!r} is not an ISO 3166 country code (e.g. FR)\n"


def test_explain_reads_the_source_as_the_service_reads_asterisks_address(
    geo: tuple[str, Path],
) -> None:
    url, _ = geo
    # Asterisk reports remote_addr with its port: the service judges the address.
    with_port = explained(url, "--from", "seine-margaux", "--to", "22", "--source-ip",
                          "198.51.100.20:5060")  # fmt: skip
    assert with_port["request"]["source_ip"] == "198.51.100.20"
    assert with_port["decision"]["kind"] == "dial"


# -- answered or not ----------------------------------------------------------------------


def test_explain_says_answered_for_0_s_costs_the_fee_and_unanswered_costs_0(
    geo: tuple[str, Path],
) -> None:
    url, _ = geo
    call = ("--from", "acme-north-ana", "--to", "600123123", "--at", "2026-11-25T10:30:00")
    code, answered, _ = explain(url, *call, "--duration", "0")
    assert code == 0
    assert "answered for 0 s: price 0.0200 EUR (0 s billed" in answered
    code, unanswered, _ = explain(url, *call, "--unanswered")
    assert code == 0
    assert unanswered.splitlines()[-1] == ("not answered: 0 EUR (an unanswered call costs nothing)")
    document = explained(url, *call, "--unanswered")
    billing = document["decision"]["billing"]
    assert (billing["answered"], billing["duration"], billing["price"]) == (False, 0, "0")


def test_unanswered_with_a_duration_is_one_line(geo: tuple[str, Path]) -> None:
    url, _ = geo
    code, _, err = explain(
        url, "--from", "acme-north-ana", "--to", "600123123", "--unanswered", "--duration", "5"
    )
    assert code == 1
    assert err.count("\n") == 1
    assert "--unanswered and --duration" in err


# -- times in the client's zone -----------------------------------------------------------


@pytest.mark.parametrize("case", AT_CASES, ids=[case.name for case in AT_CASES])
def test_at_is_read_in_the_zone_of_the_calls_client(geo: tuple[str, Path], case: AtCase) -> None:
    url, _ = geo
    document = explained(url, "--from", case.endpoint, "--to", case.to, "--at", case.at)
    assert document["request"]["at"] == case.instant
    assert document["request"]["local_time"] == case.shown
    code, out, _ = explain(url, "--from", case.endpoint, "--to", case.to, "--at", case.at)
    assert code == 0
    assert f" at {case.shown}" in out.splitlines()[0]
