"""SHA-512-crypt (``$6$salt$hash``), the password hash Asterisk's ``ari.conf`` checks with
``password_format = crypt``, written from Ulrich Drepper's public specification
("Unix crypt using SHA-256 and SHA-512").

Why here rather than a library: Python's ``crypt`` module warns on import from 3.11 and is gone
in 3.13, and calling the system's libcrypt through ctypes ties rendering to a C library
whose presence and supported schemes vary by platform. This is the standard library's
``hashlib`` only, the same output on every machine; the tests compare it with
``openssl passwd -6``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ROUNDS = 5000
"""The specification's default: the hash then carries no ``rounds=`` field."""
MIN_ROUNDS, MAX_ROUNDS = 1000, 999_999_999
SALT_CHARACTERS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""The crypt alphabet: salts are drawn from it, and the hash is written in it."""
MAX_SALT = 16

# The specification's order of the 64 digest bytes in the output, three at a time
# (the first of each triple ends up in the low bits), and the last byte alone.
_ORDER = [((i, i + 21, i + 42), (i + 21, i + 42, i), (i + 42, i, i + 21))[i % 3] for i in range(21)]


def _sha512(*parts: bytes) -> bytes:
    digest = hashlib.sha512()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _stretch(block: bytes, length: int) -> bytes:
    """``block`` repeated and cut to ``length`` bytes (the spec's P and S sequences)."""
    return (block * (length // len(block) + 1))[:length]


def _encode(digest: bytes) -> str:
    out: list[str] = []

    def emit(value: int, count: int) -> None:
        for _ in range(count):
            out.append(SALT_CHARACTERS[value & 0x3F])
            value >>= 6

    for high, middle, low in _ORDER:
        emit((digest[high] << 16) | (digest[middle] << 8) | digest[low], 4)
    emit(digest[63], 2)
    return "".join(out)


def sha512_crypt(password: str, salt: str | None = None, rounds: int = ROUNDS) -> str:
    """``$6$[rounds=N$]salt$hash`` of ``password`` (UTF-8); a random 16-character salt
    unless one is given (longer salts are cut to 16, as the specification says)."""
    if salt is None:
        salt = "".join(secrets.choice(SALT_CHARACTERS) for _ in range(MAX_SALT))
    salt = salt[:MAX_SALT]
    if any(char in "$:\n" for char in salt):
        raise ValueError("a crypt salt cannot hold '$', ':' or a newline")
    rounds = min(max(rounds, MIN_ROUNDS), MAX_ROUNDS)
    key, salt_bytes = password.encode(), salt.encode()

    alternate = _sha512(key, salt_bytes, key)
    first = hashlib.sha512(key + salt_bytes)
    first.update(_stretch(alternate, len(key)))
    length = len(key)
    while length:
        first.update(alternate if length & 1 else key)
        length >>= 1
    result = first.digest()

    key_sequence = _stretch(_sha512(key * len(key)), len(key))
    salt_sequence = _stretch(_sha512(salt_bytes * (16 + result[0])), len(salt_bytes))
    for round_ in range(rounds):
        step = hashlib.sha512(key_sequence if round_ & 1 else result)
        if round_ % 3:
            step.update(salt_sequence)
        if round_ % 7:
            step.update(key_sequence)
        step.update(result if round_ & 1 else key_sequence)
        result = step.digest()

    prefix = "$6$" if rounds == ROUNDS else f"$6$rounds={rounds}$"
    return f"{prefix}{salt}${_encode(result)}"


def verify(password: str, hashed: str) -> bool:
    """True when ``hashed`` is a ``$6$`` hash of ``password``; False for anything else."""
    parts = hashed.split("$")
    if len(parts) not in (4, 5) or parts[:2] != ["", "6"]:
        return False
    rounds = ROUNDS
    if len(parts) == 5:
        if not parts[2].startswith("rounds=") or not parts[2][7:].isdigit():
            return False
        rounds = int(parts[2][7:])
    try:
        again = sha512_crypt(password, parts[-2], rounds)
    except ValueError:
        return False
    return hmac.compare_digest(again.encode(), hashed.encode())
