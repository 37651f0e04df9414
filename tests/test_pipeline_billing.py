"""The outgoing_ddi and billing steps inside the pipeline, on the in-memory world.

The selection and rating rules themselves are table-tested in test_ddi.py and
test_rating.py; these check how the steps wire them: which calls they judge, what
they put in the Dial, and how a refusal sounds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from dialplan.ddi import DdiPatternView, DdiRuleView
from dialplan.decisions import Dial, Reject
from dialplan.pipeline import Pipeline
from dialplan.rating import RateView, RatingPlanView, RatingProfileView
from dialplan.reasons import Reason
from dialplan.views import DdiView, TerminalView
from tests.fakes import MemoryDirectory
from tests.world import BOB, MADRID, from_terminal, world

PLAN = RatingPlanView(
    1,
    "standard",
    "EUR",
    (
        RateView(id=1, prefix="34", price_per_minute=Decimal("0.02")),
        RateView(
            id=2,
            prefix="346",
            price_per_minute=Decimal("0.06"),
            connection_fee=Decimal("0.01"),
            increment_first=30,
            increment_next=6,
        ),
    ),
)
PROFILE = RatingProfileView(1, datetime(2026, 1, 1, tzinfo=UTC), PLAN)
BILLED_MADRID = replace(MADRID, features=MADRID.features | {"billing"}, billing_method="prepaid")


def billed_world(balance: str, method: str = "prepaid") -> MemoryDirectory:
    client = replace(BILLED_MADRID, billing_method=method)
    directory = world(
        terminals=[TerminalView("t-bob", client, BOB)],
        profiles={client.id: [PROFILE]},
        balances={client.id: Decimal(balance)},
    )
    return directory


async def decide(directory: MemoryDirectory, dialled: str):  # type: ignore[no-untyped-def]
    return await Pipeline(directory).run(from_terminal("t-bob", dialled))


async def test_a_prepaid_call_dials_with_the_rate_and_the_duration_the_balance_pays() -> None:
    result = await decide(billed_world("1.00"), "600123123")
    assert isinstance(result.decision, Dial)
    assert result.decision.billing is not None
    assert result.decision.billing.rate.prefix == "346"
    # 1.00 - 0.01 fee pays 16.5 minutes at 0.06/min: 990 s, whole 6 s increments.
    assert result.decision.max_duration == 990
    billing = next(v for v in result.trace if v.step == "billing")
    assert billing.details["balance"] == "1.00 EUR"
    assert billing.details["max_duration"] == "990 s"


async def test_a_postpaid_call_is_rated_but_never_capped() -> None:
    result = await decide(billed_world("-50", "postpaid"), "910123456")
    assert isinstance(result.decision, Dial)
    assert result.decision.billing is not None
    assert result.decision.billing.rate.prefix == "34"
    assert result.decision.max_duration is None


async def test_a_prepaid_client_at_zero_balance_hears_insufficient_balance() -> None:
    result = await decide(billed_world("0"), "600123123")
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.INSUFFICIENT_BALANCE
    assert result.decision.notify  # MADRID has voice_notifications
    assert result.decision.cause.sip == 403


async def test_a_destination_no_rate_prices_cannot_be_billed() -> None:
    result = await decide(billed_world("10"), "+442079460123")
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.CANNOT_BE_BILLED
    assert [v.step for v in result.trace][-1] == "billing"


async def test_billing_method_none_is_not_priced_and_internal_calls_never_reach_billing() -> None:
    external = await decide(billed_world("0", "none"), "600123123")
    internal = await decide(billed_world("0"), "101")
    assert isinstance(external.decision, Dial)
    assert external.decision.billing is None
    assert "billing method none" in next(v for v in external.trace if v.step == "billing").summary
    assert isinstance(internal.decision, Dial)
    assert next(v for v in internal.trace if v.step == "billing").verdict == "skip"


async def test_the_user_rule_forces_a_ddi_and_the_dial_presents_it() -> None:
    rule = DdiRuleView(
        id=7,
        name="sales",
        default_action="keep",
        patterns=(
            DdiPatternView(
                priority=1, kind="prefix", prefix="111", action="force", forced_ddi="+34910000009"
            ),
        ),
    )
    bob = replace(BOB, outgoing_ddi_rule_id=7)
    directory = world(terminals=[TerminalView("t-bob", MADRID, bob)], ddi_rules=[rule])
    prefixed = await decide(directory, "111*600123123")
    plain = await decide(directory, "600123123")
    assert isinstance(prefixed.decision, Dial)
    assert isinstance(plain.decision, Dial)
    assert (prefixed.decision.number, prefixed.decision.caller_id) == (
        "+34600123123",
        "+34910000009",
    )
    assert plain.decision.caller_id == "+34910000002"  # bob's own DDI, kept by default
    trace = next(v for v in prefixed.trace if v.step == "outgoing_ddi")
    assert trace.details["rule"] == "sales (user's)"


async def test_a_forwarded_call_presents_the_caller_and_names_the_forwarder_in_a_diversion() -> (
    None
):
    result = await decide(world(), "199")
    assert isinstance(result.decision, Dial)
    assert result.decision.caller_id == "+34910000002"  # bob, the original caller
    assert result.decision.diversion == "+34910000000"  # the forwarding extension's client


async def test_no_outgoing_ddi_refuses_with_its_reason_and_locution() -> None:
    no_ddi = replace(MADRID, outgoing_ddi=None)
    anonymous = replace(BOB, outgoing_ddi=None)
    directory = world(terminals=[TerminalView("t-bob", no_ddi, anonymous)])
    result = await decide(directory, "600123123")
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.NO_OUTGOING_DDI
    assert result.decision.locution == "no_outgoing_ddi"
    assert result.decision.notify


async def test_a_presented_ddi_that_records_outbound_calls_records_them_from_answer() -> None:
    recorder = replace(MADRID, on_demand_recording="dtmf", on_demand_record_code="7")
    bob = replace(BOB, outgoing_ddi="+34910000002")
    directory = world(
        terminals=[TerminalView("t-bob", recorder, bob)],
        ddis=[DdiView("+34910000002", recorder, "user", user=bob, record_calls="outbound")],
    )
    external = await decide(directory, "600123123")
    internal = await decide(directory, "101")
    assert isinstance(external.decision, Dial)
    assert external.decision.recording is not None
    assert (external.decision.recording.from_answer, external.decision.recording.dtmf_code) == (
        True,
        "7",
    )
    assert isinstance(internal.decision, Dial)
    assert internal.decision.recording is not None
    assert not internal.decision.recording.from_answer  # internal calls present no DDI
