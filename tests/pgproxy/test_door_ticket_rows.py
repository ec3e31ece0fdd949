"""Reusable tickets against an admin with the store file but not the key: a ticket row moved
to someone else, stretched past its end or unbound from its address is no ticket (refused
as an unknown one), while the row as minted opens connections."""

from __future__ import annotations

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
