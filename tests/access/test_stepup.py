"""The step-up rule on its own: a proof counts for the window after it, for the roles that
have writes asking for one, and fails closed at every edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bastion.access.stepup import NEEDED, check, may_step_up, valid_until

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


def test_a_proof_counts_for_the_window_after_it_and_not_a_moment_longer() -> None:
    proven = NOW - WINDOW + timedelta(seconds=1)
    assert check(role="admin", proven_at=proven, now=NOW, window=WINDOW).allowed
    found = check(role="admin", proven_at=NOW - WINDOW, now=NOW, window=WINDOW)
    assert not found.allowed and found.reason == NEEDED
    assert check(role="admin", proven_at=NOW, now=NOW, window=WINDOW).valid_until == NOW + WINDOW


def test_no_proof_a_proof_from_the_future_or_no_window_refuse() -> None:
    for proven, window in ((None, WINDOW), (NOW + timedelta(seconds=1), WINDOW),
                           (NOW, timedelta(0))):  # fmt: skip
        assert not check(role="admin", proven_at=proven, now=NOW, window=window).allowed
    assert valid_until(None, WINDOW) is None and valid_until(NOW, timedelta(0)) is None


def test_only_roles_with_writes_that_ask_for_it_may_step_up() -> None:
    assert may_step_up("admin") and may_step_up("reviewer")
    assert not may_step_up("engineer") and not may_step_up("")
    found = check(role="engineer", proven_at=NOW, now=NOW, window=WINDOW)
    assert not found.allowed and "engineer" in found.reason
