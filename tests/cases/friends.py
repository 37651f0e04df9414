"""The ``friends`` gate on inter-VPBX routes (DESIGN §3.12), one row per rule a reader can check.

The world: acme-madrid (alice, extension 101; bob, 102) and acme-london (carol, 201) are
clients of corporation acme; globex (dave, 301) is alone in corporation globex. Every
client is in Spain or the UK, so ``201`` or ``301`` is no public number either. Whether
acme-madrid and acme-london have the ``friends`` feature is the row's ``caller`` and
``callee`` (globex has it in every row). A route kind is what the call becomes; a reason,
why it is refused (``invalid_number``: the number is no extension the caller may reach
and no public number, DESIGN §3.2).
"""

from __future__ import annotations

from typing import NamedTuple

from dialplan.reasons import Reason

INVALID = Reason.INVALID_NUMBER


class FriendsCase(NamedTuple):
    name: str
    caller: bool
    """acme-madrid has ``friends``."""
    callee: bool
    """acme-london has ``friends``."""
    endpoint: str
    """Who calls: ``t-alice`` (acme-madrid), ``t-carol`` (acme-london), ``t-dave`` (globex)."""
    dialled: str
    route: str | None
    """``internal`` or ``inter_vpbx``; None when refused."""
    reason: Reason | None
    """The refusal; None when the call rings."""


CASES: tuple[FriendsCase, ...] = (
    FriendsCase("both have friends: alice rings carol at acme-london",
                True, True, "t-alice", "201", "inter_vpbx", None),
    FriendsCase("both have friends: carol rings alice back (the gate is symmetric)",
                True, True, "t-carol", "101", "inter_vpbx", None),
    FriendsCase("the caller's client lacks friends: carol's extension is no number",
                False, True, "t-alice", "201", None, INVALID),
    FriendsCase("the callee's client lacks friends: carol's extension is no number",
                True, False, "t-alice", "201", None, INVALID),
    FriendsCase("neither has friends: no inter-VPBX route",
                False, False, "t-alice", "201", None, INVALID),
    FriendsCase("the callee's client lacks friends, it calls back: refused too",
                True, False, "t-carol", "101", None, INVALID),
    FriendsCase("without friends a client still reaches its own extensions",
                False, False, "t-alice", "102", "internal", None),
    FriendsCase("another corporation stays out of reach, friends or not",
                True, True, "t-alice", "301", None, INVALID),
    FriendsCase("friends never reaches across corporations from the other side",
                True, True, "t-dave", "101", None, INVALID),
)  # fmt: skip
