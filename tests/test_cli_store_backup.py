"""`bastion store backup` and `bastion store restore` as real processes: the drill an operator
runs (back up, lose the store, restore, `audit verify` passes with the loss shown), and the
restores that must be refused without changing anything."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.errors import Exit
from tests import test_cli
from tests.realssh import free_port
from tests.test_cli import (
    DEADLINE,
    Bastion,
    assert_error,
    assert_ok,
    assert_tampered,
    child_env,
    close_pipes,
    configure_anchors,
    mode_of,
    serve_once,
    tamper,
    tamper_tail,
    wait_for_health,
)
from tests.test_cli_requests import People, people

pristine = test_cli.pristine
bst = test_cli.bst
__all__ = ["people"]

SIDECARS = ("", "-wal", "-shm", ".head")


def lose_the_store(db: Path) -> None:
    for sidecar in SIDECARS:
        Path(f"{db}{sidecar}").unlink(missing_ok=True)


def names(bst: Bastion) -> set[str]:
    return {user["name"] for user in bst.json("user", "list")}


@pytest.fixture
def anchored(people: People, tmp_path: Path) -> Iterator[tuple[People, Path]]:
    other_mount = tmp_path / "other-mount"
    other_mount.mkdir()
    anchors = other_mount / "anchors.log"
    configure_anchors(people.bst, f"file:{anchors}")
    yield people, anchors


def test_the_drill_back_up_lose_the_store_restore_and_verify(
    anchored: tuple[People, Path], tmp_path: Path
) -> None:
    people, anchors = anchored
    bst = people.bst
    serve_once(bst)
    backup = tmp_path / "nightly.db"
    made = bst.json("store", "backup", "--to", str(backup))
    assert mode_of(backup) == 0o600 and made["head_seq"] == bst.events()[-1]["seq"]
    kept = made["head_seq"]
    bst.add_user("erin", "--no-qr")  # written after the backup: lost in the restore
    serve_once(bst)
    last = bst.events()[-1]["seq"]
    assert_ok(bst.run("audit", "verify"))

    lose_the_store(bst.db)
    restored = bst.json("store", "restore", str(backup), "--as", "bob", "--reason",
                        "the disk died", input=people.code("bob"))  # fmt: skip
    assert restored["kept_seq"] == kept and restored["lost_seq"] == last
    assert restored["restore_seq"] == kept + 1
    where = {w["where"] for w in restored["witnesses"]}
    assert where == {f"anchors in {anchors}"}  # the store and its head file were lost
    assert "erin" not in names(bst) and {"alice", "bob"} <= names(bst)
    event = next(e for e in bst.events() if e["kind"] == "store.restored")
    assert event["seq"] == kept + 1 and event["actor"] == "bob"
    assert event["detail"]["reason"] == "the disk died"

    verified = assert_ok(bst.run("audit", "verify"))
    assert "audit chain intact" in verified.stdout
    assert "RESTORED: the store was restored" in verified.stdout
    assert f"events {kept + 1} to {last} were lost" in verified.stdout
    # Life goes on: new anchors name the same seq numbers as the lost ones, and both agree.
    bst.add_user("frank", "--no-qr")
    serve_once(bst)
    assert_ok(bst.run("audit", "verify"))
    assert json.loads(assert_ok(bst.run("audit", "verify", "--json")).stdout)["restores"]


def test_a_deletion_after_a_restore_still_shows(
    anchored: tuple[People, Path], tmp_path: Path
) -> None:
    """A restore explains only what was anchored before it: a tail deleted afterwards fails."""
    people, _ = anchored
    bst = people.bst
    backup = tmp_path / "b.db"
    bst.json("store", "backup", "--to", str(backup))
    bst.add_user("erin", "--no-qr")
    serve_once(bst)
    bst.json("store", "restore", str(backup), "--as", "bob", "--reason", "drill",
             input=people.code("bob"))  # fmt: skip
    serve_once(bst)
    keep = bst.events()[-1]["seq"] - 3
    tamper_tail(bst.db, keep=keep)
    assert_tampered(bst.run("audit", "verify"), "deleted from the end")


def test_restore_refuses_and_changes_nothing(people: People, tmp_path: Path) -> None:
    bst = people.bst
    backup = tmp_path / "b.db"
    bst.json("store", "backup", "--to", str(backup))
    bst.add_user("erin", "--no-qr")
    before = bst.db.read_bytes()

    def refused(result: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
        assert_error(result, code, needle)
        assert bst.db.read_bytes() == before and "erin" in names(bst)
        assert not list(bst.home.glob("*.restoring*")) and not list(bst.home.glob("*before*"))

    refused(bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "x",
                    input="000000\n"), Exit.DENIED, "code")  # fmt: skip
    refused(bst.run("store", "restore", str(backup), "--as", "alice", "--reason", "x",
                    input=people.code("alice")), Exit.DENIED, "only an admin")  # fmt: skip
    refused(bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "  "),
            Exit.USAGE, "--reason")  # fmt: skip
    tamper(backup, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    refused(bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "x",
                    input=people.code("bob")), Exit.STORE, "does not verify")  # fmt: skip
    assert_error(bst.run("store", "backup", "--to", str(backup)), Exit.STORE, "exists already")


def test_backup_runs_beside_serve_and_restore_waits_for_none(
    people: People, tmp_path: Path
) -> None:
    bst = people.bst
    port = free_port()
    bst.set_web_port(port)
    proc = subprocess.Popen(bst.argv("serve"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=bst.cwd, env=child_env())  # fmt: skip
    try:
        wait_for_health(proc, port, bst.home / "tls" / "bastion-ca.pem")
        backup = tmp_path / "live.db"
        made = bst.json("store", "backup", "--to", str(backup))
        assert made["events"] == made["head_seq"] > 0
        busy = bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "x",
                       input=people.code("bob"))  # fmt: skip
        assert_error(busy, Exit.CONFLICT, "stop every `bastion serve`")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=DEADLINE)
        close_pipes(proc)
    assert not list(bst.home.glob("*.restoring*"))
