"""Password hashes: client admins' scrypt strings and terminals' SIP digests (HA1).

Admins: ``scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>``, with a random salt.
Terminals: the HTTP-digest HA1 of RFC 2617/3261, ``md5(username:realm:password)`` in
lowercase hex, with the terminal's endpoint name as username and its client's SIP domain
as realm -- what Asterisk's ``password_digest`` and Kamailio's ``auth_db`` (``ha1``
column) check a digest response against. Only the hashes are stored; a provisioning
document may carry either the password or the hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_HASH_BYTES = 32

HA1 = re.compile(r"[0-9a-f]{32}")
"""A SIP digest HA1 as stored and exported: 32 lowercase hex digits."""


def hash_password(password: str) -> str:
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_HASH_BYTES)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"scrypt${_N}${_R}${_P}${encoded[0]}${encoded[1]}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``stored`` is a hash of ``password``; False for anything unreadable."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def sip_ha1(username: str, realm: str, password: str) -> str:
    """The digest HA1 of a SIP login: deterministic, so a reload can compare it."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()
