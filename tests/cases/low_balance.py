"""Low-balance e-mails, case by case (issue 12; DESIGN §3.1 client settings, §3.10 the
``low_balance`` template type).

A (pseudo)prepaid client with a ``low_balance_threshold`` gets one ``low_balance`` e-mail
each time a written CDR's debit takes its balance from the threshold or above to below it
(once per crossing, as the daily limit's e-mail, §3.5). A balance already below the
threshold sends nothing more, however low it goes; a top-up to the threshold or above arms
the next crossing. A balance exactly at the threshold is not below it.

Each case is a client (billing method, balance, threshold) and a sequence of events:
``("debit", "3", )`` writes one CDR priced 3 (one batch), ``("batch", "1", "1")`` writes
several CDRs in one batch, ``("top_up", "10")`` sets the balance (as provisioning does).
``mails`` lists, after each event, the call ids whose CDR crossed (the e-mail names it).
Call ids are ``c1``, ``c2``… in order over the whole case.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

Event = tuple[str, ...]


@dataclass(frozen=True)
class LowBalanceCase:
    name: str
    events: tuple[Event, ...]
    mails: tuple[tuple[str, ...], ...]
    """Per event: the call ids whose crossing is announced (each one e-mail)."""
    balance: Decimal = Decimal(10)
    threshold: Decimal | None = Decimal(5)
    method: str = "prepaid"


CASES: list[LowBalanceCase] = [
    LowBalanceCase(
        "a debit staying above the threshold sends nothing",
        (("debit", "3"),),
        ((),),
    ),
    LowBalanceCase(
        "the debit that goes below sends one; the next below sends none",
        (("debit", "3"), ("debit", "3"), ("debit", "1")),
        ((), ("c2",), ()),
    ),
    LowBalanceCase(
        "a top-up above and a new crossing send a new one",
        (("debit", "6"), ("top_up", "10"), ("debit", "6")),
        (("c1",), (), ("c2",)),
    ),
    LowBalanceCase(
        "a top-up that stays below does not arm it again",
        (("debit", "6"), ("top_up", "4.5"), ("debit", "1")),
        (("c1",), (), ()),
    ),
    LowBalanceCase(
        "exactly at the threshold is not below; the next cent is",
        (("debit", "5"), ("debit", "0.01")),
        ((), ("c2",)),
    ),
    LowBalanceCase(
        "several CDRs in one batch: one e-mail, naming the one that crossed",
        (("batch", "2", "4", "1"),),
        (("c2",),),
    ),
    LowBalanceCase(
        "a client already below when provisioned hears nothing until topped up",
        (("debit", "1"), ("top_up", "8"), ("debit", "4")),
        ((), (), ("c2",)),
        balance=Decimal(3),
    ),
    LowBalanceCase(
        "a free call (price 0) debits nothing and sends nothing",
        (("debit", "0"),),
        ((),),
        balance=Decimal(5),
    ),
    LowBalanceCase(
        "pseudoprepaid clients are told too",
        (("debit", "6"),),
        (("c1",),),
        method="pseudoprepaid",
    ),
    LowBalanceCase(
        "no threshold: never",
        (("debit", "9"),),
        ((),),
        threshold=None,
    ),
    LowBalanceCase(
        "postpaid: no balance is debited, never",
        (("debit", "9"),),
        ((),),
        method="postpaid",
    ),
    LowBalanceCase(
        "a threshold of 0: told when the balance goes negative",
        (("debit", "10"), ("debit", "0.5")),
        ((), ("c2",)),
        threshold=Decimal(0),
    ),
]
