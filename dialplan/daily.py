"""Max daily usage (DESIGN §3.5), the pure part: which local day an instant belongs to,
whether today's spend still allows external calls, and when an addition crosses the limit.

A client's day is its **own** calendar day: midnight in its time zone resets the spend,
whatever the UTC date is, and a day is 23 or 25 hours long when the clocks change.
Amounts are ``Decimal`` money with four places, never floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialplan.reasons import Reason

MONEY_QUANTUM = Decimal("0.0001")


def local_day(at_utc: datetime, timezone: str) -> date:
    """The calendar day in ``timezone`` (an IANA name) of the instant ``at_utc``.

    ``at_utc`` must be aware (any offset is converted; UTC is the usual one);
    ``ValueError`` for a naive datetime or an unknown zone.
    """
    if at_utc.utcoffset() is None:
        raise ValueError(f"naive datetime {at_utc.isoformat()} is not an instant")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {timezone!r}") from exc
    return at_utc.astimezone(zone).date()


def spend_day(at_utc: datetime, timezone: str) -> date:
    """The day a spend at ``at_utc`` counts on: the client's local day, or the UTC day
    when its zone is unknown (a broken zone must not cost a call or its CDR)."""
    try:
        return local_day(at_utc, timezone)
    except ValueError:
        return at_utc.astimezone(UTC).date()


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyVerdict:
    """Whether a new external outbound call fits today's usage.

    ``reason`` is ``daily_limit_reached`` exactly when the call is refused; ``why`` is
    one line for ``callcontrol explain``.
    """

    allowed: bool
    limit: Decimal | None
    spent: Decimal
    why: str

    @property
    def reason(self) -> Reason | None:
        return None if self.allowed else Reason.DAILY_LIMIT_REACHED


def judge(
    *,
    limit: Decimal | None,
    spent: Decimal,
    currency: str | None = None,
    timezone: str | None = None,
) -> DailyVerdict:
    """Refuse when today's ``spent`` is at or over ``limit``; ``None`` is no limit.

    A limit of 0 refuses every external call. ``currency`` and ``timezone`` only word
    ``why``: "spent 9.9900 of 10.0000 EUR today (Europe/Madrid)".
    """
    unit = f" {currency}" if currency else ""
    where = f" ({timezone})" if timezone else ""
    shown = _money(spent)
    if limit is None:
        why = f"spent {shown}{unit} today{where}, no daily limit"
        return DailyVerdict(allowed=True, limit=None, spent=spent, why=why)
    allowed = spent < limit
    why = f"spent {shown} of {_money(limit)}{unit} today{where}"
    if not allowed:
        why += ": daily limit reached"
    return DailyVerdict(allowed=allowed, limit=limit, spent=spent, why=why)


def crossed(before: Decimal, after: Decimal, limit: Decimal | None) -> bool:
    """True when an addition takes the day's spend from under ``limit`` to at or over it
    (``before < limit <= after``); never without a limit."""
    return limit is not None and before < limit <= after


def _money(amount: Decimal) -> str:
    return str(amount.quantize(MONEY_QUANTUM))
