"""Outgoing-DDI selection cases (DESIGN §3.6), one row per rule a reader can check.

Numbers: the client's DDI is ``CLIENT``, the user's ``USER``; ``F1``…``F4`` are DDIs rules
force. Rule names say whose rule they are (``u-…`` the user's, ``c-…`` the client's).
Expected ``rule`` is the name of the rule evaluated, ``pattern`` the priority of the
pattern that matched (None: the default action, or no rule). ``INVALID`` as the expected
DDI is ``invalid_number``: a dialled ``NNN*`` prefix that no prefix pattern of the rule in
force defines is refused, never stripped and ignored.
"""

from __future__ import annotations

from typing import NamedTuple

from dialplan.ddi import DdiAction, DdiPatternView, DdiRuleView
from dialplan.views import MatchPattern

CLIENT = "+34910000100"
USER = "+34910000200"
F1 = "+34910000301"
F2 = "+34910000302"
F3 = "+34910000303"
F4 = "+34910000304"
INVALID = "invalid_number"
"""The expected "DDI" of a call refused with ``invalid_number`` (an undefined prefix)."""

MOBILE = "+34600123123"
VIP = "+34911222333"
UK = "+442079460123"

VIP_LIST = (MatchPattern("number", VIP),)
UK_LIST = (MatchPattern("regexp", r"^\+44"),)


def _prefix(
    priority: int, prefix: str, action: DdiAction, forced: str | None = None
) -> DdiPatternView:
    return DdiPatternView(
        priority=priority,
        kind="prefix",
        prefix=prefix,
        action=action,
        forced_ddi=forced,
    )


def _destination(
    priority: int,
    name: str,
    match: tuple[MatchPattern, ...],
    action: DdiAction,
    forced: str | None = None,
) -> DdiPatternView:
    return DdiPatternView(
        priority=priority,
        kind="destination",
        match_list=name,
        match=match,
        action=action,
        forced_ddi=forced,
    )


U_KEEP = DdiRuleView(id=1, name="u-keep", default_action="keep")
U_FORCE = DdiRuleView(id=2, name="u-force", default_action="force", forced_ddi=F1)
U_FORCE_EMPTY = DdiRuleView(id=3, name="u-force-empty", default_action="force")
C_KEEP = DdiRuleView(id=4, name="c-keep", default_action="keep")
C_FORCE = DdiRuleView(id=5, name="c-force", default_action="force", forced_ddi=F2)

U_SALES = DdiRuleView(
    id=6,
    name="u-sales",
    default_action="keep",
    patterns=(
        _prefix(1, "111", "force", F1),
        _destination(2, "vip", VIP_LIST, "force", F2),
        _prefix(3, "222", "keep"),
        _destination(4, "uk", UK_LIST, "force"),
    ),
)
"""The user's rule with every kind of pattern; default keep."""

C_PRESENTATION = DdiRuleView(
    id=7,
    name="c-presentation",
    default_action="force",
    forced_ddi=F3,
    patterns=(
        _destination(1, "vip", VIP_LIST, "force", F4),
        _prefix(2, "111", "keep"),
        _prefix(3, "333", "force"),
    ),
)
"""The client's rule: VIP numbers forced to F4, ``111*`` keeps, default forces F3."""

U_DESTINATION_FIRST = DdiRuleView(
    id=8,
    name="u-destination-first",
    default_action="keep",
    patterns=(
        _destination(1, "vip", VIP_LIST, "force", F2),
        _prefix(2, "111", "force", F1),
    ),
)
"""A destination pattern ranked before a prefix pattern."""

U_UNSORTED = DdiRuleView(
    id=9,
    name="u-unsorted",
    default_action="keep",
    patterns=(
        _prefix(5, "111", "force", F2),
        _prefix(1, "111", "force", F1),
        _prefix(0, "444", "force", F4),
        _destination(3, "uk-numbers", (MatchPattern("regexp", "^44"),), "force", F3),
    ),
)
"""Patterns given out of order: priority 1 must still beat 5 (0 is the lowest allowed)."""

U_BY_NUMBER = DdiRuleView(
    id=10,
    name="u-by-number",
    default_action="keep",
    patterns=(
        _destination(1, "vip-digits", (MatchPattern("number", "34911222333"),), "force", F4),
    ),
)
"""A match-list number written without '+' still matches the E.164 number."""


C_ONLY_111 = DdiRuleView(
    id=11,
    name="c-only-111",
    default_action="keep",
    patterns=(_prefix(1, "111", "force", F1),),
)
"""The client's rule of the issue: one prefix pattern, ``111*``."""


class DdiCase(NamedTuple):
    name: str
    user_ddi: str | None
    client_ddi: str | None
    user_rule: DdiRuleView | None
    client_rule: DdiRuleView | None
    e164: str
    prefix: str | None
    ddi: str | None
    """The DDI expected; None means ``no_outgoing_ddi``, ``INVALID`` ``invalid_number``."""
    rule: str | None
    """The name of the one rule evaluated."""
    pattern: int | None
    """The priority of the pattern that matched; None: default action or no rule."""


CASES: tuple[DdiCase, ...] = (
    # Base DDI, no rule at all.
    DdiCase("no rule: the user's DDI before the client's",
            USER, CLIENT, None, None, MOBILE, None, USER, None, None),
    DdiCase("no rule: the client's DDI when the user has none",
            None, CLIENT, None, None, MOBILE, None, CLIENT, None, None),
    DdiCase("no rule: an empty user DDI counts as none",
            "", CLIENT, None, None, MOBILE, None, CLIENT, None, None),
    DdiCase("no rule: the user's DDI when the client has none",
            USER, None, None, None, MOBILE, None, USER, None, None),
    DdiCase("no rule and no DDI anywhere: none (no_outgoing_ddi)",
            None, None, None, None, MOBILE, None, None, None, None),
    DdiCase("no rule: a dialled prefix is defined by nothing: invalid_number",
            USER, CLIENT, None, None, MOBILE, "111", INVALID, None, None),
    # Exactly one rule: the user's, else the client's.
    DdiCase("user's rule wins even when the client's would match (VIP)",
            USER, CLIENT, U_KEEP, C_PRESENTATION, VIP, None, USER, "u-keep", None),
    DdiCase("user's rule wins even when the client's default would force",
            USER, CLIENT, U_KEEP, C_FORCE, MOBILE, None, USER, "u-keep", None),
    DdiCase("both rules match: the user's pattern decides",
            USER, CLIENT, U_SALES, C_PRESENTATION, VIP, None, F2, "u-sales", 2),
    DdiCase("client's rule when the user has none: its pattern forces",
            USER, CLIENT, None, C_PRESENTATION, VIP, None, F4, "c-presentation", 1),
    DdiCase("client's rule keeps the user's DDI as base",
            USER, CLIENT, None, C_KEEP, MOBILE, None, USER, "c-keep", None),
    DdiCase("client's rule, call without a user: keeps the client's DDI",
            None, CLIENT, None, C_KEEP, MOBILE, None, CLIENT, "c-keep", None),
    DdiCase("client's rule default forces its DDI over the user's",
            USER, CLIENT, None, C_FORCE, MOBILE, None, F2, "c-force", None),
    # Default actions.
    DdiCase("user's default keep: the user's DDI",
            USER, CLIENT, U_KEEP, None, MOBILE, None, USER, "u-keep", None),
    DdiCase("user's default keep without a user DDI: the client's (base)",
            None, CLIENT, U_KEEP, None, MOBILE, None, CLIENT, "u-keep", None),
    DdiCase("default keep and no base DDI: none",
            None, None, U_KEEP, None, MOBILE, None, None, "u-keep", None),
    DdiCase("default force with a DDI: that DDI, not the user's",
            USER, CLIENT, U_FORCE, None, MOBILE, None, F1, "u-force", None),
    DdiCase("default force with a DDI and no base DDI: the forced one",
            None, None, U_FORCE, None, MOBILE, None, F1, "u-force", None),
    DdiCase("default force with an empty DDI: the client's, not the user's",
            USER, CLIENT, U_FORCE_EMPTY, None, MOBILE, None, CLIENT, "u-force-empty", None),
    DdiCase("default force empty and the client has no DDI: none",
            USER, None, U_FORCE_EMPTY, None, MOBILE, None, None, "u-force-empty", None),
    # Prefix patterns.
    DdiCase("prefix 111* forces its DDI",
            USER, CLIENT, U_SALES, None, MOBILE, "111", F1, "u-sales", 1),
    DdiCase("prefix as routing passes it (111*, with the star)",
            USER, CLIENT, U_SALES, None, MOBILE, "111*", F1, "u-sales", 1),
    DdiCase("prefix forces a DDI even with no base DDI",
            None, None, U_SALES, None, MOBILE, "111", F1, "u-sales", 1),
    DdiCase("prefix 222* keeps the user's DDI",
            USER, CLIENT, U_SALES, None, MOBILE, "222", USER, "u-sales", 3),
    DdiCase("prefix keep and no base DDI: none",
            None, None, U_SALES, None, MOBILE, "222", None, "u-sales", 3),
    DdiCase("prefix no pattern defines (999*), default keep: invalid_number, not stripped",
            USER, CLIENT, U_SALES, None, MOBILE, "999", INVALID, "u-sales", None),
    DdiCase("prefix no pattern defines (999*), default force: invalid_number, not forced",
            USER, CLIENT, None, C_PRESENTATION, MOBILE, "999", INVALID, "c-presentation", None),
    DdiCase("only 111* defined, 333* dialled: invalid_number, not the default DDI",
            USER, CLIENT, None, C_ONLY_111, MOBILE, "333", INVALID, "c-only-111", None),
    DdiCase("only 111* defined, 111* dialled: its pattern forces",
            USER, CLIENT, None, C_ONLY_111, MOBILE, "111", F1, "c-only-111", 1),
    DdiCase("prefix 11* is not 111* (equality, not a prefix of it): invalid_number",
            USER, CLIENT, U_SALES, None, MOBILE, "11", INVALID, "u-sales", None),
    DdiCase("prefix defined only by the client's rule while the user's is in force: invalid",
            USER, CLIENT, U_KEEP, C_PRESENTATION, MOBILE, "111", INVALID, "u-keep", None),
    DdiCase("an undefined prefix is invalid even when a destination pattern would match",
            USER, CLIENT, U_DESTINATION_FIRST, None, VIP, "222", INVALID,
            "u-destination-first", None),
    DdiCase("an undefined prefix is invalid even with no DDI anywhere (not no_outgoing_ddi)",
            None, None, U_SALES, None, MOBILE, "999", INVALID, "u-sales", None),
    DdiCase("no prefix dialled: prefix patterns never match",
            USER, CLIENT, None, C_PRESENTATION, MOBILE, None, F3, "c-presentation", None),
    DdiCase("client's prefix 111* keeps the user's DDI",
            USER, CLIENT, None, C_PRESENTATION, MOBILE, "111", USER, "c-presentation", 2),
    DdiCase("client's prefix forces an empty DDI: the client's",
            USER, CLIENT, None, C_PRESENTATION, MOBILE, "333", CLIENT, "c-presentation", 3),
    # Destination patterns.
    DdiCase("destination by number (VIP) forces its DDI",
            USER, CLIENT, U_SALES, None, VIP, None, F2, "u-sales", 2),
    DdiCase("destination by number written without '+'",
            USER, CLIENT, U_BY_NUMBER, None, VIP, None, F4, "u-by-number", 1),
    DdiCase("destination by regexp (UK) forces an empty DDI: the client's",
            USER, CLIENT, U_SALES, None, UK, None, CLIENT, "u-sales", 4),
    DdiCase("destination forces empty and the client has no DDI: none",
            USER, None, U_SALES, None, UK, None, None, "u-sales", 4),
    DdiCase("destination by regexp without '+' (^44)",
            USER, CLIENT, U_UNSORTED, None, UK, None, F3, "u-unsorted", 3),
    DdiCase("destination no entry matches: default keep",
            USER, CLIENT, U_SALES, None, MOBILE, None, USER, "u-sales", None),
    # Priorities: lowest number first, whatever the kind; first match wins.
    DdiCase("priority 1 prefix beats priority 2 destination (VIP dialled with 111*)",
            USER, CLIENT, U_SALES, None, VIP, "111", F1, "u-sales", 1),
    DdiCase("priority 1 destination beats priority 2 prefix, though 111* was dialled",
            USER, CLIENT, U_DESTINATION_FIRST, None, VIP, "111", F2, "u-destination-first", 1),
    DdiCase("the prefix pattern after a destination still matches other numbers",
            USER, CLIENT, U_DESTINATION_FIRST, None, MOBILE, "111", F1, "u-destination-first", 2),
    DdiCase("patterns given out of order: priority 1 before 5",
            USER, CLIENT, U_UNSORTED, None, MOBILE, "111", F1, "u-unsorted", 1),
    DdiCase("priority 0 is the first of all",
            USER, CLIENT, U_UNSORTED, None, UK, "444", F4, "u-unsorted", 0),
)  # fmt: skip
