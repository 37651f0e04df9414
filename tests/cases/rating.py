"""The billing check and rating of DESIGN §3.7, case by case.

The world: client calls are rated in Europe/Madrid (UTC+1 in November and
December 2026) and pay in EUR unless a case says otherwise. 2026-11-27 is a
Friday, 2026-11-28 a Saturday. Two rating profiles: ``Standard`` from
2026-01-01 and ``December`` from 2026-12-01 00:00:00 UTC.

Standard (EUR) rates, by prefix:

=====  ======================  ========  =========  ======  ==========================
id     destination             prefix    fee        €/min   increments, weight, window
=====  ======================  ========  =========  ======  ==========================
1      Spain                   34        0          0.0200  1/1
2      Spain landline          349       0          0.0100  60/60
3      Spain mobile            346       0.0150     0.0600  30/6
10     UK                      44        0          0.0300  1/1
11     UK premium carrier      44        0          0.0400  1/1, weight 5
20     France                  33        0          0.0500  1/1
21     France lunch            33        0          0.0300  1/1, 12:00→14:00 Mon–Fri
22     France Friday night     33        0          0.0100  1/1, 22:00→06:00 starting Fri
30     Italy A                 39        0          0.0400  1/1
31     Italy B                 39        0          0.0200  1/1 (same rank: lowest id wins)
40     Switzerland weekdays    41        0          0.0700  1/1, no window, Mon–Fri only
70     Austria                 43        0          0.0500  1/1
71     Austria weekends        43        0          0.0200  1/1, no window, Sat–Sun only
80     Portugal                351       0          0.0500  1/1
81     Portugal office, light  351       0          0.0400  1/1, weight 10, 08:00→20:00 Mon–Fri
82     Portugal office, heavy  351       0          0.0300  1/1, weight 20, 08:00→20:00 Mon–Fri
83     Greece                  30        0          0.0600  1/1, weight 10
84     Greece evenings         30        0          0.0200  1/1, 18:00→22:00 every day
50     Freephone               800       0          0       1/1
60     Tiny                    882       0          0.0003  1/1 (for rounding)
=====  ======================  ========  =========  ======  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from dialplan.rating import RateView, RatingPlanView, RatingProfileView
from dialplan.reasons import Reason

MADRID = ZoneInfo("Europe/Madrid")
MON_TO_FRI = 0b0011111
FRIDAY = 1 << 4


def madrid(moment: str) -> datetime:
    """``2026-11-27 23:00`` on a Madrid wall clock, as the UTC instant the shell passes."""
    return datetime.fromisoformat(moment).replace(tzinfo=MADRID).astimezone(UTC)


def utc(moment: str) -> datetime:
    return datetime.fromisoformat(moment).replace(tzinfo=UTC)


def _rate(rate_id: int, destination: str, prefix: str, per_minute: str, **more: Any) -> RateView:
    return RateView(
        id=rate_id,
        prefix=prefix,
        destination=destination,
        price_per_minute=Decimal(per_minute),
        **more,
    )


STANDARD = RatingPlanView(
    id=1,
    name="Standard",
    currency="EUR",
    rates=(
        _rate(1, "Spain", "34", "0.0200"),
        _rate(2, "Spain landline", "349", "0.0100", increment_first=60, increment_next=60),
        _rate(
            3,
            "Spain mobile",
            "346",
            "0.0600",
            connection_fee=Decimal("0.0150"),
            increment_first=30,
            increment_next=6,
        ),
        _rate(10, "UK", "44", "0.0300"),
        _rate(11, "UK premium carrier", "44", "0.0400", weight=5),
        _rate(20, "France", "33", "0.0500"),
        _rate(
            21,
            "France lunch",
            "33",
            "0.0300",
            time_from=time(12),
            time_to=time(14),
            weekdays=MON_TO_FRI,
        ),
        _rate(
            22,
            "France Friday night",
            "33",
            "0.0100",
            time_from=time(22),
            time_to=time(6),
            weekdays=FRIDAY,
        ),
        # Listed out of id order on purpose: the tie-break must not depend on it.
        _rate(31, "Italy B", "39", "0.0200"),
        _rate(30, "Italy A", "39", "0.0400"),
        _rate(40, "Switzerland weekdays", "41", "0.0700", weekdays=MON_TO_FRI),
        _rate(70, "Austria", "43", "0.0500"),
        _rate(71, "Austria weekends", "43", "0.0200", weekdays=0b1100000),
        # Same prefix and window, different weights: both exist, the heavier prices.
        _rate(80, "Portugal", "351", "0.0500"),
        _rate(
            81,
            "Portugal office, light",
            "351",
            "0.0400",
            weight=10,
            time_from=time(8),
            time_to=time(20),
            weekdays=MON_TO_FRI,
        ),
        _rate(
            82,
            "Portugal office, heavy",
            "351",
            "0.0300",
            weight=20,
            time_from=time(8),
            time_to=time(20),
            weekdays=MON_TO_FRI,
        ),
        # Weight ranks before the window: the heavier always-rate beats a matching window.
        _rate(83, "Greece", "30", "0.0600", weight=10),
        _rate(84, "Greece evenings", "30", "0.0200", time_from=time(18), time_to=time(22)),
        _rate(50, "Freephone", "800", "0"),
        _rate(60, "Tiny", "882", "0.0003"),
    ),
)
DECEMBER = RatingPlanView(
    id=2, name="December", currency="EUR", rates=(_rate(100, "Spain in December", "34", "0.0100"),)
)
STERLING = RatingPlanView(
    id=3, name="Sterling", currency="GBP", rates=(_rate(200, "Spain from the UK", "34", "0.0250"),)
)

STANDARD_FROM_JANUARY = RatingProfileView(1, utc("2026-01-01 00:00:00"), STANDARD)
DECEMBER_FROM_DECEMBER = RatingProfileView(2, utc("2026-12-01 00:00:00"), DECEMBER)
STERLING_FROM_JANUARY = RatingProfileView(3, utc("2026-01-01 00:00:00"), STERLING)
BOTH = (DECEMBER_FROM_DECEMBER, STANDARD_FROM_JANUARY)

WEDNESDAY_NOON = madrid("2026-11-25 12:00")  # outside every window
SPAIN_LANDLINE = "+34910123456"
SPAIN_MOBILE = "+34600123123"
SPAIN_OTHER = "+34810000000"
UK = "+442079460123"
FRANCE = "+33142685300"
ITALY = "+390612345678"
SWITZERLAND = "+41441234567"
AUSTRIA = "+43153112345"
FREEPHONE = "+80012345678"
PORTUGAL = "+351211234567"
GREECE = "+302101234567"
TINY = "+882123456789"


@dataclass(frozen=True)
class RatingCase:
    """One call through :func:`dialplan.rating.check` and, when billed, :func:`price`.

    Inputs default to a postpaid EUR client in Madrid with both profiles, calling a
    Spanish landline on a Wednesday at noon. Expected values left at None are not
    part of the case, except ``max_duration``, which is always compared when billed.
    """

    name: str
    # inputs
    number: str = SPAIN_LANDLINE
    at: datetime = WEDNESDAY_NOON
    method: str = "postpaid"
    feature: bool = True
    balance: Decimal = Decimal(0)
    profiles: tuple[RatingProfileView, ...] = BOTH
    timezone: str = "Europe/Madrid"
    currency: str = "EUR"
    duration: int | None = None
    """Seconds of the answered call to price; None = only the check."""
    # expected
    outcome: Literal["billed", "not_billed", "refused"] = "billed"
    reason: Reason | None = None
    plan: str | None = None
    rate: str | None = None
    """The matched rate's destination."""
    prefix: str | None = None
    max_duration: int | None = None
    billed_seconds: int | None = None
    price: str | None = None


CANNOT = Reason.CANNOT_BE_BILLED
BALANCE = Reason.INSUFFICIENT_BALANCE

CASES: list[RatingCase] = [
    # -- longest prefix ------------------------------------------------------------------
    RatingCase(
        "longest prefix: a Spanish landline takes 349 over 34",
        rate="Spain landline",
        prefix="349",
    ),
    RatingCase(
        "longest prefix: a Spanish mobile takes 346 over 34",
        number=SPAIN_MOBILE,
        rate="Spain mobile",
        prefix="346",
    ),
    RatingCase(
        "longest prefix: another Spanish number falls back to 34",
        number=SPAIN_OTHER,
        rate="Spain",
        prefix="34",
    ),
    RatingCase(
        "no rate matches the number: cannot_be_billed",
        number="+5511912345678",
        outcome="refused",
        reason=CANNOT,
    ),
    # -- active profile, to the second ---------------------------------------------------
    RatingCase(
        "activation: one second before December the Standard plan is active",
        at=utc("2026-11-30 23:59:59"),
        plan="Standard",
        rate="Spain landline",
    ),
    RatingCase(
        "activation: 0.999 s before December still counts as the second before",
        at=utc("2026-11-30 23:59:59.999"),
        plan="Standard",
    ),
    RatingCase(
        "activation: exactly at its activation time the December profile is active",
        at=utc("2026-12-01 00:00:00"),
        plan="December",
        rate="Spain in December",
        prefix="34",
    ),
    RatingCase(
        "activation: one second after, the December profile is still active",
        at=utc("2026-12-01 00:00:01"),
        plan="December",
    ),
    RatingCase(
        "activation: a future profile is ignored while an older one is active",
        at=WEDNESDAY_NOON,
        plan="Standard",
    ),
    RatingCase(
        "activation: only a future profile means no active profile: cannot_be_billed",
        profiles=(DECEMBER_FROM_DECEMBER,),
        outcome="refused",
        reason=CANNOT,
    ),
    RatingCase(
        "activation: no rating profile at all: cannot_be_billed",
        profiles=(),
        outcome="refused",
        reason=CANNOT,
    ),
    # -- weights and ties ----------------------------------------------------------------
    RatingCase(
        "weight: same prefix 44, the weight-5 rate wins",
        number=UK,
        rate="UK premium carrier",
        prefix="44",
    ),
    RatingCase(
        "weight: same prefix and window, the weight-20 rate wins over weight 10",
        number=PORTUGAL,
        at=madrid("2026-11-25 10:00"),
        rate="Portugal office, heavy",
        prefix="351",
        duration=60,
        price="0.0300",
    ),
    RatingCase(
        "weight: outside both weighted windows (Saturday) the plain rate applies",
        number=PORTUGAL,
        at=madrid("2026-11-28 10:00"),
        rate="Portugal",
    ),
    RatingCase(
        "weight: after 20:00 on a weekday the weighted windows are closed",
        number=PORTUGAL,
        at=madrid("2026-11-25 20:00"),
        rate="Portugal",
    ),
    RatingCase(
        "weight before window: weight 10 always beats a matching weight-0 window",
        number=GREECE,
        at=madrid("2026-11-25 19:00"),
        rate="Greece",
    ),
    RatingCase(
        "tie on prefix, weight and window: the lowest id wins",
        number=ITALY,
        rate="Italy A",
    ),
    # -- time windows (Madrid local time) ------------------------------------------------
    RatingCase(
        "window: Wednesday 13:00 is inside 12:00-14:00 and windowed beats unwindowed",
        number=FRANCE,
        at=madrid("2026-11-25 13:00"),
        rate="France lunch",
    ),
    RatingCase(
        "window: Wednesday 12:00:00 is the start, inside",
        number=FRANCE,
        at=madrid("2026-11-25 12:00"),
        rate="France lunch",
    ),
    RatingCase(
        "window: Wednesday 11:59:59 is before the start, outside",
        number=FRANCE,
        at=madrid("2026-11-25 11:59:59"),
        rate="France",
    ),
    RatingCase(
        "window: Wednesday 14:00:00 is the end, outside",
        number=FRANCE,
        at=madrid("2026-11-25 14:00"),
        rate="France",
    ),
    RatingCase(
        "window: Saturday 13:00 is not on the Mon-Fri mask",
        number=FRANCE,
        at=madrid("2026-11-28 13:00"),
        rate="France",
    ),
    RatingCase(
        "window wrapping midnight: Friday 23:00 is inside Friday's 22:00-06:00",
        number=FRANCE,
        at=madrid("2026-11-27 23:00"),
        rate="France Friday night",
    ),
    RatingCase(
        "window wrapping midnight: Saturday 03:00 belongs to Friday's window",
        number=FRANCE,
        at=madrid("2026-11-28 03:00"),
        rate="France Friday night",
    ),
    RatingCase(
        "window wrapping midnight: Friday 03:00 belongs to Thursday's, not on the mask",
        number=FRANCE,
        at=madrid("2026-11-27 03:00"),
        rate="France",
    ),
    RatingCase(
        "window wrapping midnight: Saturday 06:00 is the end, outside",
        number=FRANCE,
        at=madrid("2026-11-28 06:00"),
        rate="France",
    ),
    RatingCase(
        "window wrapping midnight: Saturday 22:00 starts no window (Friday only)",
        number=FRANCE,
        at=madrid("2026-11-28 22:00"),
        rate="France",
    ),
    RatingCase(
        "window uses the client's timezone: 21:30 UTC Friday is 22:30 in Madrid",
        number=FRANCE,
        at=utc("2026-11-27 21:30"),
        rate="France Friday night",
    ),
    RatingCase(
        "window uses the client's timezone: 21:30 UTC Friday is 21:30 in London",
        number=FRANCE,
        at=utc("2026-11-27 21:30"),
        timezone="Europe/London",
        rate="France",
    ),
    RatingCase(
        "an unknown timezone cannot place the call in time: cannot_be_billed",
        timezone="Mars/Olympus_Mons",
        outcome="refused",
        reason=CANNOT,
    ),
    RatingCase(
        "weekday mask without a window: Switzerland on a Friday is rated",
        number=SWITZERLAND,
        at=madrid("2026-11-27 12:00"),
        rate="Switzerland weekdays",
    ),
    RatingCase(
        "weekday mask without a window: Switzerland on a Saturday has no rate",
        number=SWITZERLAND,
        at=madrid("2026-11-28 12:00"),
        outcome="refused",
        reason=CANNOT,
    ),
    RatingCase(
        "weekdays only beats every day: Austria on a Saturday takes the weekend rate",
        number=AUSTRIA,
        at=madrid("2026-11-28 12:00"),
        rate="Austria weekends",
    ),
    RatingCase(
        "weekdays only applies on its days: Austria on a Friday takes the every-day rate",
        number=AUSTRIA,
        at=madrid("2026-11-27 12:00"),
        rate="Austria",
    ),
    # -- increments, connection fee, price -----------------------------------------------
    RatingCase(
        "increments 1/1: 61 s bill 61 s at 0.02/min = 0.0203",
        number=SPAIN_OTHER,
        duration=61,
        billed_seconds=61,
        price="0.0203",
    ),
    RatingCase(
        "increments 1/1: a one-second call bills one second",
        number=SPAIN_OTHER,
        duration=1,
        billed_seconds=1,
        price="0.0003",
    ),
    RatingCase(
        "increments 60/60: a one-second call bills 60 s",
        duration=1,
        billed_seconds=60,
        price="0.0100",
    ),
    RatingCase(
        "increments 60/60: 60 s bill exactly one increment",
        duration=60,
        billed_seconds=60,
        price="0.0100",
    ),
    RatingCase(
        "increments 60/60: 61 s bill 120 s",
        duration=61,
        billed_seconds=120,
        price="0.0200",
    ),
    RatingCase(
        "increments 30/6 with fee: 31 s bill 36 s, 0.0150 + 0.0360",
        number=SPAIN_MOBILE,
        duration=31,
        billed_seconds=36,
        price="0.0510",
    ),
    RatingCase(
        "increments 30/6 with fee: a one-second call bills the first 30 s and the fee",
        number=SPAIN_MOBILE,
        duration=1,
        billed_seconds=30,
        price="0.0450",
    ),
    RatingCase(
        "connection fee: an answered 0-second call costs exactly the fee",
        number=SPAIN_MOBILE,
        duration=0,
        billed_seconds=0,
        price="0.0150",
    ),
    RatingCase(
        "zero-length call without fee costs nothing",
        duration=0,
        billed_seconds=0,
        price="0.0000",
    ),
    RatingCase(
        "rounding half up: 10 s at 0.0003/min is 0.00005, priced 0.0001",
        number=TINY,
        duration=10,
        billed_seconds=10,
        price="0.0001",
    ),
    RatingCase(
        "rounding half up: 9 s at 0.0003/min is 0.000045, priced 0.0000",
        number=TINY,
        duration=9,
        billed_seconds=9,
        price="0.0000",
    ),
    # -- currency ------------------------------------------------------------------------
    RatingCase(
        "currency: a GBP plan rates a GBP client",
        profiles=(STERLING_FROM_JANUARY,),
        currency="GBP",
        rate="Spain from the UK",
        duration=60,
        price="0.0250",
    ),
    RatingCase(
        "currency: a EUR plan cannot price a GBP client: cannot_be_billed",
        currency="GBP",
        outcome="refused",
        reason=CANNOT,
    ),
    # -- billing methods -----------------------------------------------------------------
    RatingCase(
        "billing feature off: not billed, whatever the method, balance and profiles",
        feature=False,
        method="prepaid",
        balance=Decimal(-5),
        profiles=(),
        outcome="not_billed",
    ),
    RatingCase(
        "billing method none: not billed",
        method="none",
        profiles=(),
        outcome="not_billed",
    ),
    RatingCase(
        "postpaid never checks the balance: a negative balance is billed, no cap",
        method="postpaid",
        balance=Decimal("-100"),
        rate="Spain landline",
        max_duration=None,
    ),
    RatingCase(
        "prepaid with a balance of exactly zero: insufficient_balance",
        method="prepaid",
        balance=Decimal("0.0000"),
        outcome="refused",
        reason=BALANCE,
    ),
    RatingCase(
        "prepaid with a negative balance: insufficient_balance",
        method="prepaid",
        balance=Decimal("-0.01"),
        outcome="refused",
        reason=BALANCE,
    ),
    RatingCase(
        "pseudoprepaid with a balance of exactly zero: insufficient_balance",
        method="pseudoprepaid",
        balance=Decimal(0),
        outcome="refused",
        reason=BALANCE,
    ),
    RatingCase(
        "pseudoprepaid with a negative balance: insufficient_balance",
        method="pseudoprepaid",
        balance=Decimal("-3"),
        outcome="refused",
        reason=BALANCE,
    ),
    RatingCase(
        "pseudoprepaid with a positive balance: billed and never capped",
        method="pseudoprepaid",
        balance=Decimal("0.0001"),
        rate="Spain landline",
        max_duration=None,
    ),
    RatingCase(
        "rate before balance: prepaid at zero with no profile is cannot_be_billed",
        method="prepaid",
        balance=Decimal(0),
        profiles=(),
        outcome="refused",
        reason=CANNOT,
    ),
    # -- prepaid caps --------------------------------------------------------------------
    RatingCase(
        "prepaid, just enough for one 60 s increment: capped at 60 s",
        method="prepaid",
        balance=Decimal("0.0100"),
        max_duration=60,
        duration=60,
        price="0.0100",
    ),
    RatingCase(
        "prepaid, positive but short of the first increment: insufficient_balance",
        method="prepaid",
        balance=Decimal("0.0099"),
        outcome="refused",
        reason=BALANCE,
    ),
    RatingCase(
        "prepaid, positive but short of fee + first 30 s (0.0450): insufficient_balance",
        method="prepaid",
        number=SPAIN_MOBILE,
        balance=Decimal("0.0449"),
        outcome="refused",
        reason=BALANCE,
    ),
    RatingCase(
        "prepaid, 2.5 increments of 60/60 paid: capped at 120 s",
        method="prepaid",
        balance=Decimal("0.0250"),
        max_duration=120,
    ),
    RatingCase(
        "prepaid 1/1: 1.00 EUR at 0.02/min pays exactly 3000 s",
        method="prepaid",
        number=SPAIN_OTHER,
        balance=Decimal("1.00"),
        max_duration=3000,
        duration=3000,
        price="1.0000",
    ),
    RatingCase(
        "prepaid 30/6 with fee: 0.10 pays 84 s (0.0990), 90 s would cost 0.1050",
        method="prepaid",
        number=SPAIN_MOBILE,
        balance=Decimal("0.10"),
        max_duration=84,
        duration=84,
        price="0.0990",
    ),
    RatingCase(
        "prepaid cap is exact with rounding: 0.0001 pays 29 s at 0.0003/min",
        method="prepaid",
        number=TINY,
        balance=Decimal("0.0001"),
        max_duration=29,
        duration=29,
        price="0.0001",
    ),
    RatingCase(
        "prepaid to a free destination: billed without a cap",
        method="prepaid",
        number=FREEPHONE,
        balance=Decimal("0.01"),
        rate="Freephone",
        max_duration=None,
        duration=600,
        price="0.0000",
    ),
]


# -- what a call costs: answered or not -----------------------------------------------------


@dataclass(frozen=True)
class ChargeCase:
    """What a call costs once it ended (DESIGN §3.7): answered for ``duration`` seconds
    (counted from the answer), ``connection_fee + price_per_minute × billed_seconds / 60``,
    so an answered call of 0 s costs the fee; never answered, 0, whatever the rate.

    The same rule prices the call's CDR, ``explain --duration N`` (answered for N s) and
    ``explain --unanswered``. Calls from a postpaid Madrid client on a Wednesday at noon.
    """

    name: str
    number: str
    answered: bool
    duration: int
    """Seconds from the answer; an unanswered call has none (0)."""
    billed_seconds: int
    price: str


CHARGE_CASES: list[ChargeCase] = [
    ChargeCase("answered for 0 s with a fee: the fee", SPAIN_MOBILE, True, 0, 0, "0.0150"),
    ChargeCase("answered for 1 s with a fee: fee + first 30 s", SPAIN_MOBILE, True, 1, 30,
               "0.0450"),
    ChargeCase("answered for 31 s at 30/6: 36 s billed", SPAIN_MOBILE, True, 31, 36, "0.0510"),
    ChargeCase("not answered, rate with a fee: 0", SPAIN_MOBILE, False, 0, 0, "0"),
    ChargeCase("answered for 0 s without a fee: 0.0000", SPAIN_LANDLINE, True, 0, 0, "0.0000"),
    ChargeCase("answered for 61 s at 60/60: 120 s billed", SPAIN_LANDLINE, True, 61, 120,
               "0.0200"),
    ChargeCase("not answered, rate without a fee: 0", SPAIN_LANDLINE, False, 0, 0, "0"),
    ChargeCase("answered to a free destination: 0.0000", FREEPHONE, True, 600, 600, "0.0000"),
    ChargeCase("not answered to a free destination: 0", FREEPHONE, False, 0, 0, "0"),
]  # fmt: skip
