"""Outgoing DDI: which number an external call presents (DESIGN §3.6). Pure: values in, values out.

The rules, in the order :func:`select_ddi` applies them:

1. **Base DDI** = the user's outgoing DDI, else the client's (an empty string counts as none).
2. **Exactly one rule** is evaluated: the user's rule, else the client's. When the user has a
   rule the client's is never looked at, even if one of its patterns would match.
3. The rule's **patterns by priority** (lowest number first), **first match wins**, whatever
   its kind: a ``prefix`` pattern matches when the dialled ``NNN*`` prefix equals its digits;
   a ``destination`` pattern when the E.164 number matches its match list
   (:func:`dialplan.matching.matches`). So a destination pattern of priority 1 beats a
   prefix pattern of priority 2 even when that prefix was dialled.
4. **A dialled prefix must be defined.** A ``NNN*`` prefix that no prefix pattern of the
   rule in force names (or dialled when neither user nor client has a rule) is never
   silently stripped: ``invalid_prefix`` is set, ``ddi`` is None, and the caller refuses
   the call with ``invalid_number`` (routing does so before any other check, through
   :func:`undefined_prefix`).
5. **No pattern matched → the rule's default action.**
6. **Actions**: ``keep`` → the base DDI; ``force`` with a DDI → that DDI (even when there is
   no base DDI); ``force`` with no DDI → the **client's** outgoing DDI (not the user's).
7. **No rule** → the base DDI.
8. Nothing at the end → ``ddi`` None: the caller refuses the call with ``no_outgoing_ddi``.

A forwarded call (an extension that forwards to a public number) presents the original
caller and names the diverting client's DDI in a Diversion: :func:`forwarded_presentation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dialplan.matching import matches
from dialplan.views import MatchPattern

DdiAction = Literal["keep", "force"]
DdiPatternKind = Literal["prefix", "destination"]
Side = Literal["user", "client"]

_ACTIONS: tuple[str, ...] = ("keep", "force")
_KINDS: tuple[str, ...] = ("prefix", "destination")


def _prefix_digits(prefix: str | None) -> str | None:
    """``111*`` or ``111`` → ``111``; None or empty → None."""
    if not prefix:
        return None
    return prefix.removesuffix("*") or None


@dataclass(frozen=True, slots=True, kw_only=True)
class DdiPatternView:
    """One pattern of an outgoing-DDI rule (mirrors ``OutgoingDdiRulePattern``).

    A ``prefix`` pattern carries ``prefix``: 1–3 digits; a trailing ``*`` (as stored and
    provisioned, ``111*``) is dropped on construction. A ``destination`` pattern carries the
    name of its match list and that list's patterns in ``match``; an empty list matches
    nothing. ``forced_ddi`` only counts with ``action='force'``; None there means "the
    client's outgoing DDI". Inconsistent values raise ValueError when the view is built.
    """

    priority: int
    kind: DdiPatternKind
    prefix: str | None = None
    match_list: str | None = None
    match: tuple[MatchPattern, ...] = ()
    action: DdiAction
    forced_ddi: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"pattern {self.priority}: unknown kind {self.kind!r}")
        if self.action not in _ACTIONS:
            raise ValueError(f"pattern {self.priority}: unknown action {self.action!r}")
        if self.kind == "prefix":
            digits = _prefix_digits(self.prefix)
            if digits is None or not (digits.isdigit() and len(digits) <= 3):
                raise ValueError(
                    f"pattern {self.priority}: prefix {self.prefix!r} is not 1-3 digits"
                )
            if self.match_list is not None or self.match:
                raise ValueError(f"pattern {self.priority}: a prefix pattern has no match list")
            # The stored form keeps the '*'; the view holds digits only so equality is simple.
            object.__setattr__(self, "prefix", digits)
        elif self.prefix is not None:
            raise ValueError(f"pattern {self.priority}: a destination pattern has no prefix")

    def hit(self, e164: str, dialled_prefix: str | None) -> tuple[bool, MatchPattern | None]:
        """Whether this pattern matches the call, and the match-list entry that did (if any).

        ``dialled_prefix`` is digits only; a prefix pattern never matches when it is None.
        """
        if self.kind == "prefix":
            return dialled_prefix is not None and dialled_prefix == self.prefix, None
        entry = matches(self.match, e164)
        return entry is not None, entry

    def describe(self) -> str:
        """``pattern 2 prefix 111*`` or ``pattern 1 destination 'vip'``."""
        if self.kind == "prefix":
            return f"pattern {self.priority} prefix {self.prefix}*"
        return f"pattern {self.priority} destination '{self.match_list}'"


@dataclass(frozen=True, slots=True, kw_only=True)
class DdiRuleView:
    """An outgoing-DDI rule (mirrors ``OutgoingDdiRule``): patterns, then a default action.

    ``patterns`` are kept sorted by priority (lowest number first; the sort is stable, so
    equal priorities keep their given order). ``forced_ddi`` None with ``default_action
    'force'`` means "the client's outgoing DDI".
    """

    id: int
    name: str
    default_action: DdiAction = "keep"
    forced_ddi: str | None = None
    patterns: tuple[DdiPatternView, ...] = ()

    def __post_init__(self) -> None:
        if self.default_action not in _ACTIONS:
            raise ValueError(f"rule {self.name!r}: unknown action {self.default_action!r}")
        ordered = tuple(sorted(self.patterns, key=lambda pattern: pattern.priority))
        object.__setattr__(self, "patterns", ordered)


@dataclass(frozen=True, slots=True, kw_only=True)
class DdiChoice:
    """What :func:`select_ddi` decided, and everything ``callcontrol explain`` shows about it.

    ``ddi`` is the number to present, None when there is none (``no_outgoing_ddi``, or
    ``invalid_number`` when ``invalid_prefix`` names a dialled prefix no pattern defines).
    ``rule``/``rule_of`` name the one rule evaluated (None when neither user nor client has
    one); ``pattern`` is the pattern that matched (None: the default action applied, or no
    rule), ``matched`` the entry of its match list for a destination pattern; ``action`` is
    the action applied (None without a rule). ``why`` is one line for a human.
    """

    ddi: str | None
    base: str | None
    base_from: Side | None
    rule: str | None = None
    rule_of: Side | None = None
    pattern: DdiPatternView | None = None
    matched: MatchPattern | None = None
    action: DdiAction | None = None
    invalid_prefix: str | None = None
    why: str


def select_ddi(
    *,
    user_ddi: str | None,
    client_ddi: str | None,
    user_rule: DdiRuleView | None,
    client_rule: DdiRuleView | None,
    e164: str,
    dialled_prefix: str | None,
) -> DdiChoice:
    """The DDI an external call to ``e164`` presents, by the rules in this module's docstring.

    ``dialled_prefix`` is the outgoing-DDI prefix routing stripped (``External.ddi_prefix``),
    with or without its ``*``; None when none was dialled. ``user_ddi``/``user_rule`` are
    None for a call placed without a user.
    """
    base, base_from = _base(user_ddi, client_ddi)
    prefix = _prefix_digits(dialled_prefix)
    rule, rule_of = rule_in_force(user_rule, client_rule)
    stray = undefined_prefix(rule, prefix)
    if stray is not None:
        return DdiChoice(
            ddi=None,
            base=base,
            base_from=base_from,
            rule=rule.name if rule is not None else None,
            rule_of=rule_of if rule is not None else None,
            invalid_prefix=stray,
            why=stray_prefix_why(rule, rule_of, stray),
        )
    if rule is None:
        why = f"no outgoing-DDI rule: {_keep(base, base_from)}"
        return DdiChoice(ddi=base, base=base, base_from=base_from, why=why)

    for pattern in rule.patterns:
        hit, matched = pattern.hit(e164, prefix)
        if not hit:
            continue
        ddi, outcome = _apply(pattern.action, pattern.forced_ddi, base, base_from, client_ddi)
        seen = f" ({matched.kind} {matched.value})" if matched is not None else ""
        why = f"rule '{rule.name}' ({rule_of}'s): {pattern.describe()}{seen} {outcome}"
        return DdiChoice(
            ddi=ddi,
            base=base,
            base_from=base_from,
            rule=rule.name,
            rule_of=rule_of,
            pattern=pattern,
            matched=matched,
            action=pattern.action,
            why=why,
        )

    ddi, outcome = _apply(rule.default_action, rule.forced_ddi, base, base_from, client_ddi)
    why = f"rule '{rule.name}' ({rule_of}'s): no pattern matches {e164}, default {outcome}"
    return DdiChoice(
        ddi=ddi,
        base=base,
        base_from=base_from,
        rule=rule.name,
        rule_of=rule_of,
        action=rule.default_action,
        why=why,
    )


def rule_in_force(
    user_rule: DdiRuleView | None, client_rule: DdiRuleView | None
) -> tuple[DdiRuleView | None, Side]:
    """The one rule evaluated: the user's, else the client's (None: neither has one)."""
    return (user_rule, "user") if user_rule is not None else (client_rule, "client")


def undefined_prefix(rule: DdiRuleView | None, dialled_prefix: str | None) -> str | None:
    """The digits of ``dialled_prefix`` (with or without its ``*``) when no prefix pattern of
    ``rule``, the rule in force, defines them (always, when there is no rule); None when no
    prefix was dialled or a pattern defines it. Such a call is ``invalid_number``."""
    prefix = _prefix_digits(dialled_prefix)
    if prefix is None:
        return None
    defined = rule is not None and any(
        pattern.kind == "prefix" and pattern.prefix == prefix for pattern in rule.patterns
    )
    return None if defined else prefix


def stray_prefix_why(rule: DdiRuleView | None, rule_of: Side, prefix: str) -> str:
    """One line saying that ``prefix`` is defined by no pattern of the rule in force."""
    dialled = f"outgoing-DDI prefix {_prefix_digits(prefix)}* dialled"
    if rule is None:
        return f"{dialled}, but neither the user nor the client has an outgoing-DDI rule"
    return f"{dialled}, but rule '{rule.name}' ({rule_of}'s) has no such prefix pattern"


def _base(user_ddi: str | None, client_ddi: str | None) -> tuple[str | None, Side | None]:
    if user_ddi:
        return user_ddi, "user"
    if client_ddi:
        return client_ddi, "client"
    return None, None


def _keep(base: str | None, base_from: Side | None) -> str:
    if base is None:
        return "neither the user nor the client has an outgoing DDI → no DDI"
    return f"the {base_from}'s DDI {base}"


def _apply(
    action: DdiAction,
    forced_ddi: str | None,
    base: str | None,
    base_from: Side | None,
    client_ddi: str | None,
) -> tuple[str | None, str]:
    """The DDI an action yields, and how ``why`` words it."""
    if action == "keep":
        if base is None:
            return None, "keeps the base DDI, but neither the user nor the client has one → no DDI"
        return base, f"keeps {_keep(base, base_from)}"
    if forced_ddi:
        return forced_ddi, f"forces {forced_ddi}"
    # An empty forced DDI means the client's DDI, never the user's (DESIGN §3.6).
    if client_ddi:
        return client_ddi, f"forces an empty DDI → the client's DDI {client_ddi}"
    return None, "forces an empty DDI, but the client has no outgoing DDI → no DDI"


@dataclass(frozen=True, slots=True)
class ForwardedPresentation:
    """How a forwarded external call presents itself to the carrier.

    ``caller_id`` is the original caller's number (None: anonymous, presented as such, never
    replaced by the client's DDI); ``diversion`` is the diverting client's DDI, for a SIP
    Diversion header, so the carrier sees which of its customer's numbers forwarded the call.
    """

    caller_id: str | None
    diversion: str


def forwarded_presentation(
    original_caller: str | None, diverting_ddi: str
) -> ForwardedPresentation:
    """Present ``original_caller`` and name ``diverting_ddi`` in the Diversion (DESIGN §3.6).

    ``diverting_ddi`` is what :func:`select_ddi` chose for the forwarding extension's
    user/client; when it chose None the caller refuses with ``no_outgoing_ddi`` instead of
    calling this, as for any external call. For an internal original caller, pass the DDI
    :func:`select_ddi` chose for that caller, not its extension.
    """
    return ForwardedPresentation(caller_id=original_caller or None, diversion=diverting_ddi)
