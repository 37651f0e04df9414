"""Rating maths and the billing check on plain data: the case table of DESIGN §3.7,
then properties that hold for every rate and balance."""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal

import pytest

from dialplan.rating import (
    Billed,
    NotBilled,
    RateView,
    RatingPlanView,
    RatingProfileView,
    Refused,
    active_profile,
    billed_seconds,
    check,
    match_rate,
    max_duration,
    price,
)
from dialplan.reasons import Reason
from tests.cases.rating import (
    BOTH,
    CASES,
    DECEMBER_FROM_DECEMBER,
    FRANCE,
    SPAIN_LANDLINE,
    STANDARD,
    STANDARD_FROM_JANUARY,
    WEDNESDAY_NOON,
    RatingCase,
    madrid,
    utc,
)


def run(case: RatingCase) -> NotBilled | Billed | Refused:
    return check(
        billing_method=case.method,
        has_billing_feature=case.feature,
        balance=case.balance,
        profiles=case.profiles,
        e164=case.number,
        at_utc=case.at,
        timezone_name=case.timezone,
        client_currency=case.currency,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rating_case(case: RatingCase) -> None:
    result = run(case)

    assert result.kind == case.outcome, result
    assert result.why  # every verdict explains itself in `callcontrol explain`
    if isinstance(result, Refused):
        assert result.reason == case.reason
        return
    assert case.reason is None
    if not isinstance(result, Billed):
        return
    assert result.currency == case.currency
    assert result.max_duration == case.max_duration
    if case.plan is not None:
        assert result.profile.plan.name == case.plan
    if case.rate is not None:
        assert result.rate.destination == case.rate
    if case.prefix is not None:
        assert result.rate.prefix == case.prefix
    if case.duration is not None:
        if case.billed_seconds is not None:
            assert billed_seconds(result.rate, case.duration) == case.billed_seconds
        assert price(result.rate, case.duration) == Decimal(case.price or "NaN")


def test_the_case_table_is_large_and_every_name_is_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) >= 30
    assert len(set(names)) == len(names)


# -- properties ------------------------------------------------------------------------

RATES = [
    *STANDARD.rates,
    RateView(
        id=90,
        prefix="1",
        price_per_minute=Decimal("0.1234"),
        increment_first=45,
        increment_next=15,
        connection_fee=Decimal("0.0333"),
    ),
    RateView(
        id=91, prefix="1", price_per_minute=Decimal("7"), increment_first=1, increment_next=60
    ),
    RateView(id=92, prefix="1", price_per_minute=Decimal("0"), connection_fee=Decimal("0.05")),
]
BALANCES = [Decimal(n) / 1000 for n in range(-10, 400, 7)] + [Decimal("12.3456"), Decimal(50)]


@pytest.mark.parametrize("rate", RATES, ids=lambda rate: f"rate-{rate.id}")
def test_price_never_decreases_as_the_call_grows(rate: RateView) -> None:
    prices = [price(rate, seconds) for seconds in range(400)]
    assert prices == sorted(prices)
    assert prices[0] == rate.connection_fee.quantize(Decimal("0.0001"))


@pytest.mark.parametrize("rate", RATES, ids=lambda rate: f"rate-{rate.id}")
def test_billed_seconds_cover_the_call_by_less_than_one_increment(rate: RateView) -> None:
    for seconds in range(1, 400):
        billed = billed_seconds(rate, seconds)
        assert billed >= max(seconds, rate.increment_first)
        step = rate.increment_first if seconds <= rate.increment_first else rate.increment_next
        assert billed - seconds < step
        assert (billed - rate.increment_first) % rate.increment_next == 0


@pytest.mark.parametrize("rate", RATES, ids=lambda rate: f"rate-{rate.id}")
def test_the_prepaid_cap_is_the_longest_call_the_balance_pays(rate: RateView) -> None:
    for balance in BALANCES:
        cap = max_duration(rate, balance)
        first = price(rate, rate.increment_first)
        if cap is None:
            assert rate.price_per_minute == 0
            assert first <= balance
        elif cap == 0:
            assert first > balance
        else:
            assert billed_seconds(rate, cap) == cap  # ends on an increment boundary
            assert price(rate, cap) <= balance < price(rate, cap + 1)
            assert price(rate, cap + 1) == price(rate, cap + rate.increment_next)


def test_a_large_balance_on_a_cheap_rate_is_capped_exactly() -> None:
    rate = RateView(id=1, prefix="1", price_per_minute=Decimal("0.0001"))
    cap = max_duration(rate, Decimal(1_000_000))
    assert cap is not None
    assert price(rate, cap) <= Decimal(1_000_000) < price(rate, cap + 1)


# -- the rules one at a time -------------------------------------------------------------


def test_the_active_profile_does_not_depend_on_the_order_of_profiles() -> None:
    at = utc("2026-12-15 00:00")
    assert active_profile(BOTH, at) == DECEMBER_FROM_DECEMBER
    assert active_profile(tuple(reversed(BOTH)), at) == DECEMBER_FROM_DECEMBER
    assert active_profile(BOTH, utc("2025-12-31 23:59:59")) is None


def test_activation_compares_instants_not_wall_clocks() -> None:
    # 01:00 in Madrid on 1 December is exactly the December activation instant.
    assert active_profile(BOTH, madrid("2026-12-01 01:00")) == DECEMBER_FROM_DECEMBER
    assert active_profile(BOTH, madrid("2026-12-01 00:59:59")) == STANDARD_FROM_JANUARY


def test_a_window_of_equal_times_covers_the_whole_day_from_its_start() -> None:
    day = RateView(
        id=1,
        prefix="33",
        price_per_minute=Decimal(1),
        time_from=time(8),
        time_to=time(8),
        weekdays=1 << 4,
    )  # starting Friday 08:00
    plan = RatingPlanView(id=1, name="p", currency="EUR", rates=(day,))
    assert match_rate(plan, FRANCE, datetime(2026, 11, 27, 8, 0)) == day
    assert match_rate(plan, FRANCE, datetime(2026, 11, 28, 7, 59, 59)) == day
    assert match_rate(plan, FRANCE, datetime(2026, 11, 28, 8, 0)) is None
    assert match_rate(plan, FRANCE, datetime(2026, 11, 27, 7, 59, 59)) is None


def test_match_rate_reads_numbers_with_or_without_plus() -> None:
    at = datetime(2026, 11, 25, 10, 0)
    with_plus = match_rate(STANDARD, SPAIN_LANDLINE, at)
    assert with_plus is not None
    assert with_plus.prefix == "349"
    assert match_rate(STANDARD, SPAIN_LANDLINE.removeprefix("+"), at) == with_plus


def test_refusals_say_what_to_fix() -> None:
    mismatch = check(
        "postpaid", True, Decimal(0), BOTH, SPAIN_LANDLINE, WEDNESDAY_NOON, "Europe/Madrid", "GBP"
    )
    assert isinstance(mismatch, Refused)
    assert "EUR" in mismatch.why
    assert "GBP" in mismatch.why
    assert "client's currency" in mismatch.why

    no_rate = check(
        "postpaid", True, Decimal(0), BOTH, "+5511912345678", WEDNESDAY_NOON, "Europe/Madrid", "EUR"
    )
    assert isinstance(no_rate, Refused)
    assert no_rate.why == (
        "rating plan 'Standard' has no rate for +5511912345678 on Wednesday 12:00:00 Europe/Madrid"
    )

    future = check(
        "postpaid",
        True,
        Decimal(0),
        (DECEMBER_FROM_DECEMBER,),
        SPAIN_LANDLINE,
        WEDNESDAY_NOON,
        "Europe/Madrid",
        "EUR",
    )
    assert isinstance(future, Refused)
    assert future.why == (
        "no rating profile is active at 2026-11-25 11:00:00 UTC: "
        "the first activates at 2026-12-01 00:00:00 UTC"
    )

    short = check(
        "prepaid",
        True,
        Decimal("0.0099"),
        BOTH,
        SPAIN_LANDLINE,
        WEDNESDAY_NOON,
        "Europe/Madrid",
        "EUR",
    )
    assert isinstance(short, Refused)
    assert short.reason is Reason.INSUFFICIENT_BALANCE
    assert short.why == (
        "prepaid balance 0.0099 EUR does not pay the first 60 s to prefix 349 (0.0100 EUR)"
    )


def test_a_billed_call_explains_its_rate_and_cap() -> None:
    billed = check(
        "prepaid",
        True,
        Decimal("0.0250"),
        BOTH,
        SPAIN_LANDLINE,
        WEDNESDAY_NOON,
        "Europe/Madrid",
        "EUR",
    )
    assert isinstance(billed, Billed)
    assert billed.why == (
        "rated by plan 'Standard', prefix 349 (Spain landline): 0.0100 EUR/min, "
        "connection fee 0 EUR, increments 60/60; the balance pays at most 120 s"
    )


def test_an_unknown_billing_method_fails_closed() -> None:
    result = check(
        "credit", True, Decimal(10), BOTH, SPAIN_LANDLINE, WEDNESDAY_NOON, "Europe/Madrid", "EUR"
    )
    assert result == Refused(Reason.CANNOT_BE_BILLED, "unknown billing method 'credit'")


def test_naive_times_are_refused_loudly() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RatingProfileView(9, datetime(2026, 1, 1), STANDARD)
    with pytest.raises(ValueError, match="timezone-aware"):
        active_profile(BOTH, datetime(2026, 1, 1))


def test_a_negative_duration_is_not_a_call() -> None:
    with pytest.raises(ValueError, match="-1 seconds"):
        price(STANDARD.rates[0], -1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prefix", "+34"),
        ("connection_fee", Decimal("-0.01")),
        ("price_per_minute", Decimal("-1")),
        ("increment_first", 0),
        ("increment_next", 0),
        ("weekdays", 0),
        ("weekdays", 128),
        ("time_from", time(8)),
    ],
)
def test_a_rate_the_database_would_refuse_cannot_be_built(field: str, value: object) -> None:
    fields: dict[str, object] = {"id": 1, "prefix": "34", "price_per_minute": Decimal(1)}
    fields[field] = value
    with pytest.raises(ValueError, match="rate 1"):
        RateView(**fields)  # type: ignore[arg-type]
