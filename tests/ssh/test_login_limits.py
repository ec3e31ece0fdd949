"""Login-name parsing and pre-authentication limits (pure code)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bastion.access.preauth import PreauthLimiter, PreauthPolicy
from bastion.clock import FakeClock
from bastion.ssh.login import Login, parse_login


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alice+web-1", Login("alice", "web-1")),
        ("alice:web-1", Login("alice", "web-1")),
        ("alice", Login("alice", None)),
        ("alice+", Login("alice", None)),
        ("alice+db+x", Login("alice", "db+x")),
        ("", Login("", None)),
    ],
)
def test_parse_login(name: str, expected: Login) -> None:
    assert parse_login(name) == expected


def test_unauthenticated_connections_are_capped_per_source() -> None:
    clock = FakeClock()
    limiter = PreauthLimiter(PreauthPolicy(max_unauthenticated_per_source=2))
    assert limiter.admit("10.0.0.1", clock.now()) is None
    assert limiter.admit("10.0.0.1", clock.now()) is None
    assert "too many unauthenticated" in (limiter.admit("10.0.0.1", clock.now()) or "")
    assert limiter.admit("10.0.0.2", clock.now()) is None  # other sources are not affected
    limiter.authenticated("10.0.0.1")
    assert limiter.admit("10.0.0.1", clock.now()) is None


def test_failures_block_a_source_for_a_while() -> None:
    clock = FakeClock()
    policy = PreauthPolicy(max_failures=3, failure_window=timedelta(minutes=1),
                           block_for=timedelta(minutes=5))  # fmt: skip
    limiter = PreauthLimiter(policy)
    assert not limiter.failed("10.0.0.1", clock.now())
    clock.advance(61)  # the first failure leaves the window
    assert not limiter.failed("10.0.0.1", clock.now())
    assert not limiter.failed("10.0.0.1", clock.now())
    assert limiter.failed("10.0.0.1", clock.now())
    assert "too many failed logins" in (limiter.admit("10.0.0.1", clock.now()) or "")
    assert limiter.admit("10.0.0.9", clock.now()) is None
    clock.advance(timedelta(minutes=5))
    assert limiter.admit("10.0.0.1", clock.now()) is None
