"""Text a call or a document may carry: printable, valid Unicode, nothing that breaks a line.

A channel variable, a FastAGI request or a command-line argument can hold a NUL, a lone
surrogate (bytes that were not UTF-8) or a newline. None of them is part of a number or a
name; each breaks a log line, a rendered configuration or a database driver (PostgreSQL
refuses NUL in text). :func:`unprintable` finds the first such character; a call whose
number holds one is refused at the edge, and :func:`scrubbed` is what a record keeps of
a value it must keep (a carrier's caller id).
"""

from __future__ import annotations

import unicodedata

_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
"""Control characters (NUL included), surrogates, line and paragraph separators."""
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional embeddings, overrides and isolates: they make a name read as another."""


def unprintable(text: str, allowed: str = "") -> str | None:
    """The first character of ``text`` no stored or logged text may hold, or None.

    ``allowed`` lists exceptions (a template body keeps its newlines and tabs).
    """
    if text.isascii() and text.isprintable():  # the common case, without a loop
        return None
    for character in text:
        if character in allowed:
            continue
        if character in _BIDI_CONTROLS or unicodedata.category(character) in _REFUSED_CATEGORIES:
            return character
    return None


def scrubbed(text: str) -> str:
    """``text`` with every character :func:`unprintable` refuses replaced by U+FFFD."""
    if unprintable(text) is None:
        return text
    return "".join("\ufffd" if unprintable(character) else character for character in text)


def describe_unprintable(text: str, character: str) -> str:
    """Where and what the bad character is, without echoing the value."""
    position = text.index(character) + 1
    kind = "invalid Unicode" if unicodedata.category(character) == "Cs" else "the control character"
    return f"holds {kind} U+{ord(character):04X} at position {position}"
