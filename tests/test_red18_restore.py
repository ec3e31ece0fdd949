"""Red team (issue 18): a chained restore must not become a standing excuse for later deletions.

A restore explains the witnesses (anchors, review packs) written before it. "Before" is judged
by the restore event's own time, which the host's clock gives: an admin who restores with the
clock set ahead would make every later anchor look older than the restore, so any deletion
afterwards would be explained by it, silently.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest

from bastion.cli import build_parser
from bastion.clock import FakeClock
from bastion.commands.app import App
from bastion.commands.store import store_restore
from tests import test_cli
from tests.test_cli import assert_tampered, configure_anchors, serve_once, tamper_tail
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
