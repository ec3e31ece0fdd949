"""Red team (issue 18): a chained restore must not become a standing excuse for later deletions.

A restore explains the witnesses (anchors, review packs) written before it. "Before" is judged
by the restore event's own time, which the host's clock gives: an admin who restores with the
clock set ahead would make every later anchor look older than the restore, so any deletion
afterwards would be explained by it, silently.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest

from bastion.cli import build_parser
from bastion.clock import FakeClock
from bastion.commands.app import App
from bastion.commands.store import store_restore
from bastion.errors import Conflict
from tests import test_cli
from tests.test_cli import (
    DEADLINE,
    assert_tampered,
    child_env,
    configure_anchors,
    serve_once,
    tamper_tail,
)
from tests.test_cli_requests import People, people

pristine = test_cli.pristine
bst = test_cli.bst
__all__ = ["people"]


def restore_with_the_clock_at(
    people: People, backup: Path, when: datetime, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """`bastion store restore` run by an admin on a host whose clock says `when`."""
    bst = people.bst
    argv = ["--config", str(bst.config), "store", "restore", str(backup), "--as", "bob",
            "--reason", "drill", "--json"]  # fmt: skip
    args = build_parser().parse_args(argv)
    code = pyotp.TOTP(people.secrets["bob"]).at(when)
    monkeypatch.setattr(sys, "stdin", io.StringIO(code + "\n"))
    out = io.StringIO()
    app = App(bst.config, as_json=True, out=out, clock=FakeClock(when))
    assert store_restore(app, args) == 0
    found: dict[str, object] = json.loads(out.getvalue())
    return found


def test_red18_a_restore_dated_ahead_never_explains_a_later_deletion(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bst = people.bst
    other_mount = tmp_path / "other-mount"
    other_mount.mkdir()
    configure_anchors(bst, f"file:{other_mount / 'anchors.log'}")
    backup = tmp_path / "b.db"
    bst.json("store", "backup", "--to", str(backup))
    bst.add_user("erin", "--no-qr")
    serve_once(bst)
    ahead = datetime.now(UTC) + timedelta(days=365)
    restored = restore_with_the_clock_at(people, backup, ahead, monkeypatch)
    # Life goes on, anchored in real time (before the restore's own date) ...
    bst.add_user("frank", "--no-qr")
    serve_once(bst)
    # ... and everything after the restore is deleted from the end: anchors name it.
    tamper_tail(bst.db, keep=int(str(restored["restore_seq"])))
    assert_tampered(bst.run("audit", "verify"))


def test_red18_an_offboarding_during_a_restore_is_never_lost_silently(
    people: People, tmp_path: Path
) -> None:
    """`store restore` holds the store alone only against `serve`: an admin's CLI command run
    while the restore waits for its TOTP code writes into the store being moved aside, says it
    worked, and the restored store never learns of it (here: an offboarded engineer is back)."""
    bst = people.bst
    backup = tmp_path / "b.db"
    bst.json("store", "backup", "--to", str(backup))
    restoring = bst.db.with_name(bst.db.name + ".restoring")
    proc = subprocess.Popen(
        bst.argv("store", "restore", str(backup), "--as", "bob", "--reason", "drill"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=bst.cwd, env=child_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE
        while not restoring.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until the restore is under way (it then waits for the code)
        offboard = bst.run("user", "disable", "alice", "--reason", "left the company")
        _, err = proc.communicate(people.code("bob"), timeout=DEADLINE)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE)
    alice = next(u for u in bst.json("user", "list") if u["name"] == "alice")
    # Either the offboarding waited for (or was refused during) the restore, or it holds now.
    assert offboard.returncode != 0 or alice["state"] == "disabled", (offboard.stdout, alice)


def test_red18_verify_names_every_event_a_restore_lost_not_only_those_it_admitted(
    people: People, tmp_path: Path
) -> None:
    """The restorer decides which witnesses the restore reads (--anchors, the store and head
    file moved away first): shown none, it chains "no witness named a later event", and
    verify then explains every older anchor by it and repeats that nothing was lost."""
    bst = people.bst
    other_mount = tmp_path / "other-mount"
    other_mount.mkdir()
    configure_anchors(bst, f"file:{other_mount / 'anchors.log'}")
    backup = tmp_path / "b.db"
    kept = bst.json("store", "backup", "--to", str(backup))["head_seq"]
    bst.add_user("erin", "--no-qr")
    serve_once(bst)
    last = bst.events()[-1]["seq"]
    for sidecar in ("", "-wal", "-shm", ".head"):
        Path(f"{bst.db}{sidecar}").unlink(missing_ok=True)
    bst.json("store", "restore", str(backup), "--as", "bob", "--reason", "the disk died",
             "--anchors", str(tmp_path / "elsewhere.log"), input=people.code("bob"))  # fmt: skip
    verified = bst.run("audit", "verify")  # fails closed, naming the unadmitted loss
    assert_tampered(verified, f"event {last} was witnessed", "did not see every witness")
    assert kept < last


def test_red18_a_second_restore_in_the_same_second_keeps_the_first_replaced_store(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore never deletes: the store it replaces is moved aside under the restore's
    second. A second restore within that second (a script, a retry) must not move its own
    replaced store over the first one, which alone holds the events the backup lost."""
    bst = people.bst
    backup = tmp_path / "b.db"
    bst.json("store", "backup", "--to", str(backup))
    bst.add_user("erin", "--no-qr")  # only in the store the first restore replaces
    when = datetime.now(UTC).replace(microsecond=0)
    restore_with_the_clock_at(people, backup, when, monkeypatch)
    with contextlib.suppress(Conflict):  # refusing the second restore is right too
        restore_with_the_clock_at(people, backup, when + timedelta(microseconds=1), monkeypatch)
    asides = [p for p in bst.home.glob("bastion.db.before-restore-*") if p.suffix != ".head"]
    assert any(b"erin" in p.read_bytes() for p in asides), asides
