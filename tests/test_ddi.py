"""Outgoing-DDI selection on plain data (DESIGN §3.6): the case table, ``why``, the views."""

from __future__ import annotations

import pytest

from dialplan.ddi import (
    DdiPatternView,
    DdiRuleView,
    ForwardedPresentation,
    forwarded_presentation,
    select_ddi,
)
from dialplan.views import MatchPattern
from tests.cases.ddi import (
    C_FORCE,
    C_PRESENTATION,
    CASES,
    CLIENT,
    F1,
    F2,
    INVALID,
    MOBILE,
    U_FORCE_EMPTY,
    U_KEEP,
    U_SALES,
    UK,
    USER,
    VIP,
    DdiCase,
)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_selection(case: DdiCase) -> None:
    choice = select_ddi(
        user_ddi=case.user_ddi,
        client_ddi=case.client_ddi,
        user_rule=case.user_rule,
        client_rule=case.client_rule,
        e164=case.e164,
        dialled_prefix=case.prefix,
    )
    used = choice.pattern.priority if choice.pattern is not None else None
    ddi = INVALID if choice.invalid_prefix is not None else choice.ddi
    assert (ddi, choice.rule, used) == (case.ddi, case.rule, case.pattern)


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


def test_user_rule_and_base_are_labelled_as_the_users() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=U_SALES,
        client_rule=C_PRESENTATION,
        e164=VIP,
        dialled_prefix=None,
    )
    assert (choice.base, choice.base_from, choice.rule_of) == (USER, "user", "user")
    assert choice.action == "force"
    assert choice.matched == MatchPattern("number", VIP)


def test_client_rule_and_base_are_labelled_as_the_clients() -> None:
    choice = select_ddi(
        user_ddi=None,
        client_ddi=CLIENT,
        user_rule=None,
        client_rule=C_FORCE,
        e164=MOBILE,
        dialled_prefix=None,
    )
    assert (choice.base, choice.base_from, choice.rule_of) == (CLIENT, "client", "client")
    assert (choice.pattern, choice.matched, choice.action) == (None, None, "force")


def test_no_rule_has_no_action() -> None:
    choice = select_ddi(
        user_ddi=None,
        client_ddi=None,
        user_rule=None,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix=None,
    )
    assert (choice.ddi, choice.base_from, choice.rule_of, choice.action) == (None, None, None, None)


def test_why_names_rule_owner_pattern_prefix_and_forced_ddi() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=U_SALES,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix="111*",
    )
    assert choice.why == f"rule 'u-sales' (user's): pattern 1 prefix 111* forces {F1}"


def test_why_names_the_match_list_and_the_entry_that_matched() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=None,
        client_rule=C_PRESENTATION,
        e164=VIP,
        dialled_prefix=None,
    )
    assert "rule 'c-presentation' (client's)" in choice.why
    assert f"pattern 1 destination 'vip' (number {VIP})" in choice.why


def test_why_of_a_keep_names_whose_ddi_is_kept() -> None:
    choice = select_ddi(
        user_ddi=None,
        client_ddi=CLIENT,
        user_rule=U_SALES,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix="222",
    )
    assert (
        choice.why
        == f"rule 'u-sales' (user's): pattern 3 prefix 222* keeps the client's DDI {CLIENT}"
    )


def test_why_of_a_default_says_no_pattern_matched() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=U_SALES,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix=None,
    )
    assert "rule 'u-sales' (user's): no pattern matches" in choice.why
    assert f"default keeps the user's DDI {USER}" in choice.why


def test_why_of_an_undefined_prefix_names_it_and_the_rule_in_force() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=U_SALES,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix="999*",
    )
    assert (choice.ddi, choice.invalid_prefix, choice.action) == (None, "999", None)
    assert choice.why == (
        "outgoing-DDI prefix 999* dialled, but rule 'u-sales' (user's) has no such prefix pattern"
    )


def test_why_of_an_empty_forced_ddi_names_the_client_fallback() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=U_FORCE_EMPTY,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix=None,
    )
    assert "empty DDI" in choice.why
    assert f"the client's DDI {CLIENT}" in choice.why


@pytest.mark.parametrize(
    ("user_rule", "user_ddi", "e164"),
    [
        (None, None, MOBILE),
        (U_KEEP, None, MOBILE),
        (U_FORCE_EMPTY, USER, MOBILE),
        (U_SALES, USER, UK),
    ],
    ids=["no rule", "keep", "default force empty", "pattern force empty"],
)
def test_why_says_no_ddi_when_there_is_none(
    user_rule: DdiRuleView | None, user_ddi: str | None, e164: str
) -> None:
    choice = select_ddi(
        user_ddi=user_ddi,
        client_ddi=None,
        user_rule=user_rule,
        client_rule=None,
        e164=e164,
        dialled_prefix=None,
    )
    assert choice.ddi is None
    assert choice.why.endswith("→ no DDI")


def test_why_without_a_rule_names_the_base() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=None,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix=None,
    )
    assert choice.why == f"no outgoing-DDI rule: the user's DDI {USER}"


def test_why_of_a_prefix_without_a_rule_says_nobody_has_one() -> None:
    choice = select_ddi(
        user_ddi=USER,
        client_ddi=CLIENT,
        user_rule=None,
        client_rule=None,
        e164=MOBILE,
        dialled_prefix="111*",
    )
    assert (choice.invalid_prefix, choice.rule, choice.rule_of) == ("111", None, None)
    assert choice.why == (
        "outgoing-DDI prefix 111* dialled, but neither the user nor the client has an "
        "outgoing-DDI rule"
    )


def test_every_why_is_one_line() -> None:
    for case in CASES:
        choice = select_ddi(
            user_ddi=case.user_ddi,
            client_ddi=case.client_ddi,
            user_rule=case.user_rule,
            client_rule=case.client_rule,
            e164=case.e164,
            dialled_prefix=case.prefix,
        )
        assert "\n" not in choice.why, case.name
        if case.rule is not None:
            assert f"'{case.rule}'" in choice.why, case.name


def test_rule_keeps_its_patterns_in_priority_order() -> None:
    late = DdiPatternView(priority=7, kind="prefix", prefix="7", action="keep")
    early = DdiPatternView(priority=2, kind="prefix", prefix="2", action="keep")
    rule = DdiRuleView(id=1, name="r", patterns=(late, early))
    assert [pattern.priority for pattern in rule.patterns] == [2, 7]


def test_prefix_pattern_drops_the_stored_star() -> None:
    pattern = DdiPatternView(priority=1, kind="prefix", prefix="111*", action="keep")
    assert pattern.prefix == "111"


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "suffix", "prefix": "1", "action": "keep"},
        {"kind": "prefix", "prefix": "1", "action": "drop"},
        {"kind": "prefix", "prefix": "1234", "action": "keep"},
        {"kind": "prefix", "prefix": "1a", "action": "keep"},
        {"kind": "prefix", "prefix": None, "action": "keep"},
        {"kind": "prefix", "prefix": "1", "match_list": "vip", "action": "keep"},
        {"kind": "destination", "prefix": "1", "match_list": "vip", "action": "keep"},
    ],
    ids=[
        "unknown kind",
        "unknown action",
        "four digits",
        "not digits",
        "prefix missing",
        "prefix with a list",
        "destination with a prefix",
    ],
)
def test_inconsistent_pattern_is_refused(fields: dict[str, str | None]) -> None:
    with pytest.raises(ValueError, match="pattern 1"):
        DdiPatternView(priority=1, **fields)  # type: ignore[arg-type]


def test_unknown_default_action_is_refused() -> None:
    with pytest.raises(ValueError, match="rule 'r'"):
        DdiRuleView(id=1, name="r", default_action="drop")  # type: ignore[arg-type]


def test_forwarded_call_presents_the_original_caller_with_a_diversion() -> None:
    presented = forwarded_presentation("+34600999888", F2)
    assert presented == ForwardedPresentation(caller_id="+34600999888", diversion=F2)


@pytest.mark.parametrize("original", [None, ""], ids=["unknown", "empty"])
def test_forwarded_anonymous_caller_stays_anonymous(original: str | None) -> None:
    presented = forwarded_presentation(original, CLIENT)
    assert (presented.caller_id, presented.diversion) == (None, CLIENT)
