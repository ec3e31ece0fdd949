"""Reviewers leave events: `queries list` is chained before a row of the query log is shown (or
refused), `audit verify` and `report verify` chain their result, and the weekly review's
reviewer table shows all three; the verifications show progress on a terminal only."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import timedelta
from typing import Any

import pytest

from bastion.audit import ChainKey, Event, Store
from bastion.audit.base import PROGRESS_EVERY
from bastion.clock import SystemClock, parse_iso
from bastion.commands.audit import STATEMENT_KINDS
from bastion.config import load_config
from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from bastion.reports.gather import gather
from bastion.reports.model import Verification
from bastion.reports.week import week_of, zone
from tests import test_cli
from tests.reports.test_weekly_cli import fill_week
from tests.test_cli import Bastion, assert_error, assert_ok, assert_tampered, child_env, tamper

pristine = test_cli.pristine
bst = test_cli.bst

STATEMENTS = ("DELETE FROM invoices", "DROP TABLE old_invoices", "SELECT * FROM invoices")


def keyed_store(bst: Bastion) -> Store:
    config = load_config(bst.config)
    return Store.open(bst.db, SystemClock(), ChainKey.of(SecretBox.load(config.paths.secrets_key)))


def chained(bst: Bastion, *kinds: str) -> list[dict[str, Any]]:
    """The chain's events of these kinds, read from the store (`audit tail` would add one)."""
    store = keyed_store(bst)
    try:
        return [e.as_dict() for e in store.events() if e.kind in kinds]
    finally:
        store.close()


def last(bst: Bastion, kind: str) -> dict[str, Any]:
    return chained(bst, kind)[-1]


# --- queries list ---------------------------------------------------------------------------


def test_listing_the_query_log_is_chained_with_its_filters_and_count_never_the_text(
    bst: Bastion,
) -> None:
    fill_week(bst)
    listed = bst.json("queries", "list", "--user", "alice", "--grep", "invoices")
    assert sorted(row["sql"] for row in listed) == sorted(STATEMENTS)
    event = last(bst, "queries.listed")
    assert event["actor"].startswith("cli:") and event["subject"] == "alice"
    assert event["detail"]["filters"] == {"user": "alice", "grep": "invoices", "limit": 200}
    assert event["detail"]["rows"] == 3
    assert event["detail"]["ids"] == [min(r["id"] for r in listed), max(r["id"] for r in listed)]
    assert not any(text in json.dumps(event) for text in STATEMENTS)
    assert_ok(bst.run("queries", "list", "--target", "db-1", "--since", "3650d"))  # as text too
    event = last(bst, "queries.listed")
    assert set(event["detail"]["filters"]) == {"target", "since", "limit"}
    assert event["detail"]["rows"] == 4
    assert_ok(bst.run("audit", "verify"))  # the events extend the chain as any other


@pytest.mark.parametrize("how", ["ABORT, 'no trace wanted'", "IGNORE"])
def test_a_listing_that_cannot_be_recorded_is_not_shown(bst: Bastion, how: str) -> None:
    """An insider who stops the event being written (a trigger that refuses it, or one that
    drops it silently) gets one line and no row of the query log."""
    fill_week(bst)
    with sqlite3.connect(bst.db) as db:
        db.execute(
            "CREATE TRIGGER hide BEFORE INSERT ON audit_events WHEN NEW.kind = 'queries.listed'"
            f" BEGIN SELECT RAISE({how}); END"
        )
    for flags in ((), ("--json",)):
        result = bst.run("queries", "list", *flags)
        assert_error(result, Exit.STORE, "the query log is not shown")
        assert result.stdout == ""
        assert not any(text in result.stderr for text in STATEMENTS)
    assert not chained(bst, "queries.listed")


def test_the_chain_s_statement_events_shown_by_audit_tail_are_a_reading_too(
    bst: Bastion,
) -> None:
    """`audit tail` prints the statements' events (their text, the server's messages): the
    query log read another way leaves the same event, written before they are shown."""
    fill_week(bst)
    tail = assert_ok(bst.run("audit", "tail", "-n", "500", "--json"))
    shown = [json.loads(line) for line in tail.stdout.splitlines()]
    statements = [e["seq"] for e in shown if e["kind"] in STATEMENT_KINDS]
    assert statements
    event = last(bst, "queries.listed")
    assert event["detail"] == {"filters": {"via": "audit tail", "lines": 500},
                               "rows": len(statements),
                               "seqs": [min(statements), max(statements)]}  # fmt: skip
    count = len(chained(bst, "queries.listed"))
    assert_ok(bst.run("audit", "tail", "-n", "1"))  # the last event is no statement
    assert len(chained(bst, "queries.listed")) == count
    with sqlite3.connect(bst.db) as db:
        db.execute(
            "CREATE TRIGGER hide BEFORE INSERT ON audit_events WHEN NEW.kind = 'queries.listed'"
            " BEGIN SELECT RAISE(IGNORE); END"
        )
    refused = bst.run("audit", "tail", "-n", "500")
    assert_error(refused, Exit.STORE, "the query log is not shown")
    assert refused.stdout == ""


# --- audit verify and report verify ----------------------------------------------------------


def test_audit_verify_is_chained_with_its_result_and_range(bst: Bastion) -> None:
    bst.add_user("alice", "--no-qr")
    before = bst.events()[-1]["seq"]
    assert_ok(bst.run("audit", "verify"))
    event = last(bst, "audit.verified")
    assert event["seq"] == before + 1 and event["severity"] == "notice"
    detail = event["detail"]
    assert (detail["command"], detail["ok"], detail["result"]) == ("audit verify", True, "intact")
    assert (detail["from_seq"], detail["to_seq"], detail["events"]) == (1, before, before)


@pytest.mark.parametrize(("edit", "said"), [
    ("UPDATE audit_events SET detail = '{\"role\":\"admin\"}' WHERE seq = 2", "edited"),
    ("DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)",
     "deleted from the end"),
])  # fmt: skip
def test_a_chain_found_broken_is_left_as_found(bst: Bastion, edit: str, said: str) -> None:
    """Writing the check's event would move the head file past a cut tail and bury it: on a
    broken chain nothing is written, and the next check finds the same damage."""
    for name in ("alice", "bob"):
        bst.add_user(name, "--no-qr")
    tamper(bst.db, edit)
    head_file = (bst.home / "bastion.db.head").read_bytes()
    with sqlite3.connect(bst.db) as db:
        rows = db.execute("SELECT count(*) FROM audit_events").fetchone()
    first = bst.run("audit", "verify")
    assert_tampered(first, said)
    assert "not recorded in the audit chain" in first.stderr
    assert (bst.home / "bastion.db.head").read_bytes() == head_file
    with sqlite3.connect(bst.db) as db:
        assert db.execute("SELECT count(*) FROM audit_events").fetchone() == rows
    assert_tampered(bst.run("audit", "verify"), said)


def test_report_verify_is_chained_with_the_pack_s_week_and_heads(bst: Bastion) -> None:
    fill_week(bst)
    assert_ok(bst.run("report", "weekly", "--week", "2026-W47"))
    pack = bst.home / "reports" / "2026-W47"
    manifest = json.loads((pack / "manifest.json").read_text())
    assert_ok(bst.run("report", "verify", str(pack)))
    detail = last(bst, "audit.verified")["detail"]
    assert (detail["command"], detail["week"], detail["result"]) == (
        "report verify", "2026-W47", "intact")  # fmt: skip
    assert (detail["from_seq"], detail["to_seq"]) == (
        manifest["chain"]["start"]["seq"], manifest["chain"]["end"]["seq"])  # fmt: skip
    count = len(chained(bst, "audit.verified"))
    assert_ok(bst.run("report", "verify", str(pack), "--no-store"))  # no store at hand
    assert len(chained(bst, "audit.verified")) == count
    csv = pack / "sessions.csv"
    csv.write_bytes(csv.read_bytes().replace(b"s-night", b"s-nite"))
    assert bst.run("report", "verify", str(pack)).returncode == Exit.TAMPERED
    failed = last(bst, "audit.verified")
    assert failed["severity"] == "warning" and failed["detail"]["ok"] is False
    assert "sessions.csv" in failed["detail"]["result"]


# --- the weekly review -----------------------------------------------------------------------


def test_the_weekly_review_shows_who_listed_queries_and_who_verified(bst: Bastion) -> None:
    fill_week(bst)
    assert_ok(bst.run("report", "weekly", "--week", "2026-W47"))
    assert_ok(bst.run("queries", "list", "--grep", "invoices"))
    assert_ok(bst.run("audit", "verify"))
    assert_ok(bst.run("report", "verify", str(bst.home / "reports" / "2026-W47")))
    events = chained(bst, "queries.listed", "audit.verified")
    config = load_config(bst.config)
    store, policy = keyed_store(bst), config.reports
    days = sorted({parse_iso(e["at"]).astimezone(zone(policy.timezone)).date() for e in events})
    weeks = {week_of(day, policy.timezone, policy.week_starts).label: day for day in days}
    rows = []
    for day in weeks.values():  # the weeks the events fall in (one, unless a week ended)
        week = week_of(day, policy.timezone, policy.week_starts)
        report = gather(store, config, week, now=week.end + timedelta(days=1),
                        verification=Verification("intact", 0))  # fmt: skip
        rows += [row for row in report.tables["reviewers"].rows if row[2] != "report.signed"]
    actor = events[0]["actor"]
    assert [(row[1], row[2]) for row in rows] == [
        (actor, "queries.listed"),
        (actor, "audit.verified"),
        (actor, "audit.verified"),
    ]
    what = [str(row[3]) for row in rows]
    assert what[0] == "query log (grep=invoices, limit=200): 3 rows shown"
    assert what[1].startswith("audit verify: audit chain, events 1-") and "intact" in what[1]
    assert what[2].startswith("report verify: review pack 2026-W47, events ")
    assert what[2].endswith(": intact")


# --- progress --------------------------------------------------------------------------------


def fill_chain(bst: Bastion, count: int) -> int:
    """Append `count` events to the bastion's chain; the chain's length after."""
    store = keyed_store(bst)
    try:
        for start in range(0, count, 5000):
            size = min(5000, count - start)
            store.append_events([Event("test.filler", "test", "", "info")] * size)
        return store.chain_head()[0]
    finally:
        store.close()


def on_terminal(bst: Bastion, *args: str) -> tuple[int, str, list[str]]:
    """Run the CLI with stderr on a pseudo-terminal and stdout piped: the exit code, stdout,
    and the lines the terminal showed."""
    master, slave = os.openpty()
    try:
        child = subprocess.Popen(bst.argv(*args), stdout=subprocess.PIPE, stderr=slave,
                                 stdin=subprocess.DEVNULL, cwd=bst.cwd,
                                 env=child_env())  # fmt: skip
    finally:
        os.close(slave)
    shown = bytearray()
    try:
        while chunk := os.read(master, 4096):
            shown += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(master)
    out, _ = child.communicate(timeout=120)
    return child.returncode, out.decode(), shown.decode().splitlines()


def test_audit_verify_shows_progress_on_a_terminal_and_none_when_piped(bst: Bastion) -> None:
    total = fill_chain(bst, 2 * PROGRESS_EVERY + 5)
    code, out, shown = on_terminal(bst, "audit", "verify")
    assert code == Exit.OK and "intact" in out
    assert f"bastion: audit chain: walking {total:,} events" in shown
    assert f"bastion: audit chain: {PROGRESS_EVERY:,} of {total:,} events checked" in shown
    assert f"bastion: audit chain: {2 * PROGRESS_EVERY:,} of {total:,} events checked" in shown
    piped = assert_ok(bst.run("audit", "verify"))
    assert piped.stderr == ""
    code, _, shown = on_terminal(bst, "audit", "verify", "--json")
    assert code == Exit.OK and shown == []  # --json is for programs


def test_report_verify_shows_progress_on_a_terminal_and_none_when_piped(bst: Bastion) -> None:
    fill_week(bst)
    assert_ok(bst.run("report", "weekly", "--week", "2026-W47"))
    total = fill_chain(bst, PROGRESS_EVERY + 5)
    pack = str(bst.home / "reports" / "2026-W47")
    code, out, shown = on_terminal(bst, "report", "verify", pack)
    assert code == Exit.OK and "intact" in out
    assert f"bastion: {pack}: checking the signature and every file of the pack" in shown
    assert f"bastion: audit chain: {PROGRESS_EVERY:,} of {total:,} events checked" in shown
    assert "bastion: 2026-W47: counting the week's rows in the store again" in shown
    piped = assert_ok(bst.run("report", "verify", pack))
    assert piped.stderr == ""
