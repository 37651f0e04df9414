"""Number normalisation to E.164 with the client's country."""

from __future__ import annotations

import functools
import re

import phonenumbers

_DIALLABLE = re.compile(r"\+?[0-9]{1,20}")
DDI_PREFIX = re.compile(r"(?P<prefix>[0-9]{1,3}\*)(?P<number>\+?[0-9]+)")
"""``111*600123123``: an outgoing-DDI prefix dialled before the number."""


@functools.lru_cache(maxsize=65_536)
def to_e164(dialled: str, country: str) -> str | None:
    """``dialled`` as E.164 with '+', read as the client in ``country`` would dial it.

    Accepts international (``+34…``, ``0034…`` with the country's international
    prefix) and national forms (``91…`` in Spain, ``020…`` in the UK). Returns None
    when the number is not a possible number of any country. Remembered (a pure
    function of short strings; parsing costs a tenth of a decision).
    """
    if not _DIALLABLE.fullmatch(dialled):
        return None
    try:
        parsed = phonenumbers.parse(dialled, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def is_e164(number: str) -> bool:
    """True for a well-formed E.164 number with '+' (``+`` and 8–15 digits, no leading 0)."""
    return re.fullmatch(r"\+[1-9][0-9]{6,14}", number) is not None
