"""Emergency numbers against the guards of DESIGN §3.4, §3.5 and §3.7, case by case.

DESIGN §3.5: "Emergency numbers (a platform list per country) bypass max calls, daily
usage, billing and balance; they are still routed and get a CDR."

The world (tests/world.py): bob calls from terminal ``t-bob`` of client acme-madrid
(country ES, outgoing DDI +34910000002), whose calls leave through carrier ``trunk-es``.
The platform's list, as in the demo dataset:

=======  ==================
country  numbers
=======  ==================
ES       112, 091
GB       112, 999
US       911
FR       112, 15, 17, 18
=======  ==================

Each guard condition is given twice, for a normal number (``600123123``, a Spanish
mobile) and for an emergency number (``112``): the normal call is refused with the
guard's reason, the emergency one is dialled as dialled, unpriced and uncapped.

Billing, when a case turns it on: the ``billing`` feature, a rating profile pricing
``34`` at 0.02 EUR/min and ``346`` at 0.01 EUR fee + 0.06 EUR/min (30/6).

A few rows say what the list does not change (DESIGN names only the four guards): the
call ACL and the source filter still judge the call, and a number of another country's
list is an ordinary number (here: not a number of Spain at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from dialplan.reasons import Reason

EMERGENCY_NUMBERS: tuple[tuple[str, str], ...] = (
    ("ES", "112"),
    ("ES", "091"),
    ("GB", "112"),
    ("GB", "999"),
    ("US", "911"),
    ("FR", "112"),
    ("FR", "15"),
    ("FR", "17"),
    ("FR", "18"),
)
NORMAL = "600123123"
"""A Spanish mobile, dialled nationally: +34600123123."""


@dataclass(frozen=True)
class EmergencyCase:
    """One call by bob (acme-madrid) through the pipeline on the in-memory world.

    ``expected`` is the refusal's reason, or None for a Dial through ``trunk-es`` of
    ``number`` (the dialled emergency number, or the E.164 of a normal one)."""

    name: str
    # inputs
    dialled: str
    max_calls: int = 0
    live_calls: int = 0
    max_daily_usage: Decimal | None = None
    spent_today: Decimal = Decimal(0)
    billing_method: str = "none"
    rated: bool = True
    """With billing on: whether the rating profile exists (False: cannot be billed)."""
    balance: Decimal = Decimal(0)
    acl: int | None = None
    """bob's call ACL: 2 = only-spain (allows ``^34``, denies the rest)."""
    filter_by_ip: bool = False
    """On with no authorized source: every call from the client's terminals is refused."""
    extension_112: bool = False
    """acme-madrid has an extension 112 (ringing alice)."""
    # expected
    expected: Reason | None = None
    number: str | None = None
    billed: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)


def _pair(
    name: str, normal: Reason | None, *, billed_normal: bool = False, **inputs: object
) -> list[EmergencyCase]:
    """The same guard condition for a normal number and for 112."""
    return [
        EmergencyCase(
            f"{name}: normal number",
            NORMAL,
            expected=normal,
            number="+34600123123" if normal is None else None,
            billed=billed_normal,
            **inputs,  # type: ignore[arg-type]
        ),
        EmergencyCase(f"{name}: 112", "112", expected=None, number="112", **inputs),  # type: ignore[arg-type]
    ]


CASES: list[EmergencyCase] = [
    *_pair("no guard in the way", None),
    *_pair("postpaid, rated", None, billed_normal=True, billing_method="postpaid"),
    # Max calls (§3.4): every slot taken by other calls.
    *_pair("max calls 2, 2 live", Reason.MAX_CALLS_REACHED, max_calls=2, live_calls=2),
    *_pair("max calls 1, 5 live", Reason.MAX_CALLS_REACHED, max_calls=1, live_calls=5),
    # Max daily usage (§3.5): today's spend at or over the limit.
    *_pair(
        "daily limit 10, 10 spent",
        Reason.DAILY_LIMIT_REACHED,
        max_daily_usage=Decimal(10),
        spent_today=Decimal(10),
    ),
    *_pair(
        "daily limit 0",
        Reason.DAILY_LIMIT_REACHED,
        max_daily_usage=Decimal(0),
    ),
    # What is left of today's limit does not pay a prepaid call's first increment.
    *_pair(
        "prepaid, 0.005 left of the day",
        Reason.DAILY_LIMIT_REACHED,
        billing_method="prepaid",
        balance=Decimal(20),
        max_daily_usage=Decimal(10),
        spent_today=Decimal("9.995"),
    ),
    # Billing (§3.7): billing on and nothing rates the destination.
    *_pair(
        "postpaid, no rating profile",
        Reason.CANNOT_BE_BILLED,
        billing_method="postpaid",
        rated=False,
    ),
    *_pair(
        "prepaid, no rating profile", Reason.CANNOT_BE_BILLED, billing_method="prepaid", rated=False
    ),
    # Balance (§3.7): prepaid / pseudoprepaid at or below zero, or not paying the first step.
    *_pair("prepaid, balance 0", Reason.INSUFFICIENT_BALANCE, billing_method="prepaid"),
    *_pair(
        "pseudoprepaid, balance -5",
        Reason.INSUFFICIENT_BALANCE,
        billing_method="pseudoprepaid",
        balance=Decimal(-5),
    ),
    *_pair(
        "prepaid, balance short of the first increment",
        Reason.INSUFFICIENT_BALANCE,
        billing_method="prepaid",
        balance=Decimal("0.02"),
    ),
    # Every guard at once: the first in the pipeline's order names the refusal.
    *_pair(
        "every guard at once",
        Reason.MAX_CALLS_REACHED,
        max_calls=1,
        live_calls=1,
        max_daily_usage=Decimal(1),
        spent_today=Decimal(1),
        billing_method="prepaid",
        balance=Decimal(-1),
    ),
    # The other emergency number of Spain; a prepaid client out of balance.
    EmergencyCase("091 of ES, prepaid at 0", "091", billing_method="prepaid", number="091"),
    # An extension of the same digits does not hide the emergency number.
    EmergencyCase("112 with an extension 112", "112", extension_112=True, number="112"),
    # Only the client's own country's list counts: 999 is the UK's, not a Spanish number.
    EmergencyCase("999 from Spain", "999", expected=Reason.INVALID_NUMBER),
    EmergencyCase("911 from Spain", "911", expected=Reason.INVALID_NUMBER),
    # What the list does not bypass (DESIGN names four guards, not these).
    EmergencyCase("112, ACL only-spain", "112", acl=2, expected=Reason.NOT_ALLOWED),
    EmergencyCase(
        "112, source filter on, no source", "112", filter_by_ip=True, expected=Reason.IP_NOT_ALLOWED
    ),
]
