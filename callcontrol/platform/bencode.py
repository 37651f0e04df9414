"""Bencode, the encoding of rtpengine's ng control protocol: integers ``i42e``, byte strings
``4:spam``, lists ``l…e`` and dictionaries ``d…e`` (keys are byte strings, sorted).

Our own small codec: ``encode`` takes str (as UTF-8), bytes, int, list/tuple and dict with str
or bytes keys; ``decode`` returns bytes for strings (the caller decides what is text) and
refuses anything malformed or nested deeper than :data:`MAX_DEPTH` with BencodeError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Value = int | bytes | list["Value"] | dict[bytes, "Value"]
"""A decoded value."""
Encodable = (
    int
    | str
    | bytes
    | Sequence["Encodable"]
    | Mapping[str, "Encodable"]
    | Mapping[bytes, "Encodable"]
)

MAX_DEPTH = 32
"""Deepest nesting ``decode`` accepts: an answer is a few levels deep; more is garbage."""


class BencodeError(ValueError):
    """Not bencode, or a value bencode cannot hold."""


def encode(value: Encodable) -> bytes:
    parts: list[bytes] = []
    _encode(value, parts, 0)
    return b"".join(parts)


def _encode(value: Encodable, parts: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, bool):
        raise BencodeError("bencode has no booleans")
    if isinstance(value, int):
        parts.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        parts.append(b"%d:%s" % (len(data), data))
    elif isinstance(value, Mapping):
        keys = {(k.encode() if isinstance(k, str) else k): v for k, v in value.items()}
        if len(keys) != len(value):
            raise BencodeError("a dictionary holds the same key twice")
        parts.append(b"d")
        for key in sorted(keys):
            _encode(key, parts, depth + 1)
            _encode(keys[key], parts, depth + 1)
        parts.append(b"e")
    elif isinstance(value, Sequence):
        parts.append(b"l")
        for item in value:
            _encode(item, parts, depth + 1)
        parts.append(b"e")
    else:
        raise BencodeError(f"cannot encode a {type(value).__name__}")


def decode(data: bytes) -> Value:
    """The one value ``data`` holds; BencodeError when malformed or followed by more."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} bytes after the value")
    return value


def _decode(data: bytes, at: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nested deeper than {MAX_DEPTH}")
    if at >= len(data):
        raise BencodeError("truncated")
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.find(b"e", at)
        digits = data[at + 1 : end] if end > 0 else b""
        if not _is_integer(digits):
            raise BencodeError(f"bad integer at byte {at}")
        return int(digits), end + 1
    if kind.isdigit():
        colon = data.find(b":", at)
        length = data[at:colon] if colon > 0 else b""
        if not length.isdigit() or (len(length) > 1 and length[:1] == b"0"):
            raise BencodeError(f"bad string length at byte {at}")
        start = colon + 1
        end = start + int(length)
        if end > len(data):
            raise BencodeError(f"string at byte {at} runs past the end")
        return data[start:end], end
    if kind == b"l":
        items: list[Value] = []
        at += 1
        while data[at : at + 1] != b"e":
            item, at = _decode(data, at, depth + 1)
            items.append(item)
        return items, at + 1
    if kind == b"d":
        entries: dict[bytes, Value] = {}
        at += 1
        while data[at : at + 1] != b"e":
            key, at = _decode(data, at, depth + 1)
            if not isinstance(key, bytes):
                raise BencodeError(f"a dictionary key at byte {at} is not a string")
            entries[key], at = _decode(data, at, depth + 1)
        return entries, at + 1
    raise BencodeError(f"unexpected {kind!r} at byte {at}")


def _is_integer(digits: bytes) -> bool:
    body = digits[1:] if digits[:1] == b"-" else digits
    if not body.isdigit():
        return False
    # No leading zero, no "-0": one spelling per number.
    return digits == b"0" if body == b"0" else body[:1] != b"0"
