"""The store's cancel_keys: one owner per pid across nodes, no secret, rows gone at the end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bastion.audit import CancelOwner, Store
from bastion.clock import FakeClock
from bastion.errors import StoreError


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "bastion.db", FakeClock())


def test_a_pid_held_by_one_node_cannot_be_claimed_by_another(store: Store) -> None:
    assert store.claim_cancel_pid(4242, "a", "10.0.0.1:6432", "s-a")
    assert not store.claim_cancel_pid(4242, "b", "10.0.0.2:6432", "s-b")  # a collision
    assert not store.claim_cancel_pid(4242, "a", "10.0.0.1:6432", "s-a2")  # even on a
    assert store.cancel_owner(4242) == CancelOwner("a", "10.0.0.1:6432")


def test_a_released_pid_names_nothing_and_a_late_release_spares_the_next_owner(
    store: Store,
) -> None:
    store.claim_cancel_pid(7, "a", "10.0.0.1:6432", "s-a")
    store.release_cancel_pid(7, "a", "s-a")
    assert store.cancel_owner(7) is None
    assert store.claim_cancel_pid(7, "b", "10.0.0.2:6432", "s-b")  # b draws the same pid
    store.release_cancel_pid(7, "a", "s-a")  # a's session ends again, late: b's row stays
    assert store.cancel_owner(7) == CancelOwner("b", "10.0.0.2:6432")


def test_a_starting_node_clears_only_its_own_rows(store: Store) -> None:
    store.claim_cancel_pid(1, "a", "10.0.0.1:6432", "s1")
    store.claim_cancel_pid(2, "a", "10.0.0.1:6432", "s2")
    store.claim_cancel_pid(3, "b", "10.0.0.2:6432", "s3")
    assert store.clear_cancel_pids("a") == 2
    assert (store.cancel_owner(1), store.cancel_owner(2)) == (None, None)
    assert store.cancel_owner(3) == CancelOwner("b", "10.0.0.2:6432")


def test_the_store_holds_no_secret_half_of_a_key(store: Store, tmp_path: Path) -> None:
    """An admin with the store's file learns pids and nodes, never what cancels a query."""
    store.claim_cancel_pid(99, "a", "10.0.0.1:6432", "s1")
    conn = sqlite3.connect(tmp_path / "bastion.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(cancel_keys)")]
    conn.close()
    assert columns == ["pid", "node", "address", "session_id", "claimed_at"]


def test_pids_outside_the_protocols_range_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match=r"(?i)check constraint"):
        store.claim_cancel_pid(0, "a", "10.0.0.1:6432", "s1")
    with pytest.raises(StoreError, match=r"(?i)check constraint"):
        store.claim_cancel_pid(2**31, "a", "10.0.0.1:6432", "s1")
