"""Unmask grants on a real store: consent on record, a second person's approval, a window
that opens at approval, offboarding revoking them."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.access.unmask import Unmasking
from bastion.audit import Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.errors import Conflict, Denied, UsageError

CONFIG = """
[targets.shop]
unmask_max = "2h"
[targets.shop.masking]
subject_keys = ["public.customers.id", "orders.customer_id"]
"""
REASON = "SUP-1234 customer asked why their card was charged twice"


@pytest.fixture
def unmasking(tmp_path: Path, store_at: Path | PgLocation) -> Unmasking:
    (tmp_path / "bastion.toml").write_text(CONFIG, encoding="utf-8")
    clock = FakeClock()
    store = Store.create(store_at, clock)
    for name, role in (("alice", "engineer"), ("bob", "admin"), ("dave", "reviewer"),
                       ("erin", "engineer")):  # fmt: skip
        store.add_user(name, role, None, os.urandom(8), "cli:root")
    store.add_target(name="shop", kind="postgres", host="127.0.0.1", port=5432, login="svc",
                     database="shop", secret_sealed=b"x", actor="cli:root")  # fmt: skip
    return Unmasking(store, load_config(tmp_path / "bastion.toml"), clock)


def ask(unmasking: Unmasking, **changes: object) -> int:
    fields: dict[str, object] = {"user": "alice", "target": "shop",
                                 "columns": ["customers.email", "payments"],
                                 "subject": "customers.id=4711", "reason": REASON,
                                 "consent_ref": "SUP-1234", "requested_by": "alice"}  # fmt: skip
    return unmasking.request(**{**fields, **changes}).id  # type: ignore[arg-type]


def test_a_consented_request_approved_by_a_reviewer_opens_at_approval(
    unmasking: Unmasking,
) -> None:
    grant_id = ask(unmasking, consent_sha256="ab" * 32)
    assert unmasking.active("alice", "shop") == []
    unmasking.clock.advance(timedelta(hours=5))  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="--consent-confirmed"):
        unmasking.approve(grant_id, "dave", consent_confirmed=False)
    done = unmasking.approve(grant_id, "dave", consent_confirmed=True)
    assert done.state == "approved" and done.starts_at == unmasking.clock.now()
    assert done.ends_at == unmasking.clock.now() + timedelta(hours=1)
    [live] = unmasking.active("alice", "shop")
    assert (live.subject_key, live.subject_value) == ("customers.id", "4711")
    assert unmasking.active("erin", "shop") == []  # that engineer only
    unmasking.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    assert unmasking.active("alice", "shop") == []
    kinds = [e.kind for e in unmasking.store.events() if e.kind.startswith("unmask.")]
    assert kinds == ["unmask.requested", "unmask.approved"]


def test_nobody_approves_their_own_and_engineers_do_not_approve(unmasking: Unmasking) -> None:
    own = ask(unmasking, user="bob", requested_by="bob")
    with pytest.raises(Denied, match="someone else must approve"):
        unmasking.approve(own, "bob", consent_confirmed=True)
    theirs = ask(unmasking)
    with pytest.raises(Denied, match="only admins and reviewers"):
        unmasking.approve(theirs, "erin", consent_confirmed=True)
    denied = unmasking.deny(theirs, "bob", "no consent on the ticket")
    assert denied.state == "denied"
    with pytest.raises(Conflict, match="denied, not pending"):
        unmasking.approve(theirs, "dave", consent_confirmed=True)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"subject": "customers.email=jane@example.com"}, "not a subject key of shop"),
        ({"subject": "customers.id"}, "table.column=value"),
        ({"duration": timedelta(hours=3)}, "at most 2h"),
        ({"columns": ["customers.email; drop"]}, "name the columns"),
        ({"consent_ref": "  "}, "consent is recorded"),
        ({"consent_sha256": "xyz"}, "64 lower-case hex"),
        ({"reason": "fix"}, "at least 10 characters"),
    ],
)  # fmt: skip
def test_requests_are_checked(unmasking: Unmasking, changes: dict[str, object],
                              needle: str) -> None:  # fmt: skip
    with pytest.raises(UsageError, match=needle):
        ask(unmasking, **changes)


def test_a_subject_key_may_be_named_with_or_without_its_schema(unmasking: Unmasking) -> None:
    assert unmasking.subject("shop", "public.customers.id=1") == ("public.customers.id", "1")
    assert unmasking.subject("shop", "orders.customer_id = 7") == ("orders.customer_id", "7")


def test_offboarding_and_revocation_end_unmask_grants(unmasking: Unmasking) -> None:
    first = ask(unmasking)
    unmasking.approve(first, "bob", consent_confirmed=True)
    second = ask(unmasking)
    assert unmasking.store.revoke_unmask(second, "bob").state == "revoked"
    counts = unmasking.store.disable_user("alice", "cli:root", "left")
    assert counts["unmask_revoked"] == 1
    assert unmasking.active("alice", "shop") == []
    assert unmasking.store.unmask(first).state == "revoked"
