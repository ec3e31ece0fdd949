"""A restore of the embedded store: it names the decisions it undoes (an offboarding made
after the backup is back once restored), and a restore that crashed between its renames stops
every command and `serve` until an operator has put the files right."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bastion.errors import Exit
from tests import test_cli
from tests.test_cli import DEADLINE, assert_error, assert_ok
from tests.test_cli_requests import People, people

pristine = test_cli.pristine
bst = test_cli.bst
__all__ = ["people"]


def test_a_restore_names_each_decision_it_undoes(people: People, tmp_path: Path) -> None:
    """alice is offboarded and bob's TOTP reset after the backup: the restore brings both
    back. It says so, event by event, in its output and in the chained restore event."""
    bst = people.bst
    backup = tmp_path / "b.db"
    kept = bst.json("store", "backup", "--to", str(backup))["head_seq"]
    bst.add_user("erin", "--no-qr")  # not a decision: not listed
    assert_ok(bst.run("user", "disable", "alice", "--reason", "left the company"))
    assert_ok(bst.run("user", "reset-totp", "carol", "--no-qr"))
    restored = bst.json("store", "restore", str(backup), "--as", "bob", "--reason", "drill",
                        input=people.code("bob"))  # fmt: skip
    undone = [(u["kind"], u["subject"]) for u in restored["undone"]]
    assert undone == [("user.disabled", "alice"), ("user.totp_reset", "carol")], undone
    assert all(u["seq"] > kept for u in restored["undone"])
    event = next(e for e in bst.events() if e["kind"] == "store.restored")
    assert [u["kind"] for u in event["detail"]["undone"]] == ["user.disabled", "user.totp_reset"]
    assert event["detail"]["undone_count"] == 2
    alice = next(u for u in bst.json("user", "list") if u["name"] == "alice")
    assert alice["state"] == "active"  # what the restore said: it is back, redo it


def test_the_restore_text_tells_the_operator_to_redo_them(people: People, tmp_path: Path) -> None:
    bst = people.bst
    backup = tmp_path / "b.db"
    bst.json("store", "backup", "--to", str(backup))
    assert_ok(bst.run("user", "disable", "alice", "--reason", "left the company"))
    out = assert_ok(bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "drill",
                            input=people.code("bob"))).stdout  # fmt: skip
    assert "1 decision(s) made after the backup are undone by this restore; redo" in out
    assert "user.disabled alice" in out


def crashed_mid_swap(db: Path, tmp_path: Path) -> None:
    """The files as a restore killed inside its swap leaves them: the store moved aside, its
    log not yet, and the restored copy still under its temporary name."""
    (db.parent / f"{db.name}.restoring").write_bytes(db.read_bytes())
    os.rename(db, db.with_name(f"{db.name}.before-restore-20261207T120000"))
    db.with_name(db.name + "-wal").write_bytes(b"\0" * 32)


def test_a_restore_that_crashed_mid_swap_stops_every_command_and_serve(
    people: People, tmp_path: Path
) -> None:
    bst = people.bst
    crashed_mid_swap(bst.db, tmp_path)
    for argv in (("user", "list"), ("audit", "verify"), ("serve",)):
        result = bst.run(*argv)
        assert_error(result, Exit.STORE, "bastion.db.restoring", "stopped half-way", "remove")
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # The operator does what the line says; the store is whole again.
    aside = bst.db.with_name("bastion.db.before-restore-20261207T120000")
    os.rename(aside, bst.db)
    bst.db.with_name("bastion.db.restoring").unlink()
    bst.db.with_name("bastion.db-wal").unlink()
    assert_ok(bst.run("audit", "verify"))


def test_a_lone_write_ahead_log_is_never_opened_as_a_store(people: People, tmp_path: Path) -> None:
    bst = people.bst
    os.rename(bst.db, tmp_path / "elsewhere.db")
    bst.db.with_name("bastion.db-wal").write_bytes(b"\0" * 32)
    result = bst.run("user", "list")
    assert_error(result, Exit.STORE, "bastion.db-wal is there without", "never opened")
    assert not bst.db.exists()
    proc = subprocess.run(bst.argv("serve"), capture_output=True, text=True, cwd=bst.cwd,
                          env=test_cli.child_env(), timeout=DEADLINE, check=False)  # fmt: skip
    assert proc.returncode == Exit.STORE and "without" in proc.stderr, proc.stderr
    assert not bst.db.exists()
