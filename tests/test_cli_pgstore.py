"""The CLI on a store on PostgreSQL ([store] url): created, used and verified there, never
silently falling back to the SQLite file."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.audit import ChainKey, Store
from bastion.audit.location import PgLocation
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from tests import storeadmin
from tests.realssh import free_port, wait_for_banner
from tests.storeadmin import Admin
from tests.test_cli import Bastion, assert_error, assert_ok, assert_tampered, run_bastion
from tests.test_cli_query_log_verify import end, session, start

raw = storeadmin.raw


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
    backup = pg_bastion.json("store", "backup", "--to", str(pg_bastion.cwd / "copy.dump"))
    assert backup["format"] == "pg_dump custom" and backup["head_seq"] >= 2


def test_serve_on_postgresql_refuses_to_start_without_an_anchor_sink(pg_bastion: Bastion) -> None:
    pg_bastion.json("store", "create")
    assert_error(pg_bastion.run("serve"), Exit.CONFIG, "audit.anchors", "cannot see a tail")


def test_serve_on_postgresql_with_an_anchor_sink_serves_and_anchors_its_head(
    pg_bastion: Bastion,
) -> None:
    pg_bastion.json("store", "create")
    anchors = pg_bastion.home / "anchors.log"
    config = pg_bastion.config
    text = config.read_text().replace("\nanchors = []\n", f'\nanchors = ["file:{anchors}"]\n')
    config.write_text(text)
    pg_bastion.set_web_port(free_port())
    ssh = free_port()
    pg_bastion.set_port("ssh", ssh)
    proc = subprocess.Popen(
        pg_bastion.argv("serve"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_banner("127.0.0.1", ssh, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert anchors.read_text().strip()  # signed heads went to the sink
    kinds = pg_bastion.kinds()
    assert "bastion.started" in kinds and "bastion.stopped" in kinds, kinds
    assert_ok(pg_bastion.run("audit", "verify"))


def test_audit_verify_on_postgresql_checks_each_statement_row_against_its_commit(
    pg_bastion: Bastion, raw: Callable[[Store], Admin]
) -> None:
    """The query log's rows on a store on PostgreSQL are checked against the commit events
    that bind them (once refused there as "cannot be checked"): an edited row is named."""
    pg_bastion.json("store", "create")
    config = load_config(pg_bastion.config)
    key = ChainKey.of(SecretBox.load(config.paths.secrets_key))
    store = Store.open(config.store.location(pg_bastion.config), SystemClock(), key)
    session(store)
    store.write_batch([start("q1", "SELECT email FROM customers", kind="SELECT"),
                       end("q1", 2, "SELECT 2"),
                       start("q2", "DROP TABLE t", kind="DROP")])  # fmt: skip
    store.write_batch([end("q2", 0, "DROP TABLE")])
    assert "intact" in assert_ok(pg_bastion.run("audit", "verify")).stdout
    raw(store).execute("UPDATE queries SET command_tag = 'SELECT 0' WHERE query_key = 'q2'")
    store.close()
    said = "statement q2 in the query log differs from its chained commit (its outcome)"
    assert_tampered(pg_bastion.run("audit", "verify"), "QUERY LOG EDITED", said)
