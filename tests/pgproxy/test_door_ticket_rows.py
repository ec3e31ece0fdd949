"""Reusable tickets against an admin with the store file but not the key: a ticket row moved
to someone else, stretched past its end or unbound from its address is no ticket (refused
as an unknown one), while the row as minted opens connections."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bastion.clock import iso
from tests.harness import Bastion
from tests.pgproxy.test_door_reusable_tickets import mint, opens, refused, two  # noqa: F401


def _edit(b: Bastion, sql: str, params: tuple[Any, ...]) -> None:
    db = sqlite3.connect(b.config.paths.store)
    with db:
        db.execute(sql, params)
    db.close()


def _to_bob(b: Bastion) -> tuple[int, int]:
    """bob's user id and his live grant on orders-prod (a moved ticket needs both)."""
    [grant] = b.store.grants(user="bob", target="orders-prod", live_at=b.clock.now())
    return next(u.id for u in b.store.users() if u.name == "bob"), grant.id


EDITS: dict[str, Callable[[Bastion, int], tuple[str, tuple[Any, ...]]]] = {
    "moved to bob": lambda b, t: ("UPDATE tickets SET user_id = ?, grant_id = ? WHERE id = ?",
                                  (*_to_bob(b), t)),
    "stretched": lambda b, t: ("UPDATE tickets SET expires_at = ? WHERE id = ?",
                               (iso(b.clock.now() + timedelta(days=30)), t)),
    "unbound": lambda b, t: ("UPDATE tickets SET bind_address = NULL WHERE id = ?", (t,)),
}  # fmt: skip


@pytest.fixture(params=sorted(EDITS))
def edit(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_ticket_row_edited_without_the_key_opens_nothing(
    two: Bastion,  # noqa: F811
    edit: str,
) -> None:
    b = two
    token, row = mint(b, "alice", bind="127.0.0.1")
    opens(b, token, user="alice")  # as minted, it works
    _edit(b, *EDITS[edit](b, row.id))
    user = "bob" if edit == "moved to bob" else "alice"
    refused(b, token, "unknown", user=user)
    assert not b.store.sessions(user="bob")


def test_the_limits_are_under_the_mac_the_row_is_written_with(two: Bastion) -> None:  # noqa: F811
    _, row = mint(two, "alice")
    assert row.row_mac and "row_mac" not in row.public(two.clock.now())


def _one_time(b: Bastion, user: str = "alice") -> tuple[str, int]:
    """A one-time ticket issued after the user's own code, and its row id."""
    token, _ = b.core.identity.issue_ticket(user, "orders-prod", b.code(user), "test",
                                            timedelta(minutes=10))  # fmt: skip
    return token, max(t.id for t in b.store.tickets())


def test_a_one_time_ticket_row_moved_to_someone_else_opens_nothing(two: Bastion) -> None:  # noqa: F811
    """alice edits her own one-time ticket's row to bob's: it does not log her in as bob."""
    token, ticket = _one_time(two)
    bob, _ = _to_bob(two)
    _edit(two, "UPDATE tickets SET user_id = ? WHERE id = ?", (bob, ticket))
    refused(two, token, "key's MAC", user="bob")
    assert not two.store.sessions(user="bob")


def test_a_one_time_ticket_row_inserted_without_the_key_opens_nothing(two: Bastion) -> None:  # noqa: F811
    """A row written with the file alone, with a token's plain or keyed digest of the
    writer's choosing, is no ticket: the key's digest and MAC can't be made without it."""
    bob, _ = _to_bob(two)
    token = "bt_" + "x" * 32
    target = next(t.id for t in two.store.targets() if t.name == "orders-prod")
    until = iso(two.clock.now() + timedelta(minutes=10))
    for digest in (hashlib.sha256(token.encode()).hexdigest(), "0" * 64):
        _edit(two, "INSERT INTO tickets (user_id, target_id, token_sha256, created_at,"
              " expires_at, row_mac) VALUES (?, ?, ?, ?, ?, ?)",
              (bob, target, digest, iso(two.clock.now()), until, "0" * 64))  # fmt: skip
    refused(two, token, "unknown", user="bob")
    assert not two.store.sessions(user="bob")


def test_a_one_time_ticket_as_issued_opens_once(two: Bastion) -> None:  # noqa: F811
    token, _ = _one_time(two)
    opens(two, token, user="alice")
    refused(two, token, "used already", user="alice")  # spent
