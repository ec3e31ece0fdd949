"""`bastion report weekly`, run as a real process on a bastion made by `bastion init`: a week
of activity becomes a signed pack in every format, recorded for review, verifiable offline."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bastion.audit import ChainKey, Store
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from tests import test_cli
from tests.reports.test_gather import at, build_week
from tests.test_cli import Bastion, assert_error, assert_ok

pristine = test_cli.pristine
bst = test_cli.bst


def fill_week(bst: Bastion) -> None:
    """Write week 2026-W47 into the bastion's own (keyed) store, at that week's times."""
    config = load_config(bst.config)
    clock = FakeClock(at(9, 9))
    key = ChainKey.of(SecretBox.load(config.paths.secrets_key))
    build_week(bst.home, Store.open(bst.db, clock, key), clock)
    config_text = bst.config.read_text()
    bst.config.write_text(
        config_text.replace('timezone = "UTC"', 'timezone = "Europe/Amsterdam"', 1)
    )


def test_a_week_becomes_a_signed_pack_in_every_format(bst: Bastion) -> None:
    fill_week(bst)
    out = json.loads(assert_ok(bst.run("report", "weekly", "--week", "2026-W47", "--json")).stdout)
    pack = Path(out["directory"])
    assert pack == bst.home / "reports" / "2026-W47"
    names = {p.name for p in pack.iterdir()}
    assert {"report.html", "report.json", "evidence.db", "findings.csv", "sessions.csv",
            "manifest.json", "manifest.sig"} <= names  # fmt: skip
    report = json.loads((pack / "report.json").read_text())
    rules = {f["rule"] for f in report["findings"]}
    assert {"break_glass", "destructive_command", "destructive_statement", "lockout",
            "unused_grant", "interrupted_session", "many_addresses"} <= rules  # fmt: skip
    assert out["findings"] == len(report["findings"]) > 0
    assert report["provenance"]["verification"]["chain"] == "intact"
    assert "people" in out["summary"] and "alice" not in out["summary"]  # counts, no names
    with sqlite3.connect(pack / "evidence.db") as db:
        assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (5,)
    assert "intact" in assert_ok(bst.run("report", "verify", str(pack))).stdout
    listed = json.loads(assert_ok(bst.run("report", "findings", "2026-W47", "--json")).stdout)
    assert len(listed) == out["findings"]  # recorded for review, one row a finding


def test_an_edited_pack_no_longer_verifies_and_the_file_is_named(bst: Bastion) -> None:
    fill_week(bst)
    assert_ok(bst.run("report", "weekly", "--week", "2026-W47"))
    pack = bst.home / "reports" / "2026-W47"
    csv = pack / "sessions.csv"
    csv.write_bytes(csv.read_bytes().replace(b"s-night", b"s-nite"))
    result = bst.run("report", "verify", str(pack))
    assert result.returncode != 0 and "sessions.csv" in result.stderr + result.stdout


def test_a_week_that_has_not_ended_is_refused(bst: Bastion) -> None:
    assert_error(bst.run("report", "weekly", "--week", "2030-W01"), Exit.USAGE, "has not ended yet")


@pytest.mark.parametrize(("edit", "said"), [
    ("UPDATE queries SET sql = 'SELECT 1', statement_kind = 'SELECT' WHERE sql LIKE 'DROP%'",
     "differs from its chained commit"),
    ("DELETE FROM queries WHERE sql LIKE 'DROP%'", "was deleted (or renumbered)"),
])  # fmt: skip
def test_a_query_log_edited_without_the_key_is_a_high_finding(
    bst: Bastion, edit: str, said: str
) -> None:
    """The review reads the editable query log: an admin with the files who rewrites or
    deletes a DROP there (the chain untouched) is caught against the event of its commit."""
    fill_week(bst)
    with sqlite3.connect(bst.db) as db:
        db.execute(edit)
    out = json.loads(assert_ok(bst.run("report", "weekly", "--week", "2026-W47", "--json")).stdout)
    report = json.loads((Path(out["directory"]) / "report.json").read_text())
    assert said in report["provenance"]["verification"]["chain"]
    failed = [f for f in report["findings"] if f["rule"] == "verification_failed"]
    assert failed and failed[0]["severity"] == "high"
