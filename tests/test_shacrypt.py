"""The ARI password hash: SHA-512-crypt as ``openssl passwd -6`` computes it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from callcontrol.asterisk.shacrypt import SALT_CHARACTERS, sha512_crypt, verify

CASES = [
    ("callcontrol", "saltsalt"),
    ("a password with spaces", "x"),
    ("é~ünicode 🔑", "./09AZaz"),
    ("p" * 200, "sixteen.chars.ok"),
    ("short", "a/salt/longer/than/sixteen"),  # cut to 16 characters
]


def openssl(password: str, salt: str) -> str:
    found = shutil.which("openssl")
    if found is None:
        pytest.skip("openssl is not installed")
    done = subprocess.run(
        [found, "passwd", "-6", "-salt", salt, "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize(("password", "salt"), CASES)
def test_the_hash_is_the_one_openssl_computes(password: str, salt: str) -> None:
    assert sha512_crypt(password, salt) == openssl(password, salt)


def test_a_rounds_count_is_written_in_the_hash_as_openssl_does() -> None:
    hashed = sha512_crypt("Hello world!", "saltstring", rounds=10_000)
    assert hashed.startswith("$6$rounds=10000$saltstring$")
    assert hashed == openssl("Hello world!", "rounds=10000$saltstring")
    assert verify("Hello world!", hashed)


def test_a_random_salt_differs_each_time_and_verifies_only_its_password() -> None:
    first, second = sha512_crypt("secret-1"), sha512_crypt("secret-1")
    assert first != second
    salt = first.split("$")[2]
    assert len(salt) == 16
    assert set(salt) <= set(SALT_CHARACTERS)
    assert verify("secret-1", first)
    assert verify("secret-1", second)
    assert not verify("secret-2", first)
    for broken in ("", "secret-1", "$5$abc$def", "$6$rounds=x$abc$def", "$6$a:b$c"):
        assert not verify("secret-1", broken)
