"""Match lists: does an E.164 number match a list of numbers and regular expressions."""

from __future__ import annotations

import re
from collections.abc import Iterable

from dialplan.views import MatchPattern


def matches(patterns: Iterable[MatchPattern], e164: str) -> MatchPattern | None:
    """The first pattern that matches ``e164`` (with '+'), or None.

    A ``number`` matches when the digits are equal ('+' optional on either side).
    A ``regexp`` is searched in the number both with and without its '+', so
    ``^\\+3490`` and ``^3490`` both mean "Spanish 90x numbers".
    """
    digits = e164.lstrip("+")
    for pattern in patterns:
        if pattern.kind == "number":
            if pattern.value.lstrip("+") == digits:
                return pattern
        elif re.search(pattern.value, e164) or re.search(pattern.value, digits):
            return pattern
    return None
