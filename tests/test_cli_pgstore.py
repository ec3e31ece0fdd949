"""The CLI on a store on PostgreSQL ([store] url): created, used and verified there, never
silently falling back to the SQLite file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bastion.audit.location import PgLocation
from bastion.errors import Exit
from tests.test_cli import Bastion, assert_error, assert_ok, run_bastion


@pytest.fixture
def pg_bastion(tmp_path: Path, pg_store_at: PgLocation) -> Bastion:
    """`bastion init`, then [store] pointed at an empty PostgreSQL database; no SQLite file."""
    assert_ok(run_bastion("init", str(tmp_path / "b"), cwd=tmp_path))
    home = tmp_path / "b"
    (home / "bastion.db").unlink()
    assert pg_store_at.password_file is not None
    shutil.copy2(pg_store_at.password_file, home / "store.password")
    config = home / "bastion.toml"
    text = config.read_text(encoding="utf-8").replace(
        "[store]\n", f'[store]\nurl = "{pg_store_at.url}"\npassword_file = "store.password"\n', 1
    )
    config.write_text(text.replace('\nurl = ""\n', "\n").replace('\npassword_file = ""\n', "\n"))
    return Bastion(home=home, cwd=tmp_path)


def test_a_store_on_postgresql_is_created_used_and_verified_there(pg_bastion: Bastion) -> None:
    assert_error(pg_bastion.run("user", "list"), Exit.STORE, "no tables", "bastion store create")
    made = pg_bastion.json("store", "create")
    assert made["store"].startswith("postgresql://") and made["schema_version"] > 20
    assert_error(pg_bastion.run("store", "create"), Exit.STORE, "exists already")
    pg_bastion.add_user("alice", role="admin")
    assert pg_bastion.kinds()[:2] == ["store.created", "user.added"]
    assert_ok(pg_bastion.run("audit", "verify"))
    assert (pg_bastion.home / "store.head").exists()
    assert not (pg_bastion.home / "bastion.db").exists()  # never fell back to the file
    backup = pg_bastion.run("store", "backup", "--to", str(pg_bastion.cwd / "copy.db"))
    assert_error(backup, Exit.STORE, "pg_dump")
