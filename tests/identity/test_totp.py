"""TOTP through the identity service on a real store: single use, skew, lockout, sealing."""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from bastion.audit import Store, TotpResult
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import LockoutPolicy, TotpPolicy
from bastion.errors import Denied, UsageError
from bastion.identity import totp
from bastion.identity.sealing import SecretBox
from bastion.identity.service import Identity
from tests.storeadmin import admin_of


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def identity(store_at: Path | PgLocation, clock: FakeClock) -> Identity:
    store = Store.create(store_at, clock)
    box = SecretBox(os.urandom(32))
    return Identity(
        store,
        box,
        clock,
        TotpPolicy(),
        LockoutPolicy(max_failures=5, lock_for=timedelta(minutes=15)),
    )


def seed_of(uri: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]


def code(seed: str, clock: FakeClock, steps: int = 0) -> str:
    return totp.code_for_step(seed, totp.step_at(clock.now()) + steps)


def test_enrolment_gives_a_standard_uri(identity: Identity) -> None:
    enrolment = identity.enrol("alice", "engineer", None, "cli:root")
    parsed = urllib.parse.urlparse(enrolment.uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert parsed.path == "/bastion:alice"
    seed = seed_of(enrolment.uri)
    assert len(base64.b32decode(seed)) == 20  # 160 bits, as RFC 4226 recommends
    assert "█" in enrolment.qr_text() or "▀" in enrolment.qr_text()


def test_pyotp_and_our_steps_agree_with_rfc_6238() -> None:
    # RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    seed = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code_for_step(seed, 59 // 30) == "287082"
    assert totp.code_for_step(seed, 1111111109 // 30) == "081804"
    assert totp.code_for_step(seed, 1234567890 // 30) == "005924"
    assert pyotp.TOTP(seed).at(1234567890) == "005924"


def test_a_code_is_accepted_once(identity: Identity, clock: FakeClock) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    now_code = code(seed, clock)
    assert identity.check_totp("alice", now_code, "ssh").result is TotpResult.ACCEPTED
    assert identity.check_totp("alice", now_code, "postgres").result is TotpResult.REPLAYED
    with pytest.raises(Denied, match="used already"):
        identity.require_totp("alice", now_code, "ssh")


def test_an_older_step_is_refused_after_a_newer_one(identity: Identity, clock: FakeClock) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    assert identity.check_totp("alice", code(seed, clock, +1), "ssh").result is TotpResult.ACCEPTED
    assert identity.check_totp("alice", code(seed, clock, 0), "ssh").result is TotpResult.REPLAYED


@pytest.mark.parametrize("steps", [-1, +1])
def test_one_step_of_skew_is_accepted(identity: Identity, clock: FakeClock, steps: int) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    assert (
        identity.check_totp("alice", code(seed, clock, steps), "ssh").result is TotpResult.ACCEPTED
    )


@pytest.mark.parametrize("steps", [-2, +2, -3, +3])
def test_two_steps_of_skew_are_refused(identity: Identity, clock: FakeClock, steps: int) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    assert identity.check_totp("alice", code(seed, clock, steps), "ssh").result is TotpResult.WRONG


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5"])
def test_malformed_codes_are_wrong(identity: Identity, bad: str) -> None:
    identity.enrol("alice", "engineer", None, "cli:root")
    assert identity.check_totp("alice", bad, "ssh").result is TotpResult.WRONG


def test_spaces_inside_a_code_are_tolerated(identity: Identity, clock: FakeClock) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    c = code(seed, clock)
    assert identity.check_totp("alice", f"{c[:3]} {c[3:]}", "ssh").result is TotpResult.ACCEPTED


def test_five_failures_lock_for_fifteen_minutes(identity: Identity, clock: FakeClock) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    results = [identity.check_totp("alice", "000000", "ssh") for _ in range(5)]
    assert [r.result for r in results] == [TotpResult.WRONG] * 5
    assert results[-1].just_locked
    # Locked: even the right code is refused, and not looked at.
    with pytest.raises(Denied, match="locked until"):
        identity.require_totp("alice", code(seed, clock), "ssh")
    clock.advance(timedelta(minutes=14, seconds=59))
    assert identity.check_totp("alice", code(seed, clock), "ssh").result is TotpResult.LOCKED
    clock.advance(timedelta(seconds=1))
    assert identity.check_totp("alice", code(seed, clock), "ssh").result is TotpResult.ACCEPTED
    events = identity.store.events()
    locks = [e for e in events if e.kind == "user.locked"]
    assert len(locks) == 1 and locks[0].subject == "alice"


def test_a_success_resets_the_failure_count(identity: Identity, clock: FakeClock) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    for _ in range(4):
        identity.check_totp("alice", "000000", "ssh")
    assert identity.check_totp("alice", code(seed, clock), "ssh").result is TotpResult.ACCEPTED
    clock.advance(30)
    for _ in range(4):
        assert not identity.check_totp("alice", "000000", "ssh").just_locked


def test_an_admin_can_unlock(identity: Identity, clock: FakeClock) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    for _ in range(5):
        identity.check_totp("alice", "000000", "ssh")
    identity.store.unlock_user("alice", "cli:admin")
    assert identity.check_totp("alice", code(seed, clock), "ssh").result is TotpResult.ACCEPTED
    assert any(
        e.kind == "user.unlocked" and e.actor == "cli:admin" for e in identity.store.events()
    )


def test_reset_totp_invalidates_the_old_seed(identity: Identity, clock: FakeClock) -> None:
    old = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    new = seed_of(identity.reset_totp("alice", "cli:root").uri)
    assert old != new
    assert identity.check_totp("alice", code(old, clock), "ssh").result is TotpResult.WRONG
    assert identity.check_totp("alice", code(new, clock), "ssh").result is TotpResult.ACCEPTED


def test_a_disabled_user_cannot_use_a_right_code(identity: Identity, clock: FakeClock) -> None:
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    identity.store.disable_user("alice", "cli:root", "left the company")
    with pytest.raises(Denied, match="disabled"):
        identity.require_totp("alice", code(seed, clock), "ssh")


def raw_database(store: Store, request: pytest.FixtureRequest) -> bytes:
    """What an admin with the store reads: the file (and its WAL), or every row as text."""
    if store.location is None:
        path = store.file
        data = path.read_bytes()
        wal = Path(f"{path}-wal")
        return data + (wal.read_bytes() if wal.exists() else b"")
    admin = admin_of(store, request)
    try:
        tables = admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        rows = [admin.execute(f'SELECT t::text FROM "{name}" t') for (name,) in tables]
    finally:
        admin.close()
    assert any(rows)
    return "\n".join(r[0] for found in rows for r in found).encode()


def test_seeds_are_unreadable_from_the_raw_database(
    identity: Identity, request: pytest.FixtureRequest
) -> None:
    seeds = [seed_of(identity.enrol(n, "engineer", None, "cli:root").uri) for n in ("alice", "bob")]
    data = raw_database(identity.store, request)
    assert b"alice" in data  # sanity: the right store
    for seed in seeds:
        raw = base64.b32decode(seed)
        assert seed.encode() not in data
        assert raw not in data and raw.hex().encode() not in data


def test_a_seed_copied_to_another_user_does_not_open(identity: Identity) -> None:
    identity.enrol("alice", "engineer", None, "cli:root")
    identity.enrol("mallory", "engineer", None, "cli:root")
    alice = identity.store.user_secrets("alice").totp_sealed
    identity.store.replace_totp("mallory", alice, "attacker")
    with pytest.raises(Exception, match="could not be opened"):
        identity.check_totp("mallory", "123456", "ssh")


def test_passwords_are_checked_and_weak_ones_refused(identity: Identity) -> None:
    with pytest.raises(UsageError, match="password refused"):
        identity.enrol("alice", "engineer", "short", "cli:root")
    identity.enrol("alice", "engineer", "correct horse battery", "cli:root")
    assert identity.check_password("alice", "correct horse battery")
    assert not identity.check_password("alice", "wrong horse battery")
    assert not identity.check_password("nobody", "correct horse battery")


@pytest.mark.parametrize("name", ["Alice", "1bob", "a b", "x" * 33, "", "alice+web"])
def test_bad_user_names_are_refused(identity: Identity, name: str) -> None:
    with pytest.raises(UsageError, match="bad user name"):
        identity.enrol(name, "engineer", None, "cli:root")


def test_guesses_at_a_locked_account_are_audited_in_aggregate(
    identity: Identity, clock: FakeClock
) -> None:
    """A flood of codes at a locked user writes a handful of rows that carry the count."""
    seed = seed_of(identity.enrol("alice", "engineer", None, "cli:root").uri)
    for _ in range(5):
        identity.check_totp("alice", "000000", "ssh")
    outcomes = [identity.check_totp("alice", "000000", "ssh:10.9.9.9") for _ in range(150)]
    assert {o.result for o in outcomes} == {TotpResult.LOCKED}
    refused = [e for e in identity.store.events() if e.kind == "auth.totp_refused"]
    assert [json.loads(e.detail)["refused_so_far"] for e in refused] == [1, 10, 100]
    # The count starts again once the lock is over.
    clock.advance(timedelta(minutes=15))
    assert identity.check_totp("alice", code(seed, clock), "ssh").result is TotpResult.ACCEPTED
    for _ in range(5):
        identity.check_totp("alice", "000000", "ssh")
    identity.check_totp("alice", "000000", "ssh")
    refused = [e for e in identity.store.events() if e.kind == "auth.totp_refused"]
    assert json.loads(refused[-1].detail)["refused_so_far"] == 1
