"""An insider with the database but not the chain key moves a sink's cursor by hand, to hide
events from the SIEM (or to let retention cut them before the SIEM has them): the cursor's
MAC no longer holds, the sink gets every event anyway, and the move is chained and shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.audit import Store
from tests.export.test_file_sink import lines_of
from tests.export.test_syslog_outage import activity, caught_up, chained, wait_until
from tests.harness import Bastion
from tests.test_cli import run_bastion

pytestmark = pytest.mark.both_stores


def hand_edit(b: Bastion, sql: str) -> None:
    """The DBA's edit: the store opened without the chain key, one UPDATE."""
    outsider = Store.open(b.store_at, b.clock)
    try:
        with outsider._write(chained=False) as conn:
            conn.execute(sql)
    finally:
        outsider.close()


def file_bastion(tmp_path: Path) -> tuple[Bastion, Path]:
    path = tmp_path / "export" / "audit.jsonl"
    path.parent.mkdir()
    return Bastion(tmp_path / "bastion", f'[export.trail]\nkind = "file"\npath = "{path}"\n'), path


def test_a_cursor_moved_forward_by_hand_hides_nothing(tmp_path: Path) -> None:
    b, path = file_bastion(tmp_path)
    b.start()
    try:
        activity(b, range(0, 4))
        caught_up(b, "trail", "the file")
        hand_edit(b, "UPDATE export_cursors SET delivered_seq = delivered_seq + 1000")
        activity(b, range(4, 8))
        wait_until(lambda: b.events("export.cursor_tampered"), "the tampering to be chained")
        caught_up(b, "trail", "the rest")
    finally:
        b.stop()
    (tampered,) = [e for e in chained(b) if e.kind == "export.cursor_tampered"]
    assert tampered.severity == "high" and json.loads(tampered.detail)["found_seq"] > 1000
    written = [line["seq"] for line in lines_of(path, 1)]
    assert written == list(range(1, len(written) + 1))  # each once, in order, none skipped
    assert len(written) >= len(chained(b)) - 1  # bastion.stopped: chained as the feed stops


def test_export_status_shows_a_cursor_moved_by_hand(tmp_path: Path) -> None:
    b, _ = file_bastion(tmp_path)
    b.start()
    try:
        activity(b, range(0, 3))
        caught_up(b, "trail", "the file")
    finally:
        b.stop()
    home = ("--config", str(b.home / "bastion.toml"))
    done = run_bastion(*home, "export", "status", "--json", cwd=b.home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["intact"] is True
    hand_edit(b, "UPDATE export_cursors SET delivered_seq = delivered_seq + 2")
    done = run_bastion(*home, "export", "status", cwd=b.home)
    assert "MOVED OUTSIDE THE BASTION" in done.stdout, done.stdout + done.stderr
    status = json.loads(run_bastion(*home, "export", "status", "--json", cwd=b.home).stdout)
    assert status[0]["intact"] is False
