"""The service's GeoIP path, and ``explain`` against it: the running service (on the
simulated Asterisk, with a GeoIP database) and ``explain`` (given the same database) reach
the same verdict on every case of the source-filter table (tests/cases/source_filter.py).

Each case gives alice's client (tests/world.py) the case's filter; alice calls bob's
extension from the case's source address, as Asterisk reports it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from callcontrol.explain import explain
from callcontrol.geoip import GeoIp
from callcontrol.service import AsteriskLink
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from dialplan.decisions import Reject
from dialplan.pipeline import Pipeline
from dialplan.views import TerminalView
from tests.cases.source_filter import CASES, Case
from tests.simulator_helpers import fast_config
from tests.test_service import CONFIG, Running, _has_app, until
from tests.world import ALICE, MADRID, NOON, world


def _public(source: str | None) -> bool:
    try:
        return source is not None and ipaddress.ip_address(source).is_global
    except ValueError:
        return False


@pytest.fixture
def geoip(tmp_path: Path) -> Iterator[GeoIp]:
    """A database placing every public source of the table in its case's country."""
    from tests.geoip_fixtures import write_mmdb  # here: a plugin module elsewhere

    places: dict[str, str] = {}
    for case in CASES:
        if case.country is not None and _public(case.source):
            assert case.source is not None
            country = case.country.upper()
            assert places.setdefault(case.source, country) == country, case.name
    records = {f"{source}/32": {"country": {"iso_code": code}} for source, code in places.items()}
    database = GeoIp(str(write_mmdb(tmp_path / "cases.mmdb", "GeoIP2-Country", records)))
    yield database
    database.close()


def test_the_database_knows_what_each_case_says_of_its_source(geoip: GeoIp) -> None:
    for case in CASES:
        if _public(case.source):
            assert case.source is not None
            expected = case.country.upper() if case.country else None
            assert geoip.country(case.source) == expected, case.name


def filtering(case: Case) -> TerminalView:
    client = replace(
        MADRID,
        filter_by_ip=case.filter_on,
        authorized_sources=case.authorized,
        geoip_countries=case.countries,
    )
    return TerminalView("t-alice", client, ALICE)


async def test_the_service_and_explain_agree_on_every_source_filter_case(
    geoip: GeoIp, tmp_path: Path
) -> None:
    directory = world()
    others = [terminal for terminal in directory.terminals if terminal.name != "t-alice"]
    verdicts: dict[str, tuple[bool, bool, bool]] = {}
    async with Simulator(fast_config(tmp_path / "rec")) as sim, ControlClient(sim.url) as control:
        running = Running(AsteriskLink(sim.url, CONFIG, Pipeline(directory), geoip=geoip))
        try:
            await until(lambda: _has_app(control))
            for case in CASES:
                directory.terminals = [filtering(case), *others]
                call = await control.call(
                    "t-alice", "102", source_ip=case.source or "", hangup_after=0.3
                )
                outcome = await running.outcome(str(call["id"]))
                explained = await explain(
                    directory, "t-alice", "102", NOON, source_ip=case.source, geoip=geoip
                )
                decision = explained.decision
                refused = isinstance(decision, Reject) and decision.reason.value == "ip_not_allowed"
                verdicts[case.name] = (
                    outcome.reason != "ip_not_allowed",
                    not refused,
                    case.through_the_service,
                )
                if outcome.reason != "ip_not_allowed":
                    assert outcome.decision.startswith("dial"), (case.name, outcome)
        finally:
            await running.stop()
    disagreements = {
        name: {"service": service, "explain": explained, "table": table}
        for name, (service, explained, table) in verdicts.items()
        if not service == explained == table
    }
    assert disagreements == {}
    assert len(verdicts) == len(CASES)
