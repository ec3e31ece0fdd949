"""Requests, approvals, break-glass and groups on a real store with a fake clock."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.access.grants import Access
from bastion.access.requests import Requests
from bastion.audit import Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.errors import Conflict, Denied, UsageError

REASON = "INC-4411 refund stuck in queue"
CONFIG = """
[notify]
webhook_url = "http://127.0.0.1:9/hook?token=s3cret-token"

[targets.web-1]
approvals = 1

[targets.orders-prod]
approvals = 2
break_glass = true
break_glass_max = "30m"

[targets.sandbox]
approvals = 0
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rules(tmp_path: Path, store_at: Path | PgLocation, clock: FakeClock) -> Requests:
    path = tmp_path / "bastion.toml"
    path.write_text(CONFIG, encoding="utf-8")
    store = Store.create(store_at, clock)
    for name, role in (("alice", "engineer"), ("bob", "admin"), ("carol", "admin"),
                       ("dave", "reviewer"), ("erin", "engineer")):  # fmt: skip
        store.add_user(name, role, None, os.urandom(8), "cli:root")
    for name in ("web-1", "orders-prod", "sandbox"):
        store.add_target(name=name, kind="ssh", host="127.0.0.1", port=22, login="deploy",
                         database=None, secret_sealed=b"x", actor="cli:root")  # fmt: skip
    return Requests(store, load_config(path), clock)


def ask(rules: Requests, target: str = "web-1", hours: float = 2, user: str = "alice") -> int:
    made = rules.request(user=user, target=target, duration=timedelta(hours=hours),
                         reason=REASON, requested_by=user)  # fmt: skip
    return made.id


def kinds(rules: Requests) -> list[str]:
    return [e.kind for e in rules.store.events() if not e.kind.startswith("user.")
            and not e.kind.startswith("target.")]  # fmt: skip


def test_an_approved_request_opens_a_window_that_starts_at_approval(
    rules: Requests, clock: FakeClock
) -> None:
    request_id = ask(rules)
    assert not Access(rules.store, rules.config, clock).decide("alice", "web-1").allowed
    clock.advance(timedelta(hours=3))  # approval comes later than the asking
    done = rules.approve(request_id, "bob")
    assert done.state == "approved" and done.approvers == ("bob",)
    grant = rules.store.grant(done.grant_id or 0)
    assert grant.starts_at == clock.now() and grant.ends_at == clock.now() + timedelta(hours=2)
    assert grant.request_id == request_id and grant.granted_by == "bob"
    assert Access(rules.store, rules.config, clock).decide("alice", "web-1").allowed
    assert kinds(rules) == ["request.created", "grant.created", "request.approved"]


def test_nobody_approves_their_own_request_and_only_admins_decide(rules: Requests) -> None:
    own = ask(rules, user="bob")
    with pytest.raises(Denied, match="another admin must approve"):
        rules.approve(own, "bob")
    theirs = ask(rules)
    with pytest.raises(Denied, match="only admins may approve"):
        rules.approve(theirs, "erin")
    with pytest.raises(Denied, match="only admins may approve"):
        rules.approve(theirs, "dave")  # reviewers review; they do not grant
    filed = rules.request(user="erin", target="web-1", duration=timedelta(hours=1),
                          reason=REASON, requested_by="carol")  # fmt: skip
    with pytest.raises(Denied, match="carol asked"):
        rules.approve(filed.id, "carol")  # filing for someone is asking
    assert rules.store.request(own).state == "pending"
    assert rules.approve(filed.id, "bob").state == "approved"


def test_a_target_may_need_two_different_approvers(rules: Requests) -> None:
    request_id = ask(rules, target="orders-prod", hours=3)
    first = rules.approve(request_id, "bob", timedelta(hours=1))
    assert first.state == "pending" and first.approvers == ("bob",)
    with pytest.raises(Conflict, match=r"approved request .* already"):
        rules.approve(request_id, "bob")
    done = rules.approve(request_id, "carol")
    assert done.state == "approved" and done.approvers == ("bob", "carol")
    grant = rules.store.grant(done.grant_id or 0)
    assert grant.ends_at - grant.starts_at == timedelta(hours=1)  # the shortest window asked
    assert grant.granted_by == "bob,carol"
    assert "request.approval" in kinds(rules)


def test_approval_may_only_shorten_the_window(rules: Requests) -> None:
    request_id = ask(rules, hours=1)
    with pytest.raises(UsageError, match="only shorten"):
        rules.approve(request_id, "bob", timedelta(hours=2))
    assert rules.approve(request_id, "bob", timedelta(minutes=20)).state == "approved"


def test_a_direct_grant_cannot_stand_in_for_two_approvals(rules: Requests) -> None:
    with pytest.raises(Denied, match="needs 2 approvals"):
        rules.access.grant(user="alice", target="orders-prod", duration=timedelta(hours=1),
                           reason=REASON, actor="bob")  # fmt: skip


def test_a_target_without_approval_opens_at_once(rules: Requests) -> None:
    made = rules.store.request(ask(rules, target="sandbox"))
    assert made.state == "approved" and made.decided_by == "policy"
    assert rules.access.decide("alice", "sandbox").allowed


def test_pending_requests_expire_and_cannot_be_approved_after(
    rules: Requests, clock: FakeClock
) -> None:
    request_id = ask(rules)
    clock.advance(timedelta(hours=24))
    with pytest.raises(Conflict, match="expired"):
        rules.approve(request_id, "bob")
    assert rules.store.request(request_id).state == "expired"
    assert rules.store.expire_requests() == []  # once
    assert kinds(rules) == ["request.created", "request.expired"]
    assert ask(rules) != request_id  # may ask again


def test_deny_and_cancel_close_a_request(rules: Requests) -> None:
    first = ask(rules)
    with pytest.raises(Conflict, match="pending for web-1 already"):
        ask(rules)
    with pytest.raises(UsageError, match="say why"):
        rules.deny(first, "bob", "  ")
    denied = rules.deny(first, "bob", "use the read replica")
    assert (denied.state, denied.decision_reason) == ("denied", "use the read replica")
    with pytest.raises(Conflict, match="denied, not pending"):
        rules.approve(first, "carol")
    second = ask(rules)
    with pytest.raises(Denied, match="only alice may cancel"):
        rules.cancel(second, "erin")
    assert rules.cancel(second, "alice").state == "cancelled"


def test_break_glass_opens_at_once_where_allowed_and_waits_for_acknowledgement(
    rules: Requests,
) -> None:
    with pytest.raises(Denied, match="not allowed on web-1"):
        rules.break_glass(user="alice", target="web-1", reason=REASON)
    with pytest.raises(UsageError, match="at most 30m"):
        rules.break_glass(user="alice", target="orders-prod", reason=REASON,
                          duration=timedelta(hours=1))  # fmt: skip
    grant = rules.break_glass(user="alice", target="orders-prod", reason=REASON)
    assert grant.break_glass and grant.ends_at - grant.starts_at == timedelta(minutes=30)
    assert rules.access.decide("alice", "orders-prod").allowed
    [event] = [e for e in rules.store.events() if e.kind == "breakglass.opened"]
    assert event.severity == "high"
    assert [g.id for g in rules.store.break_glass_grants(unacknowledged=True)] == [grant.id]
    with pytest.raises(Denied, match="only reviewers and admins"):
        rules.acknowledge(grant.id, "erin", "")
    own = rules.break_glass(user="bob", target="orders-prod", reason=REASON)
    with pytest.raises(Denied, match="someone else must"):
        rules.acknowledge(own.id, "bob", "")
    done = rules.acknowledge(grant.id, "dave", "checked the session recording")
    assert done.acknowledged_by == "dave"
    assert [g.id for g in rules.store.break_glass_grants(unacknowledged=True)] == [own.id]
    with pytest.raises(Conflict, match="acknowledged by dave already"):
        rules.acknowledge(grant.id, "bob", "")


def test_every_step_queues_a_notification_without_secrets(rules: Requests) -> None:
    request_id = ask(rules)
    rules.deny(request_id, "bob", "use the read replica")
    rules.approve(ask(rules), "carol")
    rules.break_glass(user="erin", target="orders-prod", reason=REASON)
    queued = list(reversed(rules.store.notifications()))
    assert [n["kind"] for n in queued] == ["request.created", "request.denied",
                                           "request.created", "request.approved",
                                           "breakglass.opened"]  # fmt: skip
    bodies = [json.loads(n["payload"]) for n in queued]
    assert bodies[0]["request"] == request_id and f"approve {request_id}" in bodies[0]["text"]
    assert bodies[1]["denied_because"] == "use the read replica"
    assert bodies[4]["severity"] == "high" and "BREAK-GLASS" in bodies[4]["text"]
    assert all(b["text"].startswith("bastion: ") for b in bodies)
    assert "s3cret" not in json.dumps(bodies)


def test_no_webhook_no_notifications(rules: Requests, tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text("", encoding="utf-8")
    quiet = Requests(rules.store, load_config(plain), rules.clock)
    quiet.approve(ask(quiet), "bob")
    assert rules.store.notifications() == []


def test_group_grants_follow_membership(rules: Requests) -> None:
    store = rules.store
    store.add_group("oncall", "cli:root")
    grant = rules.access.grant(group="oncall", target="web-1", duration=timedelta(hours=1),
                               reason=REASON, actor="bob")  # fmt: skip
    assert grant.holder == "group:oncall" and grant.user == ""
    assert not rules.access.decide("alice", "web-1").allowed
    store.set_membership("oncall", "alice", "cli:root", member=True)
    decision = rules.access.decide("alice", "web-1")
    assert decision.allowed and decision.grant is not None and decision.grant.group == "oncall"
    assert [g.holder for g in store.grant_rows()] == ["group:oncall"]
    with pytest.raises(Conflict, match="in group oncall already"):
        store.set_membership("oncall", "alice", "cli:root", member=True)
    store.set_membership("oncall", "alice", "cli:root", member=False)
    assert not rules.access.decide("alice", "web-1").allowed
    with pytest.raises(UsageError, match="one user or to one group"):
        rules.access.grant(user="alice", group="oncall", target="web-1",
                           duration=timedelta(hours=1), reason=REASON, actor="bob")  # fmt: skip


def test_offboarding_cancels_requests_and_leaves_groups(rules: Requests) -> None:
    rules.store.add_group("oncall", "cli:root")
    rules.store.set_membership("oncall", "alice", "cli:root", member=True)
    request_id = ask(rules)
    counts = rules.store.disable_user("alice", "cli:root", "left the company")
    assert counts == {"grants_revoked": 0, "requests_cancelled": 1, "groups_left": 1,
                      "unmask_revoked": 0}  # fmt: skip
    assert rules.store.request(request_id).state == "cancelled"
    assert [e.kind for e in rules.store.events()][-2:] == ["user.disabled", "request.cancelled"]
    assert rules.store.group("oncall").members == ()
    with pytest.raises(Denied, match="disabled"):
        ask(rules)


def test_removing_a_target_cancels_its_pending_requests(rules: Requests) -> None:
    request_id = ask(rules)
    assert rules.store.remove_target("web-1", "cli:root") == 0
    done = rules.store.request(request_id)
    assert (done.state, done.decision_reason) == ("cancelled", "target removed")
    [event] = [e for e in rules.store.events() if e.kind == "target.removed"]
    assert json.loads(event.detail)["requests_cancelled"] == 1


def test_the_decision_says_when_access_comes_through_a_group(rules: Requests) -> None:
    rules.store.add_group("oncall", "cli:root")
    rules.store.set_membership("oncall", "alice", "cli:root", member=True)
    rules.access.grant(group="oncall", target="web-1", duration=timedelta(hours=1),
                       reason=REASON, actor="bob")  # fmt: skip
    assert "(read via group oncall)" in rules.access.decide("alice", "web-1").reason


def test_what_each_person_may_decide(rules: Requests) -> None:
    theirs, own = ask(rules), ask(rules, user="bob", target="orders-prod")
    assert [r.id for r in rules.decidable_by("carol")] == [theirs, own]
    assert [r.id for r in rules.decidable_by("bob")] == [theirs]
    assert rules.decidable_by("alice") == [] and rules.decidable_by("dave") == []
