"""Grants on a real store with a fake clock: windows, policy limits, revocation, offboarding."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bastion.access.grants import Access
from bastion.audit import NewGrant, Store
from bastion.audit.location import PgLocation
from bastion.audit.records import Grant
from bastion.clock import FakeClock
from bastion.config import Config, load_config
from bastion.errors import Conflict, Denied, NotFound, UsageError


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "bastion.toml"
    path.write_text('[targets.orders-prod]\nmax_grant = "4h"\n', encoding="utf-8")
    return load_config(path)


@pytest.fixture
def access(store_at: Path | PgLocation, clock: FakeClock, config: Config) -> Access:
    store = Store.create(store_at, clock)
    for name in ("alice", "bob"):
        store.add_user(name, "engineer", None, os.urandom(8), "cli:root")
    for name in ("web-1", "orders-prod"):
        store.add_target(
            name=name,
            kind="ssh",
            host="127.0.0.1",
            port=22,
            login="deploy",
            database=None,
            secret_sealed=b"x",
            actor="cli:root",
        )
    return Access(store, config, clock)


REASON = "INC-4411 refund stuck in queue"


def give(access: Access, *, hours: float = 1, **overrides: Any) -> Grant:
    """A grant for alice on web-1 by cli:admin unless told otherwise."""
    fields: dict[str, Any] = {"user": "alice", "target": "web-1", "reason": REASON,
                              "actor": "cli:admin", **overrides}  # fmt: skip
    return access.grant(duration=timedelta(hours=hours), **fields)


def test_no_grant_means_no_access_and_says_how_to_ask(access: Access) -> None:
    decision = access.decide("alice", "web-1")
    assert not decision.allowed
    assert "bastion grant alice web-1" in decision.reason


def test_a_grant_opens_its_window_and_closes_on_time(access: Access, clock: FakeClock) -> None:
    made = give(access, hours=2)
    decision = access.decide("alice", "web-1")
    assert decision.allowed and decision.grant == made
    assert not access.decide("bob", "web-1").allowed
    assert not access.decide("alice", "orders-prod").allowed
    clock.advance(timedelta(hours=2) - timedelta(microseconds=1))
    assert access.decide("alice", "web-1").allowed
    clock.advance(timedelta(microseconds=1))
    assert not access.decide("alice", "web-1").allowed
    assert made.state_at(clock.now()) == "expired"


def test_a_scheduled_grant_opens_later(access: Access, clock: FakeClock) -> None:
    start = clock.now() + timedelta(days=1)
    made = give(access, hours=1, starts_at=start)
    assert made.state_at(clock.now()) == "scheduled"
    assert not access.decide("alice", "web-1").allowed
    clock.set(start)
    assert access.decide("alice", "web-1").allowed


def test_revocation_ends_access_at_once_and_only_once(access: Access) -> None:
    made = give(access, hours=1)
    access.revoke(made.id, "cli:admin")
    assert not access.decide("alice", "web-1").allowed
    with pytest.raises(Conflict, match="revoked already"):
        access.revoke(made.id, "cli:admin")
    with pytest.raises(NotFound):
        access.revoke(999, "cli:admin")


def test_policy_limits_are_enforced(access: Access) -> None:
    with pytest.raises(UsageError, match="at most 4h"):
        give(access, target="orders-prod", hours=5)
    with pytest.raises(UsageError, match="at most 12h"):
        give(access, hours=13)
    with pytest.raises(UsageError, match="at least 10 characters"):
        give(access, hours=1, reason="  fix   ")
    with pytest.raises(UsageError, match="mode"):
        give(access, hours=1, mode="root")
    with pytest.raises(NotFound):
        give(access, target="nope", hours=1)
    assert access.store.grants() == []


def test_disabling_a_user_revokes_everything_in_one_step(access: Access) -> None:
    for target in ("web-1", "orders-prod"):
        give(access, target=target, hours=1)
    counts = access.store.disable_user("alice", "cli:admin", "left")
    assert counts == {"grants_revoked": 2, "requests_cancelled": 0, "groups_left": 0,
                      "unmask_revoked": 0}  # fmt: skip
    assert not access.decide("alice", "web-1").allowed
    assert "disabled" in access.decide("alice", "web-1").reason
    with pytest.raises(Denied, match="disabled"):
        give(access, hours=1)
    disabled = [e for e in access.store.events() if e.kind == "user.disabled"]
    assert disabled[0].detail == (
        '{"grants_revoked":2,"groups_left":0,"reason":"left","requests_cancelled":0,'
        '"unmask_revoked":0}'
    )


def test_removing_a_target_revokes_its_grants(access: Access) -> None:
    give(access, hours=1)
    assert access.store.remove_target("web-1", "cli:admin") == 1
    assert not access.decide("alice", "web-1").allowed


def test_every_grant_change_is_audited(access: Access) -> None:
    made = give(access, hours=1)
    access.revoke(made.id, "cli:other-admin")
    events = {e.kind: e for e in access.store.events()}
    assert events["grant.created"].actor == "cli:admin"
    assert REASON in events["grant.created"].detail
    assert events["grant.revoked"].actor == "cli:other-admin"
    assert access.store.verify_chain().ok


def test_grants_filtered_by_user_read_the_views_user_column(
    access: Access, clock: FakeClock
) -> None:
    """`user` is the view's column, not the engine's current user (PostgreSQL reads a bare
    `user` as CURRENT_USER): quoted, it filters and orders by the person on both engines."""
    store = access.store
    store.add_group("oncall", "cli:admin")
    for member in ("alice", "bob"):
        store.set_membership("oncall", member, "cli:admin", member=True)
    now = clock.now()
    window = NewGrant(target="web-1", mode="read", starts_at=now, reason=REASON,
                      ends_at=now + timedelta(hours=1), actor="cli:admin")  # fmt: skip
    own = store.add_grant(replace(window, user="alice"))
    shared = store.add_grant(replace(window, target="orders-prod", group="oncall"))
    bobs = store.add_grant(replace(window, user="bob"))
    mine = store.grants(user="alice")
    assert [(g.id, g.user, g.group) for g in mine] == [
        (own.id, "alice", None), (shared.id, "alice", "oncall"),
    ]  # fmt: skip
    assert [(g.id, g.user) for g in store.grants()] == [
        (own.id, "alice"), (shared.id, "alice"), (shared.id, "bob"), (bobs.id, "bob"),
    ]  # fmt: skip
    assert store.grants(user="carol") == []
