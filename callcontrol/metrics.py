"""Prometheus metrics of a running server (DESIGN §4), served as text at ``/metrics``.

- ``callcontrol_calls_total{client, outcome}``: ended calls. ``outcome`` is a closed
  vocabulary (:func:`outcome_label`): ``answered``, ``abandoned`` (the caller left before
  an answer), ``operator`` (an operator ended it before an answer), ``busy``,
  ``no_answer``, ``failed``, ``service``, or the refusal's reason
  (``max_calls_reached``, ``service_unavailable``, …). ``client`` is the client's name,
  ``-`` for a call no client was found for.
- ``callcontrol_decision_seconds``: how long the pipeline took to decide a call.
- ``callcontrol_active_calls{asterisk}`` and ``callcontrol_ari_connected{asterisk}``:
  read from each Asterisk link when scraped.

Each :class:`Metrics` has its own registry (nothing global), so several services in one
process, as in the tests, never share counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from callcontrol.ari_ import shown_url
from callcontrol.session import Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus server reads."""
DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
NO_CLIENT = "-"


class Link(Protocol):
    """What the collector reads of an Asterisk link."""

    @property
    def url(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def calls(self) -> int: ...


def outcome_label(outcome: Outcome) -> str:
    """The ``outcome`` label of an ended call: a reason when refused, else what happened."""
    if outcome.reason:
        return outcome.reason
    if outcome.answered:
        return "answered"
    if outcome.decision.startswith("service"):
        return "service"
    if outcome.result.startswith("caller"):
        return "abandoned"
    if outcome.result.startswith("hung up by operator"):
        return "operator"
    if outcome.cause in ("busy", "no_answer"):
        return outcome.cause
    return "failed"


class _Links(Collector):
    def __init__(self, links: Sequence[Link]) -> None:
        self.links = links

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "callcontrol_active_calls", "Calls in progress, per Asterisk", labels=["asterisk"]
        )
        connected = GaugeMetricFamily(
            "callcontrol_ari_connected",
            "1 while the ARI events connection to this Asterisk is up, else 0",
            labels=["asterisk"],
        )
        for link in self.links:
            shown = shown_url(link.url)
            active.add_metric([shown], link.calls)
            connected.add_metric([shown], 1 if link.state == "connected" else 0)
        yield active
        yield connected


class Metrics:
    """The counters of one server, and the gauges read from its links."""

    def __init__(self, links: Sequence[Link] = ()) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "callcontrol_calls",
            "Ended calls, by client and outcome",
            ["client", "outcome"],
            registry=self.registry,
        )
        self.decision = Histogram(
            "callcontrol_decision_seconds",
            "Time the feature pipeline took to decide a call",
            buckets=DECISION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Links(links))

    def observe(self, outcome: Outcome) -> None:
        """Count an ended call (the links' ``on_outcome``)."""
        self.calls.labels(outcome.client or NO_CLIENT, outcome_label(outcome)).inc()
        if outcome.decision_seconds > 0:
            self.decision.observe(outcome.decision_seconds)

    def exposition(self) -> bytes:
        """Everything, in the Prometheus text format."""
        return generate_latest(self.registry)
