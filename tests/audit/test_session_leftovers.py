"""A session's close takes what it still has to store (its last commands and file operations,
its cancel key's release) into its own one transaction, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.audit import CommandLine, FileOp, Leftovers, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.errors import Conflict

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(store_at: Path | PgLocation) -> Iterator[Store]:
    made = Store.create(store_at, FakeClock(START))
    made.add_user("alice", "engineer", None, b"seed", "test")
    made.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="x",
                    database=None, secret_sealed=b"s", actor="test")  # fmt: skip
    made.open_session(session_id="s-1", user="alice", target="web-1", grant_id=None,
                      protocol="ssh", client_addr="127.0.0.1", node="a")  # fmt: skip
    yield made
    made.close()


def test_the_close_stores_the_last_activity_and_releases_the_cancel_key(store: Store) -> None:
    assert store.claim_cancel_pid(9, "a", "127.0.0.1:6432", "s-1")
    store.log_activity("s-1", [CommandLine(START, 0, "ls")], [])
    last = Leftovers([CommandLine(START, 0, "exit")], [FileOp(START, "stream", "stdout")],
                     cancel=(9, "a"))  # fmt: skip
    store.close_session("s-1", "closed", "client closed", last=last)
    assert [c.text for c in store.commands("s-1")] == ["ls", "exit"]
    assert [o.path for o in store.file_ops("s-1")] == ["stdout"]
    assert store.cancel_owner(9) is None
    assert store.session("s-1").ended_at is not None
    assert [e.kind for e in store.events()].count("session.closed") == 1
    assert store.verify_chain().ok


def test_a_session_closed_already_keeps_the_leftovers_and_is_not_closed_twice(
    store: Store,
) -> None:
    store.claim_cancel_pid(9, "a", "127.0.0.1:6432", "s-1")
    store.close_session("s-1", "interrupted", "closed by another node")
    last = Leftovers([CommandLine(START, 0, "exit")], cancel=(9, "a"))
    with pytest.raises(Conflict, match="closed already"):
        store.close_session("s-1", "closed", "client closed", last=last)
    assert [c.text for c in store.commands("s-1")] == ["exit"]
    assert store.cancel_owner(9) is None
    assert store.session("s-1").state == "interrupted"
    assert [e.kind for e in store.events()].count("session.closed") == 1
