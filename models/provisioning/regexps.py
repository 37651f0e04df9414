"""How much work a match list's regular expression may cost a call.

Tenants write match lists, and the call pipeline searches each of a list's expressions in
the dialled number (:mod:`dialplan.matching`) with Python's backtracking engine, on the
event loop every client's calls share. An expression such as ``(\\d*\\d*)*x`` makes that
engine try every way to split the number before it fails -- minutes for one call. So an
expression is refused when the ways it can try one number, counted from its syntax tree
over a subject of at most :data:`SUBJECT` characters, exceed :data:`LIMIT`.

The count is an upper bound, not a measure: a sequence multiplies its parts' ways, an
alternation adds its branches', a repeat adds ``ways ** n`` over each count ``n`` it
allows (at most the subject's length). Ordinary lists (``^34(80|90)``, ``^\\+447\\d{9}$``,
``^346\\d*``) count a few ways.
"""

from __future__ import annotations

import importlib
from typing import Any

# The standard library's own parser of ``re`` (private, unchanged in shape since 3.11;
# no stubs, hence Any): the tree it builds is the one the engine runs.
_parser: Any = importlib.import_module("re._parser")
_codes: Any = importlib.import_module("re._constants")

SUBJECT = 16
"""The longest subject: an E.164 number, '+' and at most 15 digits."""
LIMIT = 10_000
"""The most ways an expression may have to try one number."""

_REPEATS = {
    _codes.MAX_REPEAT,
    _codes.MIN_REPEAT,
    *([_codes.POSSESSIVE_REPEAT] if hasattr(_codes, "POSSESSIVE_REPEAT") else []),
}


def ways(expression: str) -> int:
    """An upper bound of the ways the engine can try to match ``expression`` at one place
    of a number (capped just above :data:`LIMIT`). ``re.error`` when it does not parse."""
    return _sequence(_parser.parse(expression))


def _sequence(items: Any) -> int:
    total = 1
    for op, value in items:
        total = min(total * _one(op, value), LIMIT + 1)
    return total


def _one(op: Any, value: Any) -> int:
    if op in _REPEATS:
        low, high, body = value
        low, high = min(low, SUBJECT), min(high, SUBJECT)
        each = _sequence(body)
        total = 0
        for count in range(low, high + 1):
            total = min(total + min(each**count, LIMIT + 1), LIMIT + 1)
        return max(total, 1)
    if op == _codes.BRANCH:
        return min(sum(_sequence(branch) for branch in value[1]), LIMIT + 1)
    if op == _codes.SUBPATTERN:
        return _sequence(value[-1])
    if op in (_codes.ASSERT, _codes.ASSERT_NOT):
        return _sequence(value[1])
    if op == _codes.ATOMIC_GROUP:
        return _sequence(value)
    if op == _codes.GROUPREF_EXISTS:
        _group, yes, no = value
        return min(_sequence(yes) + (_sequence(no) if no else 1), LIMIT + 1)
    return 1
