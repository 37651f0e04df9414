"""The pipeline on plain data: every route, every refusal of this issue, and the trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar

import pytest

from dialplan.call import Call, External
from dialplan.ddi import DdiPatternView, DdiRuleView
from dialplan.decisions import Dial, Reject, RunService
from dialplan.errors import DatabaseUnavailable
from dialplan.pipeline import ORDER, Next, Pipeline, Result, Step, StepVerdict, Verdict, step
from dialplan.rating import RateView, RatingPlanView, RatingProfileView
from dialplan.reasons import Reason
from dialplan.steps.base import BaseStep
from dialplan.views import UserView
from tests.fakes import MemoryDirectory
from tests.world import (
    ALICE,
    BOB,
    MADRID,
    ONLY_SPAIN,
    TRUNK_ES,
    TerminalView,
    from_carrier,
    from_terminal,
    world,
)


async def decide(request, directory=None):  # type: ignore[no-untyped-def]
    return await Pipeline(directory or world()).run(request)


def verdict_of(result: Result, name: str) -> StepVerdict:
    """The verdict of step ``name`` in the trace."""
    return next(verdict for verdict in result.trace if verdict.step == name)


async def test_an_internal_call_rings_the_callees_terminal_with_the_callers_extension() -> None:
    result = await decide(from_terminal("t-alice", "102"))
    assert result.decision == Dial("t-bob", "terminal", "102", "101", "alice")
    assert [v.step for v in result.trace] == list(ORDER)
    assert {v.step: v.verdict for v in result.trace} == {
        "identify": "pass",
        "source_filter": "pass",
        "emergency": "pass",
        "route": "pass",
        "call_acl": "skip",
        "max_calls": "skip",
        "daily_usage": "skip",
        "outgoing_ddi": "skip",
        "billing": "skip",
        "recording": "pass",
        "connect": "decide",
    }
    assert verdict_of(result, "recording").summary == "not recorded: on-demand recording is off"
    assert verdict_of(result, "call_acl").summary == "only for external calls placed by a user"
    assert verdict_of(result, "billing").summary == "feature billing is off"
    assert verdict_of(result, "source_filter").summary == "source filter is off"


PROFILE = RatingProfileView(
    1,
    datetime(2026, 1, 1, tzinfo=UTC),
    RatingPlanView(
        1, "standard", "EUR", (RateView(id=1, prefix="34", price_per_minute=Decimal("0.02")),)
    ),
)
ALICE_T = TerminalView("t-alice", MADRID, ALICE)
BOB_T = TerminalView("t-bob", MADRID, BOB)
UNTRACED = [
    from_terminal(endpoint, dialled)
    for endpoint in ("t-alice", "t-bob", "t-carol", "t-dave", "t-fax", "t-nobody")
    for dialled in (
        "102",
        "201",
        "*41",
        "12345",
        "600123123",
        "0034600123123",
        "+442079460123",
        "905123456",
        "111*600123123",
        "333*600123123",
        "112",
        "1",
    )
] + [
    from_carrier(endpoint, ddi)
    for endpoint in ("carrier-es", "carrier-uk")
    for ddi in ("+34910000001", "+442079460001", "+34999")
]


def guarded_world() -> MemoryDirectory:
    """The world with acme-madrid's guards on: max calls, a daily limit, prepaid billing."""
    client = replace(
        MADRID,
        features=MADRID.features | {"billing"},
        billing_method="prepaid",
        max_calls=5,
        max_daily_usage=Decimal("10"),
    )
    return world(
        terminals=[TerminalView(t.name, client, t.user) for t in (ALICE_T, BOB_T)],
        profiles={client.id: [PROFILE]},
        balances={client.id: Decimal("3")},
    )


@pytest.mark.parametrize("guarded", [False, True], ids=["plain", "guarded"])
@pytest.mark.parametrize("request_", UNTRACED, ids=lambda r: f"{r.endpoint}>{r.dialled}")
async def test_without_a_trace_a_call_is_decided_and_filled_in_alike(request_, guarded) -> None:  # type: ignore[no-untyped-def]
    """Untraced, the steps that let a call go on word nothing (``PASS``), but the call
    they fill in and the decision are the same; the result keeps the deciding verdict."""
    directory = guarded_world if guarded else world
    full = await Pipeline(directory()).run(request_)
    short = await Pipeline(directory(), trace=False).run(request_)
    assert short.decision == full.decision
    assert short.trace == full.trace[-1:]
    assert short.trace[0].verdict == "decide"
    assert replace(short.call, traced=True) == full.call


async def test_an_external_call_leaves_through_the_brand_route_presenting_the_users_ddi() -> None:
    result = await decide(from_terminal("t-bob", "0034600123123"))
    assert result.decision == Dial("carrier-es", "carrier", "+34600123123", "+34910000002")


async def test_a_national_number_is_normalised_with_the_clients_country() -> None:
    result = await decide(from_terminal("t-carol", "02079460123"))
    assert isinstance(result.decision, Dial)
    assert result.decision.number == "+442079460123"
    assert result.decision.endpoint == "carrier-uk"  # longest prefix: 44
    assert result.decision.caller_id == "+442079460000"  # the client's DDI: carol has none


async def test_a_service_code_runs_the_service() -> None:
    result = await decide(from_terminal("t-alice", "*41"))
    assert result.decision == RunService("41")
    assert verdict_of(result, "route").summary == "service code *41"


async def test_an_inter_vpbx_extension_of_the_same_corporation_rings_the_sibling() -> None:
    result = await decide(from_terminal("t-alice", "201"))
    assert result.decision == Dial("t-carol", "terminal", "201", "101", "alice")
    assert result.call.route is not None
    assert result.call.route.kind == "inter_vpbx"
    assert "of client acme-london" in verdict_of(result, "route").summary


async def test_an_extension_of_another_corporation_is_not_reachable() -> None:
    result = await decide(from_terminal("t-dave", "201"))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.INVALID_NUMBER
    assert result.decision.cause.sip == 484


async def test_an_invalid_number_is_refused_with_484() -> None:
    result = await decide(from_terminal("t-alice", "12345"))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.INVALID_NUMBER
    assert result.decision.cause.ari == "number_incomplete"


async def test_an_unknown_ddi_from_a_carrier_is_no_client_and_the_platform_speaks() -> None:
    result = await decide(from_carrier("carrier-es", "+34919999999"))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.NO_CLIENT
    assert result.decision.cause.sip == 404
    assert result.decision.notify  # no client, yet the caller hears why


async def test_no_client_is_spoken_in_the_language_of_the_carriers_brand() -> None:
    spanish = replace(TRUNK_ES, language="es")
    result = await decide(from_carrier("carrier-es", "+34919999999"), world(carriers=[spanish]))
    assert isinstance(result.decision, Reject)
    assert result.decision.language == "es"


async def test_an_unknown_endpoint_is_no_client() -> None:
    result = await decide(from_terminal("t-nobody", "102"))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.NO_CLIENT


async def test_a_carrier_call_to_a_ddi_rings_its_user_with_the_callers_number() -> None:
    result = await decide(from_carrier("carrier-es", "34910000001"))
    assert result.decision == Dial("t-alice", "terminal", "101", "+34600111222", None)
    assert result.call.client == MADRID
    assert result.call.direction == "inbound"


async def test_the_acl_denies_a_premium_number_in_the_callers_language() -> None:
    result = await decide(from_terminal("t-alice", "905123456"))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.NOT_ALLOWED
    assert result.decision.cause.sip == 403
    assert result.decision.notify  # acme-madrid has voice_notifications
    assert result.decision.language == "en"  # alice's own language beats the client's
    assert verdict_of(result, "call_acl").details["match_list"] == "premium-es"


async def test_the_acl_exact_number_pattern_matches() -> None:
    result = await decide(from_terminal("t-alice", "+34900000000"))
    assert isinstance(result.decision, Reject)
    assert (
        verdict_of(result, "call_acl").details["pattern"].startswith("regexp")
    )  # first pattern won


async def test_the_acl_allows_what_no_rule_denies() -> None:
    result = await decide(from_terminal("t-alice", "600123123"))
    assert isinstance(result.decision, Dial)
    assert "default allow" in verdict_of(result, "call_acl").summary


async def test_the_acl_default_deny_refuses_what_no_rule_allows_and_silently_without_feature() -> (
    None
):
    dave = UserView(4, 3, "dave", extension="301", terminal="t-dave", call_acl_id=2)
    directory = world()
    directory.terminals = [TerminalView("t-dave", directory.terminals[3].client, dave)]
    allowed = await decide(from_terminal("t-dave", "600123123"), directory)
    denied = await decide(from_terminal("t-dave", "+442079460123"), directory)
    assert verdict_of(allowed, "call_acl").verdict == "pass"
    # The ACL let it through; globex has no outgoing DDI, so the next step refuses it.
    assert isinstance(allowed.decision, Reject)
    assert allowed.decision.reason is Reason.NO_OUTGOING_DDI
    assert isinstance(denied.decision, Reject)
    assert denied.decision.reason is Reason.NOT_ALLOWED
    assert not denied.decision.notify  # globex has no voice_notifications
    assert ONLY_SPAIN.name in verdict_of(denied, "call_acl").summary


SALES = DdiRuleView(
    id=7,
    name="sales",
    patterns=(DdiPatternView(priority=1, kind="prefix", prefix="111*", action="keep"),),
)
"""acme-madrid's outgoing-DDI rule in the prefix tests: it defines ``111*`` only."""


def with_sales_rule(**changes: object) -> MemoryDirectory:
    sales_client = replace(MADRID, outgoing_ddi_rule_id=SALES.id)
    return world(terminals=[TerminalView("t-bob", sales_client, BOB)], ddi_rules=[SALES], **changes)


async def test_a_ddi_prefix_is_stripped_before_normalising() -> None:
    result = await decide(from_terminal("t-bob", "111*600123123"), with_sales_rule())
    assert isinstance(result.call.route, External)
    assert result.call.route.ddi_prefix == "111*"
    assert result.call.route.e164 == "+34600123123"
    assert isinstance(result.decision, Dial)


async def test_a_ddi_prefix_no_pattern_defines_is_an_invalid_number_before_any_guard() -> None:
    # The case: only 111* is defined, 333* is dialled. Every slot is taken too:
    # the number is judged first, as for any number that cannot be normalised.
    directory = with_sales_rule(calls={MADRID.id: 1})
    full = replace(MADRID, outgoing_ddi_rule_id=SALES.id, max_calls=1)
    directory.terminals = [TerminalView("t-bob", full, BOB)]
    result = await decide(from_terminal("t-bob", "333*600123123"), directory)
    assert isinstance(result.decision, Reject)
    assert (result.decision.reason, result.decision.cause.sip) == (Reason.INVALID_NUMBER, 484)
    assert result.call.route is None
    route = verdict_of(result, "route")
    assert route.verdict == "decide"
    assert route.summary == (
        "outgoing-DDI prefix 333* dialled, but rule 'sales' (client's) has no such prefix pattern"
    )


async def test_a_ddi_prefix_without_any_rule_is_an_invalid_number() -> None:
    result = await decide(from_terminal("t-bob", "111*600123123"))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.INVALID_NUMBER
    assert "neither the user nor the client has an outgoing-DDI rule" in (
        verdict_of(result, "route").summary
    )


async def test_the_users_rule_in_force_hides_the_clients_prefixes() -> None:
    bare = DdiRuleView(id=8, name="bob-bare")
    bob = replace(BOB, outgoing_ddi_rule_id=bare.id)
    directory = with_sales_rule()
    directory.terminals = [TerminalView("t-bob", directory.terminals[0].client, bob)]
    directory.ddi_rules = [SALES, bare]
    result = await decide(from_terminal("t-bob", "111*600123123"), directory)
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.INVALID_NUMBER
    assert "rule 'bob-bare' (user's)" in verdict_of(result, "route").summary


async def test_an_extension_forwarding_to_a_number_is_an_external_call() -> None:
    result = await decide(from_terminal("t-bob", "199"))
    assert isinstance(result.decision, Dial)
    assert result.decision.number == "+34600123123"
    assert isinstance(result.call.route, External)
    assert result.call.route.forwarded_by is not None


async def test_an_extension_whose_user_has_no_terminal_is_unreachable() -> None:
    result = await decide(from_terminal("t-alice", "103"))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.DESTINATION_UNREACHABLE


async def test_no_outbound_route_is_destination_unreachable() -> None:
    result = await decide(from_terminal("t-bob", "600123123"), world(routes=[]))
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.DESTINATION_UNREACHABLE
    assert result.decision.cause.sip == 503


async def test_a_terminal_without_user_may_still_call_out_without_an_acl() -> None:
    result = await decide(from_terminal("t-fax", "600123123"))
    assert isinstance(result.decision, Dial)
    assert result.decision.caller_id == MADRID.outgoing_ddi
    assert verdict_of(result, "call_acl").verdict == "skip"


class _RecordingProbe(BaseStep):
    name: ClassVar[str] = "probe"
    feature: ClassVar[str | None] = "recordings"
    ran: ClassVar[list[str]] = []

    async def run(self, call: Call) -> Verdict:
        assert call.client is not None
        _RecordingProbe.ran.append(call.client.name)
        return Next("probed")


async def test_a_step_runs_only_for_clients_with_its_feature() -> None:
    from dialplan.pipeline import REGISTRY

    registry: dict[str, type[Step]] = {**REGISTRY, "probe": _RecordingProbe}
    order = ("identify", "probe", "route", "connect")
    pipeline = Pipeline(world(), order, registry)
    _RecordingProbe.ran.clear()
    with_feature = await pipeline.run(from_terminal("t-alice", "102"))
    without = await pipeline.run(from_terminal("t-carol", "201"))
    assert _RecordingProbe.ran == ["acme-madrid"]
    assert with_feature.trace[1].verdict == "pass"
    assert without.trace[1].verdict == "skip"
    assert without.trace[1].summary == "feature recordings is off"


def test_an_unknown_step_name_fails_when_the_pipeline_is_built() -> None:
    with pytest.raises(ValueError, match="unknown pipeline steps: nope"):
        Pipeline(world(), ("identify", "nope"))


def test_a_step_without_a_place_in_the_order_cannot_register() -> None:
    class Stray(BaseStep):
        name = "stray"

    with pytest.raises(ValueError, match="no place"):
        step(Stray)


def test_a_step_name_cannot_register_twice() -> None:
    class Again(BaseStep):
        name = "route"

    with pytest.raises(ValueError, match="registered twice"):
        step(Again)


def test_the_user_language_falls_back_to_the_client() -> None:
    call = Call(
        request=from_terminal("t-bob", "1"), client=MADRID, user=replace(ALICE, language=None)
    )
    assert call.language == "es"
    assert Call(request=from_terminal("x", "1")).language == "en"


class UnreachableDirectory(MemoryDirectory):
    """A directory whose database went away: no call gets a connection."""

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        raise DatabaseUnavailable("postgresql://db.example.net/platform", "connection refused")
        yield  # an async generator, as scope() is


@pytest.mark.parametrize(
    ("origin", "direction"), [("terminal", "outbound"), ("carrier", "inbound")]
)
async def test_a_database_outage_refuses_the_call_as_service_unavailable_spoken_by_the_platform(
    origin: str, direction: str
) -> None:
    request = replace(from_terminal("t-alice", "102"), origin=origin)  # type: ignore[arg-type]
    result = await decide(request, UnreachableDirectory())
    assert result.decision == Reject(Reason.SERVICE_UNAVAILABLE, direction, notify=True)  # type: ignore[arg-type]
    assert result.decision.cause.sip == 503
    [verdict] = result.trace
    assert (verdict.step, verdict.verdict, verdict.details) == (
        "pipeline",
        "decide",
        {"detail": "connection refused"},
    )
    assert "postgresql://db.example.net/platform is unavailable" in verdict.summary


@pytest.mark.parametrize(
    ("endpoint", "dialled", "reason", "says"),
    [
        (
            "t-alice",
            "6001\x00",
            Reason.INVALID_NUMBER,
            "dialled number holds the control character U+0000",
        ),
        ("t-alice", "\udcff", Reason.INVALID_NUMBER, "dialled number holds invalid Unicode U+DCFF"),
        (
            "t-alice",
            "102\n",
            Reason.INVALID_NUMBER,
            "dialled number holds the control character U+000A",
        ),
        ("t-al\x00ice", "102", Reason.NO_CLIENT, "endpoint holds the control character U+0000"),
    ],
)
async def test_a_nul_a_control_character_or_invalid_unicode_is_refused_at_the_edge(
    endpoint: str, dialled: str, reason: Reason, says: str
) -> None:
    result = await decide(from_terminal(endpoint, dialled))

    assert isinstance(result.decision, Reject)
    assert result.decision.reason == reason
    identify = verdict_of(result, "identify")
    assert identify.verdict == "decide"
    assert identify.summary.startswith(says)
    # the summary (a log line) holds no part of the bad value
    assert identify.summary.isprintable()


async def test_an_unknown_endpoint_of_ten_thousand_characters_is_named_cut() -> None:
    result = await decide(from_terminal("x" * 10_000, "102"))

    assert isinstance(result.decision, Reject)
    assert result.decision.reason == Reason.NO_CLIENT
    summary = verdict_of(result, "identify").summary
    assert "(10,000 characters)" in summary
    assert len(summary) < 200
