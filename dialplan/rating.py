"""Rating maths and the billing check of DESIGN §3.7: plain views in, values out.

No I/O here. The shell loads a client's rating profiles into the views below
(mirroring ``models.billing``); :func:`check` decides whether an external call may
start and, for prepaid, how long it may last; :func:`price` prices it at hang-up.
Money is ``Decimal`` throughout and prices have 4 decimal places, ``ROUND_HALF_UP``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialplan.reasons import Reason

PRICE_QUANTUM = Decimal("0.0001")
"""Prices are rounded to this, half up."""

ALL_WEEKDAYS = 0b1111111
"""The weekday mask of every day, Monday = bit 0 ... Sunday = bit 6."""

BillingMethod = Literal["none", "postpaid", "prepaid", "pseudoprepaid"]
_METHODS: tuple[str, ...] = get_args(BillingMethod)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True, kw_only=True)
class RateView:
    """The price of calls to an E.164 prefix (digits, no '+'), as ``models.billing.Rate``.

    A rate with a time window (``time_from`` and ``time_to`` both set) applies in
    the local window ``[time_from, time_to)`` that starts on a weekday of the
    ``weekdays`` mask; ``time_to <= time_from`` wraps midnight (see
    :func:`match_rate`). A rate without a window applies on the mask's weekdays.
    An empty prefix matches every number. Keyword-only, so a fee is never taken
    for a price; the constructor refuses what the database's CHECKs would refuse.
    """

    id: int
    prefix: str
    price_per_minute: Decimal
    connection_fee: Decimal = Decimal(0)
    increment_first: int = 1
    increment_next: int = 1
    weight: int = 0
    time_from: time | None = None
    time_to: time | None = None
    weekdays: int = ALL_WEEKDAYS
    destination: str = ""

    def __post_init__(self) -> None:
        if self.prefix and not (self.prefix.isascii() and self.prefix.isdigit()):
            raise ValueError(f"rate {self.id}: prefix {self.prefix!r} is not E.164 digits")
        if self.connection_fee < 0 or self.price_per_minute < 0:
            raise ValueError(f"rate {self.id}: fee and price per minute must be ≥ 0")
        if self.increment_first < 1 or self.increment_next < 1:
            raise ValueError(f"rate {self.id}: increments must be ≥ 1 second")
        if not 1 <= self.weekdays <= ALL_WEEKDAYS:
            raise ValueError(f"rate {self.id}: weekdays must be a mask between 1 and 127")
        if (self.time_from is None) != (self.time_to is None):
            raise ValueError(f"rate {self.id}: a time window needs both time_from and time_to")

    @property
    def windowed(self) -> bool:
        return self.time_from is not None

    @property
    def specificity(self) -> int:
        """2 for a time window, 1 for weekdays only (not all seven), 0 for always."""
        if self.windowed:
            return 2
        return 1 if self.weekdays != ALL_WEEKDAYS else 0

    @property
    def increments(self) -> str:
        return f"{self.increment_first}/{self.increment_next}"


@dataclass(frozen=True, slots=True)
class RatingPlanView:
    """A price list in one currency (``models.billing.RatingPlanGroup``)."""

    id: int
    name: str
    currency: str
    rates: tuple[RateView, ...] = ()


@dataclass(frozen=True, slots=True)
class RatingProfileView:
    """A client's rating plan from ``activation_time`` (timezone-aware) on."""

    id: int
    activation_time: datetime
    plan: RatingPlanView

    def __post_init__(self) -> None:
        if self.activation_time.utcoffset() is None:
            raise ValueError(f"rating profile {self.id}: activation_time must be timezone-aware")


def active_profile(profiles: Iterable[RatingProfileView], at: datetime) -> RatingProfileView | None:
    """The profile with the latest activation time ≤ ``at``, or None.

    Times compare to the second (fractions dropped on both sides), so a profile
    activating at ``at``'s second is active; profiles activating later are
    ignored. Equal activation times (the database forbids them) go to the
    higher id, so the answer never depends on the order of ``profiles``.
    """
    now = _to_second(_aware(at, "at"))
    started = [p for p in profiles if _to_second(p.activation_time) <= now]
    return max(started, key=lambda p: (p.activation_time, p.id), default=None)


def match_rate(plan: RatingPlanView, e164: str, local_time: datetime) -> RateView | None:
    """The rate of ``plan`` for ``e164`` (with or without '+') at ``local_time``, or None.

    ``local_time`` is the call's start in the client's timezone; only its wall
    clock and weekday are read.

    Applicable rates: the prefix starts the number, and
      - without a time window: the local weekday is in the mask;
      - with a window ``time_from < time_to``: ``time_from <= t < time_to`` on a
        weekday in the mask (the end is outside);
      - with a window ``time_to <= time_from`` (wraps midnight, e.g. 22:00→06:00):
        ``t >= time_from`` on a weekday in the mask, or ``t < time_to`` on the day
        after one: **the weekday is the one the window started on**, so Friday
        22:00→06:00 covers Saturday 03:00. Equal times are a 24-hour window.

    Among them the winner is: the longest prefix; then the higher weight; then the
    more specific (a time window over weekdays only over always: a weekend rate beats
    the every-day one on Saturdays); then the lowest id.
    """
    digits = e164.removeprefix("+")
    applicable = [r for r in plan.rates if digits.startswith(r.prefix) and _applies(r, local_time)]
    return min(
        applicable,
        key=lambda r: (-len(r.prefix), -r.weight, -r.specificity, r.id),
        default=None,
    )


def billed_seconds(rate: RateView, duration: int) -> int:
    """The seconds charged for an answered call of ``duration`` seconds.

    0 for 0; otherwise the first increment, then whole next increments:
    1 s at 60/60 → 60, 61 s at 60/60 → 120, 31 s at 30/6 → 36.
    """
    if duration < 0:
        raise ValueError(f"a call cannot last {duration} seconds")
    if duration == 0:
        return 0
    beyond = max(duration - rate.increment_first, 0)
    steps = -(-beyond // rate.increment_next)  # ceiling division on ints
    return rate.increment_first + steps * rate.increment_next


def price(rate: RateView, duration: int) -> Decimal:
    """The price of an **answered** call of ``duration`` seconds (counted from the answer).

    ``connection_fee + price_per_minute × billed_seconds / 60``, to 4 decimal
    places, half up. The connection fee pays for connecting, so an answered call
    of 0 seconds costs exactly the fee. An unanswered call has no price at all:
    do not call this for it: :func:`charge` says 0 for it.
    """
    billed = billed_seconds(rate, duration)
    with localcontext() as ctx:
        # Enough digits that only the final quantize rounds.
        ctx.prec = 50
        raw = rate.connection_fee + rate.price_per_minute * billed / 60
        return raw.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)


def charge(rate: RateView, duration: int, *, answered: bool) -> Decimal:
    """What a call costs, as its CDR says: :func:`price` of ``duration`` seconds when it
    was answered (0 s answered costs the connection fee), 0 when it never was."""
    return price(rate, duration) if answered else Decimal(0)


def max_duration(rate: RateView, balance: Decimal) -> int | None:
    """The longest duration in whole seconds whose :func:`price` is ≤ ``balance``.

    None when the rate is free per minute and the fee is covered (no cap); 0 when
    even the fee plus the first increment is not covered. Otherwise the end of
    the last fully paid increment: a balance paying 2.5 increments of 60/60
    gives 120 s, because second 121 would bill a third increment.
    """
    first = rate.increment_first
    if price(rate, first) > balance:
        return 0
    if rate.price_per_minute == 0:
        return None

    def affordable(steps: int) -> bool:
        return price(rate, first + steps * rate.increment_next) <= balance

    # Price only grows with the number of next increments: gallop, then bisect.
    paid, unpaid = 0, 1
    while affordable(unpaid):
        paid, unpaid = unpaid, unpaid * 2
    while unpaid - paid > 1:
        middle = (paid + unpaid) // 2
        if affordable(middle):
            paid = middle
        else:
            unpaid = middle
    return first + paid * rate.increment_next


@dataclass(frozen=True, slots=True)
class NotBilled:
    """Billing does not apply to this client: the call goes on unpriced."""

    why: str
    kind: Literal["not_billed"] = "not_billed"


@dataclass(frozen=True, slots=True)
class Billed:
    """The call may start; it is priced with ``rate`` of ``profile`` in ``currency``.

    ``max_duration`` is set for prepaid only: the seconds the balance pays after
    the answer (None = no cap).
    """

    profile: RatingProfileView
    rate: RateView
    currency: str
    max_duration: int | None = None
    kind: Literal["billed"] = "billed"

    @property
    def why(self) -> str:
        rate = self.rate
        text = (
            f"rated by plan {self.profile.plan.name!r}, prefix {rate.prefix}"
            f"{f' ({rate.destination})' if rate.destination else ''}: "
            f"{rate.price_per_minute} {self.currency}/min, "
            f"connection fee {rate.connection_fee} {self.currency}, increments {rate.increments}"
        )
        if self.max_duration is not None:
            text += f"; the balance pays at most {self.max_duration} s"
        return text


@dataclass(frozen=True, slots=True)
class Refused:
    """The call must be refused with ``reason``; ``why`` says what an operator should fix."""

    reason: Reason
    why: str
    kind: Literal["refused"] = "refused"


BillingCheck = NotBilled | Billed | Refused


def check(
    billing_method: str,
    has_billing_feature: bool,
    balance: Decimal,
    profiles: Iterable[RatingProfileView],
    e164: str,
    at_utc: datetime,
    timezone_name: str,
    client_currency: str,
) -> BillingCheck:
    """May an external call to ``e164`` starting at ``at_utc`` be billed, and for how long?

    In order:
      1. no ``billing`` feature, or method ``none`` → :class:`NotBilled`;
      2. the rate: no active profile, no rate for the number at the client's
         local time, a plan priced in another currency than the client's (prices
         are in the client's currency), or an unknown method or timezone
         → ``cannot_be_billed``;
      3. the balance, never for postpaid: prepaid / pseudoprepaid with a balance
         ≤ 0, or prepaid whose balance does not pay the fee and the first
         increment → ``insufficient_balance``.
    The rate is checked before the balance: a client that cannot be rated is a
    configuration fault, whatever its balance.
    """
    if not has_billing_feature:
        return NotBilled("the client does not have the billing feature")
    if billing_method == "none":
        return NotBilled("the client's billing method is none")
    if billing_method not in _METHODS:
        return Refused(Reason.CANNOT_BE_BILLED, f"unknown billing method {billing_method!r}")

    at_utc = _aware(at_utc, "at_utc")
    profiles = tuple(profiles)
    profile = active_profile(profiles, at_utc)
    if profile is None:
        return Refused(Reason.CANNOT_BE_BILLED, _no_profile(profiles, at_utc))
    try:
        local = at_utc.astimezone(ZoneInfo(timezone_name))
    except (ZoneInfoNotFoundError, ValueError):
        return Refused(
            Reason.CANNOT_BE_BILLED,
            f"unknown timezone {timezone_name!r}: the call's local time cannot be known",
        )
    plan = profile.plan
    rate = match_rate(plan, e164, local)
    if rate is None:
        return Refused(
            Reason.CANNOT_BE_BILLED,
            f"rating plan {plan.name!r} has no rate for {e164} on "
            f"{_DAYS[local.weekday()]} {local:%H:%M:%S} {timezone_name}",
        )
    if plan.currency != client_currency:
        return Refused(
            Reason.CANNOT_BE_BILLED,
            f"rating plan {plan.name!r} prices in {plan.currency} but the client pays in "
            f"{client_currency}: prices must be in the client's currency",
        )

    if billing_method == "postpaid":
        return Billed(profile, rate, plan.currency)
    if balance <= 0:
        return Refused(
            Reason.INSUFFICIENT_BALANCE,
            f"{billing_method} balance is {balance} {client_currency}: "
            "calls need a balance above zero",
        )
    if billing_method == "pseudoprepaid":
        return Billed(profile, rate, plan.currency)
    cap = max_duration(rate, balance)
    if cap == 0:
        return Refused(
            Reason.INSUFFICIENT_BALANCE,
            f"prepaid balance {balance} {client_currency} does not pay the first "
            f"{rate.increment_first} s to prefix {rate.prefix} "
            f"({price(rate, rate.increment_first)} {client_currency})",
        )
    return Billed(profile, rate, plan.currency, cap)


def _applies(rate: RateView, local_time: datetime) -> bool:
    day = local_time.weekday()
    if rate.time_from is None or rate.time_to is None:
        return _on(rate.weekdays, day)
    clock = local_time.time()
    start, end = rate.time_from.replace(tzinfo=None), rate.time_to.replace(tzinfo=None)
    if start < end:
        return start <= clock < end and _on(rate.weekdays, day)
    # Wraps midnight: [start, 24:00) on the start day, [00:00, end) on the next.
    if clock >= start:
        return _on(rate.weekdays, day)
    return clock < end and _on(rate.weekdays, (day - 1) % 7)


def _on(mask: int, weekday: int) -> bool:
    return bool(mask >> weekday & 1)


def _to_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _aware(moment: datetime, name: str) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    return moment


def _no_profile(profiles: tuple[RatingProfileView, ...], at_utc: datetime) -> str:
    at = f"{at_utc.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if not profiles:
        return "the client has no rating profile"
    first = min(p.activation_time for p in profiles)
    return (
        f"no rating profile is active at {at}: the first activates at "
        f"{first.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
