"""Tests for argon2id password hashing, verification and the strength check."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type

from bastion.identity.passwords import (
    MAX_LENGTH,
    check_password_strength,
    hash_password,
    needs_rehash,
    verify_password,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


def test_hash_is_argon2id_with_chosen_parameters(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=2$")
    assert PASSWORD not in stored


def test_hashes_are_salted() -> None:
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


def test_verify_right_password(stored: str) -> None:
    assert verify_password(stored, PASSWORD) is True


@pytest.mark.parametrize("attempt", ["", "correct horse battery stapl", PASSWORD + " ", "x" * 2000])
def test_verify_wrong_password(stored: str, attempt: str) -> None:
    assert verify_password(stored, attempt) is False


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext",
        "$argon2id$",
        "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$",
        "$argon2id$v=19$m=65536,t=3,p=2$!!!$???",
        "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
        "\udcff",
    ],
)
def test_verify_malformed_hash_is_false(bad: str) -> None:
    assert verify_password(bad, PASSWORD) is False
    assert needs_rehash(bad) is True


def test_verify_wrong_types_is_false(stored: str) -> None:
    assert verify_password(None, PASSWORD) is False  # type: ignore[arg-type]
    assert verify_password(stored, b"bytes") is False  # type: ignore[arg-type]


def test_verify_unencodable_password_is_false(stored: str) -> None:
    assert verify_password(stored, "\udcff" * 12) is False


def test_unicode_password_round_trip() -> None:
    pw = "pässwörd-密码-🔑-long"
    assert verify_password(hash_password(pw), pw) is True


def test_hash_refuses_empty_and_overlong() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")
    with pytest.raises(ValueError, match="1024"):
        hash_password("x" * (MAX_LENGTH + 1))
    assert verify_password(hash_password("x" * MAX_LENGTH), "x" * MAX_LENGTH)


def test_needs_rehash(stored: str) -> None:
    assert needs_rehash(stored) is False
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    old = weaker.hash(PASSWORD)
    assert needs_rehash(old) is True
    assert verify_password(old, PASSWORD) is True  # still accepted, then rehashed
    argon2i = PasswordHasher(type=Type.I).hash(PASSWORD)
    assert needs_rehash(argon2i) is True


@pytest.mark.parametrize("pw", ["", "hunter2", "elevenchars"])
def test_strength_too_short(pw: str) -> None:
    reason = check_password_strength(pw)
    assert reason is not None
    assert "12" in reason
    assert "\n" not in reason
    if pw:
        assert pw not in reason


@pytest.mark.parametrize("pw", ["twelve chars", PASSWORD, "x" * MAX_LENGTH])
def test_strength_ok(pw: str) -> None:
    assert check_password_strength(pw) is None


def test_strength_too_long() -> None:
    reason = check_password_strength("x" * (MAX_LENGTH + 1))
    assert reason is not None
    assert "1024" in reason
