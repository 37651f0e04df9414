"""Prometheus metrics (DESIGN §4): the outcome vocabulary, and /metrics of a running
service scraped while its calls go through the simulated Asterisk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.ari_ import shown_url
from callcontrol.metrics import Metrics, outcome_label
from callcontrol.service import Service
from callcontrol.session import Outcome
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from models.directory import SqlDirectory
from tests.test_service import CONFIG, _free_port, bridged, until

pytest_plugins = ["tests.test_service"]


@pytest.mark.parametrize(
    ("outcome", "label"),
    [
        (Outcome("c", "dial", "answered, caller hung up", None, "normal", True), "answered"),
        (Outcome("c", "reject", "refused", "max_calls_reached", "rejected"), "max_calls_reached"),
        (Outcome("c", "-", "failed", "service_unavailable", "congestion"), "service_unavailable"),
        (Outcome("c", "dial", "caller hung up before answer", None, "normal"), "abandoned"),
        (Outcome("c", "-", "caller left while the call was being set up"), "abandoned"),
        (Outcome("c", "dial", "hung up by operator before answer", None, "normal"), "operator"),
        (Outcome("c", "dial", "answered, operator hung up", None, "normal", True), "answered"),
        (Outcome("c", "dial", "callee failed", None, "busy"), "busy"),
        (Outcome("c", "dial", "callee failed", None, "no_answer"), "no_answer"),
        (Outcome("c", "dial", "callee failed", None, "congestion"), "failed"),
        (Outcome("c", "dial", "dialled leg never entered the app", None, "congestion"), "failed"),
        (Outcome("c", "service *5", "no such service", None, "unallocated"), "service"),
    ],
)
def test_every_ending_has_one_outcome_label(outcome: Outcome, label: str) -> None:
    assert outcome_label(outcome) == label


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8088/", "http://127.0.0.1:8088/"),
        ("http://ari:s3cret@10.0.0.5:8088/", "http://10.0.0.5:8088/"),
        ("https://ari@[2001:db8::5]/ari", "https://[2001:db8::5]/ari"),
    ],
)
def test_an_asterisk_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_calls_are_counted_by_client_and_outcome_and_decisions_timed() -> None:
    metrics = Metrics()
    metrics.observe(Outcome("a", "dial", "answered", None, "normal", True, 3.0, 0.004, "acme"))
    metrics.observe(Outcome("b", "dial", "answered", None, "normal", True, 1.0, 0.02, "acme"))
    metrics.observe(Outcome("c", "reject", "refused", "no_client", "unallocated", False, 0, 0.001))
    metrics.observe(Outcome("d", "dial", "adopted bridged call", None, "normal", True))
    found = samples(metrics.exposition().decode())
    calls = "callcontrol_calls_total"
    assert found[(calls, (("client", "acme"), ("outcome", "answered")))] == 2
    assert found[(calls, (("client", "-"), ("outcome", "no_client")))] == 1
    assert found[(calls, (("client", "-"), ("outcome", "answered")))] == 1
    # An adopted call was not decided here: it is counted, not timed.
    assert found[("callcontrol_decision_seconds_count", ())] == 3
    assert found[("callcontrol_decision_seconds_bucket", (("le", "0.005"),))] == 2
    assert found[("callcontrol_decision_seconds_sum", ())] == pytest.approx(0.025)


@pytest.fixture
async def running(sim: Simulator, demo_engine: AsyncEngine) -> AsyncIterator[Service]:
    config = replace(CONFIG, ari_url=sim.url, health_port=_free_port(), shutdown_timeout=2.0)
    service = Service(config, SqlDirectory(demo_engine))
    task = asyncio.create_task(service.run())
    await until(lambda: service.links[0].state == "connected")
    yield service
    service.request_stop()
    await asyncio.wait_for(task, 10)


async def scrape(service: Service) -> tuple[str, Samples]:
    url = f"http://127.0.0.1:{service.config.health_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        return response.headers["Content-Type"], samples(await response.text())


async def test_metrics_show_live_calls_the_ari_link_and_ended_calls(
    running: Service, sim: Simulator, control: ControlClient
) -> None:
    link = (("asterisk", sim.url),)
    caller = str((await control.call("acme-north-ana", "102"))["id"])
    await bridged(control, caller)
    content_type, during = await scrape(running)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert during[("callcontrol_active_calls", link)] == 1
    assert during[("callcontrol_ari_connected", link)] == 1
    await control.hang_up(caller)
    intruder = str((await control.call("intruder", "102"))["id"])
    await control.wait_gone(intruder, within=3)

    async def both_counted() -> bool:
        _, found = await scrape(running)
        return found.get(("callcontrol_decision_seconds_count", ())) == 2

    await until(both_counted)
    _, after = await scrape(running)
    assert after[("callcontrol_active_calls", link)] == 0
    calls = "callcontrol_calls_total"
    assert after[(calls, (("client", "acme-north"), ("outcome", "answered")))] == 1
    assert after[(calls, (("client", "-"), ("outcome", "no_client")))] == 1
    await sim.stop()  # Asterisk goes away; the server's own port keeps answering
    await until(lambda: running.links[0].state != "connected")
    _, gone = await scrape(running)
    assert gone[("callcontrol_ari_connected", link)] == 0
