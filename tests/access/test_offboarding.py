"""Offboarding: one person disables another, at every door (the CLI and the console call
bastion/access/offboarding.py); nobody disables themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.access.offboarding import offboard
from bastion.audit import Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.errors import Denied


def test_an_admin_cannot_disable_themselves_and_another_can(
    store_at: Path | PgLocation,
) -> None:
    store = Store.create(store_at, FakeClock())
    for name in ("ada", "bob"):
        store.add_user(name, "admin", None, os.urandom(8), "cli:root")
    with pytest.raises(Denied, match="cannot disable yourself"):
        offboard(store, "ada", "ada", "leaving")
    assert store.user("ada").disabled_at is None
    counts = offboard(store, "ada", "bob", "left the company")
    assert store.user("ada").disabled_at is not None and counts["grants_revoked"] == 0
