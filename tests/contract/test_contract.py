"""The contract suite: each scenario of :mod:`tests.contract.drivers` runs on the simulated
Asterisk and on the real one; the service must make the same ARI requests, in the same order
and with the same parameters (ids aside), and log the same outcome in both.

Each mode's run is kept for the session, so the comparison reuses the runs the per-mode tests
made (or makes them, when run alone).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.contract.drivers import (
    APP,
    SCENARIOS,
    Record,
    Scenario,
    on_asterisk,
    on_simulator,
    roles,
)
from tests.e2e.sandboxes import AsteriskHandle, forget_ghost, provision
from tests.e2e.sipp import Sipp

pytest_plugins = ["tests.e2e.fixtures"]


def cases() -> list[Any]:
    """The scenarios as parameters, named."""
    return [pytest.param(scenario, id=scenario.name) for scenario in SCENARIOS]


_runs: dict[tuple[str, str], Record] = {}


@pytest.fixture(scope="session")
def sim_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """dataset.yaml for the simulator runs (the carrier's port does not matter there)."""
    url = provision(tmp_path_factory.mktemp("contract"), 5999)
    forget_ghost(url)
    return url


async def simulated(scenario: Scenario, database_url: str, folder: Path) -> Record:
    key = ("simulator", scenario.name)
    if key not in _runs:
        _runs[key] = await on_simulator(scenario, database_url, folder)
    return _runs[key]


async def real(scenario: Scenario, asterisk: AsteriskHandle, sipp: Callable[..., Sipp]) -> Record:
    key = ("asterisk", scenario.name)
    if key not in _runs:
        record, caller = await on_asterisk(scenario, asterisk, sipp)
        assert caller.returncode == 0, caller.describe()
        _runs[key] = record
    return _runs[key]


@pytest.mark.parametrize("scenario", cases())
async def test_on_the_simulator(scenario: Scenario, sim_database: str, tmp_path: Path) -> None:
    record = await simulated(scenario, sim_database, tmp_path)
    assert record.outcome == scenario.outcome, record.events


@pytest.mark.e2e
@pytest.mark.parametrize("scenario", cases())
async def test_on_asterisk(
    scenario: Scenario, asterisk: AsteriskHandle, sipp: Callable[..., Sipp]
) -> None:
    record = await real(scenario, asterisk, sipp)
    assert record.outcome == scenario.outcome, record.events


@pytest.mark.e2e
@pytest.mark.parametrize("scenario", cases())
async def test_both_make_the_same_requests_and_reach_the_same_outcome(
    scenario: Scenario,
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    sim_database: str,
    tmp_path: Path,
) -> None:
    simulated_run = await simulated(scenario, sim_database, tmp_path)
    real_run = await real(scenario, asterisk, sipp)
    explain = f"simulator events:\n{simulated_run.events}\n\nAsterisk events:\n{real_run.events}"
    assert real_run.operations == simulated_run.operations, explain
    assert real_run.requests == simulated_run.requests, explain
    assert real_run.outcome == simulated_run.outcome, explain


def test_the_journals_are_compared_by_role_with_retries_counted_once() -> None:
    journal: list[tuple[str, dict[str, Any]]] = [
        ("applications.filter", {"applicationName": APP}),
        ("applications.filter", {"applicationName": APP}),
        ("channels.create", {"channelId": "17.1-b0a1b2c", "app": APP}),
        ("bridges.addChannel", {"bridgeId": "17.1-bridge", "channel": "17.1,17.1-b0a1b2c"}),
        ("channels.hangup", {"channelId": "17.1"}),
        ("channels.hangup", {"channelId": "17.1"}),
    ]
    assert roles(journal, "17.1") == (
        ("applications.filter", '{"applicationName": "APP"}'),
        ("channels.create", '{"app": "APP", "channelId": "B"}'),
        ("bridges.addChannel", '{"bridgeId": "BRIDGE", "channel": "A,B"}'),
        ("channels.hangup", '{"channelId": "A"}'),
        ("channels.hangup", '{"channelId": "A"}'),  # a second hang-up is not a retry
    )
