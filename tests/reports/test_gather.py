"""A week of activity written to a real store, gathered: every finding once, with its evidence."""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bastion.audit import CommandLine, Event, FileOp, NewGrant, QueryEnd, QueryStart, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.identity.sealing import SecretBox
from bastion.reports.build import verify_week
from bastion.reports.facts import fold_statements
from bastion.reports.gather import gather
from bastion.reports.model import TABLES, Finding, Verification, WeeklyReport
from bastion.reports.week import parse_week

WEEK = parse_week("2026-W47", "Europe/Amsterdam")  # Mon 16 Nov 2026 00:00 CET = 15 Nov 23:00Z
INTACT = Verification("intact", 0)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in the week, given in Amsterdam local time (CET, UTC+1)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=1)


class Week:
    """A store the test writes a week into, moving its fake clock to each moment."""

    def __init__(self, tmp_path: Path, store: Store | None = None,
                 clock: FakeClock | None = None) -> None:  # fmt: skip
        self.clock = clock or FakeClock(at(9, 9))
        self.store = store or Store.create(tmp_path / "bastion.db", self.clock)
        for name, role in [("alice", "engineer"), ("bob", "engineer"), ("carol", "admin")]:
            self.store.add_user(name, role, None, os.urandom(16), "test")
        for name, kind in [("web-1", "ssh"), ("db-1", "postgres")]:
            self.store.add_target(name=name, kind=kind, host="127.0.0.1", port=22, login="x",
                                  database=None, secret_sealed=b"x", actor="test")  # fmt: skip

    def when(self, moment: datetime) -> Week:
        self.clock.advance(moment - self.clock.now())
        return self

    def grant(self, user: str, target: str, start: datetime, hours: int, reason: str, *,
              actor: str = "carol", break_glass: bool = False) -> int:  # fmt: skip
        self.when(start)
        new = NewGrant(target=target, mode="write", starts_at=start,
                       ends_at=start + timedelta(hours=hours), reason=reason, actor=actor,
                       user=user, break_glass=break_glass)  # fmt: skip
        return self.store.add_grant(new).id

    def session(self, sid: str, user: str, target: str, grant: int, *, start: datetime,
                minutes: int, addr: str = "10.0.0.5:50000",
                state: str = "closed") -> None:  # fmt: skip
        self.when(start)
        self.store.open_session(session_id=sid, user=user, target=target, grant_id=grant,
                                protocol="ssh" if target == "web-1" else "postgres",
                                client_addr=addr)  # fmt: skip
        self.when(start + timedelta(minutes=minutes))
        self.store.close_session(sid, state, "done")

    def command(self, sid: str, when: datetime, text: str) -> None:
        self.store.log_commands(sid, [CommandLine(when, 0, text)])

    def statement(self, sid: str, user: str, when: datetime, sql: str, *, tag: str,
                  rows: int = 0) -> None:  # fmt: skip
        key = f"{sid}-{when.timestamp()}-{sql}"
        self.store.write_batch([
            QueryStart(key, sid, user, "db-1", when, "simple", sql, kind=tag),
            QueryEnd(key, sid, user, "db-1", when, rows, f"{tag} {rows}", None, 1000),
        ])  # fmt: skip


def build_week(tmp_path: Path, store: Store | None = None,
               clock: FakeClock | None = None) -> Week:  # fmt: skip
    """Week 2026-W47 of three people on two targets, with something for every rule."""
    w = Week(tmp_path, store, clock)
    g_alice = w.grant("alice", "web-1", at(16, 9), 72, "INC-4711 disk full on web-1 cleanup")
    w.grant("bob", "db-1", at(16, 9), 12, "look")  # never used, weak reason
    g_db = w.grant("alice", "db-1", at(16, 10), 8, "CHG-22 migrate the invoices table safely")
    w.session("s-night", "alice", "web-1", g_alice, start=at(17, 3), minutes=20)  # 03:00 local
    w.command("s-night", at(17, 3, 5), "sudo rm -rf /var/tmp/cache")
    w.session(
        "s-day", "alice", "web-1", g_alice, start=at(18, 11), minutes=30, addr="192.0.2.7:40000"
    )
    w.session(
        "s-day2", "alice", "web-1", g_alice, start=at(18, 15), minutes=10, state="interrupted"
    )
    w.store.log_file_ops("s-day", [FileOp(at(18, 11, 5), "read", "/srv/dump.sql",
                                          size=300 << 20, sha256="ab" * 32)])  # fmt: skip
    w.session("s-db", "alice", "db-1", g_db, start=at(19, 10), minutes=60, addr="10.0.0.5:50001")
    w.statement("s-db", "alice", at(19, 10, 5), "SELECT * FROM invoices", tag="SELECT", rows=10)
    w.statement("s-db", "alice", at(19, 10, 6), "DELETE FROM invoices", tag="DELETE", rows=9000)
    w.statement("s-db", "alice", at(19, 10, 7), "DROP TABLE old_invoices", tag="DROP TABLE")
    w.statement("s-db", "alice", at(19, 10, 8), "SELECT 1; TRUNCATE payments", tag="SELECT")
    glass = w.grant("bob", "web-1", at(20, 22), 1, "pager: web-1 down", break_glass=True,
                    actor="bob")  # fmt: skip
    w.session("s-glass", "bob", "web-1", glass, start=at(20, 22, 5), minutes=15)
    w.when(at(21, 12))
    w.store.append_events([Event("auth.totp_failed", "ssh", "bob", "notice")] * 3)
    w.store.append_events([Event("user.locked", "ssh", "bob", "high")])
    w.when(at(24, 9))  # the next Tuesday: the report is made then
    return w


@pytest.fixture
def report(tmp_path: Path) -> WeeklyReport:
    w = build_week(tmp_path)
    config = load_config_text(tmp_path)
    return gather(w.store, config, WEEK, now=w.clock.now(), verification=INTACT)


def load_config_text(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "bastion.toml"
    path.write_text('[reports]\ntimezone = "Europe/Amsterdam"\n'
                    '[targets.web-1]\nallowed_hours = "Mon-Sun 00:00-23:59"\n')  # fmt: skip
    return load_config(path)


def by_rule(report: WeeklyReport) -> dict[str, list[Finding]]:
    found: dict[str, list[Finding]] = {}
    for finding in report.findings:
        found.setdefault(finding.rule, []).append(finding)
    return found


def test_each_thing_that_happened_is_found_once_with_its_evidence(report: WeeklyReport) -> None:
    found = by_rule(report)
    assert len(found["break_glass"]) == 1
    assert found["break_glass"][0].subject == "bob"
    assert {e.ref for e in found["break_glass"][0].evidence} >= {"s-glass"}
    [night] = [f for f in found["outside_hours"] if f.subject == "alice"]
    assert [e.ref for e in night.evidence] == ["s-night"]
    [rm] = found["destructive_command"]
    assert rm.evidence[0].replay == "bastion replay s-night --from 300"
    what = {f.title.split(" ran ")[1].split(" on ")[0] for f in found["destructive_statement"]}
    assert what == {"DELETE without WHERE", "DROP", "TRUNCATE"}  # one hid behind a SELECT
    assert [f.subject for f in found["privilege_escalation"]] == ["alice"]
    assert [f.evidence[0].ref for f in found["unused_grant"]] == ["2"]
    assert any("'look'" in f.title for f in found["weak_reason"])
    assert [f.subject for f in found["lockout"]] == ["bob"]
    assert [f.evidence[0].ref for f in found["interrupted_session"]] == ["s-day2"]
    assert [f.subject for f in found["many_addresses"]] == ["alice"]
    assert [f.evidence[0].ref for f in found["large_transfer"]] == ["s-day"]
    assert len({f.id for f in report.findings}) == len(report.findings)


def test_the_findings_come_most_severe_first(report: WeeklyReport) -> None:
    order = ["high", "medium", "low", "info"]
    ranks = [order.index(f.severity) for f in report.findings]
    assert ranks == sorted(ranks)


def test_the_summary_counts_the_week_against_the_last(report: WeeklyReport) -> None:
    summary = {m.key: (m.this_week, m.last_week) for m in report.summary}
    assert summary["people_active"] == (2, 0)
    assert summary["sessions_ssh"] == (4, 0) and summary["sessions_postgres"] == (1, 0)
    assert summary["statements_read"] == (2, 0) and summary["statements_write"] == (1, 0)
    assert summary["statements_ddl"] == (1, 0)
    assert summary["break_glass"] == (1, 0) and summary["lockouts"] == (1, 0)
    assert summary["grants_never_used"] == (1, 0)


def test_the_tables_hold_the_week(report: WeeklyReport) -> None:
    assert list(report.tables) == list(TABLES)
    sessions = {row[0] for row in report.tables["sessions"].rows}
    assert sessions == {"s-night", "s-day", "s-day2", "s-db", "s-glass"}
    notable = [row[5] for row in report.tables["notable"].rows]
    assert "sudo rm -rf /var/tmp/cache" in notable and "DROP TABLE old_invoices" in notable
    assert "SELECT * FROM invoices" not in notable  # a plain read is not notable
    people = {row[0]: row for row in report.tables["people"].rows}
    assert set(people) == {"alice", "bob"}
    assert report.provenance.chain_end.seq > report.provenance.chain_start.seq > 0
    assert report.provenance.counts["sessions"] == 5


def test_a_session_opened_in_hours_and_kept_open_overnight_is_outside_them(
    tmp_path: Path,
) -> None:
    w = Week(tmp_path)
    grant = w.grant("alice", "db-1", at(16, 9), 72, "CHG-1 long migration of the invoices")
    w.session("s-late", "alice", "db-1", grant, start=at(17, 19, 55), minutes=7 * 60)
    w.when(at(24, 9))
    report = gather(w.store, load_config_text(tmp_path), WEEK, now=w.clock.now(),
                    verification=INTACT)  # fmt: skip
    [late] = by_rule(report)["outside_hours"]
    assert [e.ref for e in late.evidence] == ["s-late"] and late.severity == "low"


def test_a_dump_through_a_commands_output_is_a_large_transfer(tmp_path: Path) -> None:
    """`ssh alice+db-1 pg_dump > dump` or `scp -O` moves its bytes in the exec channel's
    streams, not in SFTP operations: those bytes count too (in and out), per session."""
    w = Week(tmp_path)
    grant = w.grant("alice", "web-1", at(16, 9), 8, "CHG-5 copy the invoices for the audit")
    w.session("s-dump", "alice", "web-1", grant, start=at(16, 10), minutes=5)
    w.session("s-small", "alice", "web-1", grant, start=at(16, 11), minutes=5)
    w.store.log_file_ops("s-dump", [
        FileOp(at(16, 10, 5), "stream", "stdout", size=150 << 20, sha256="cd" * 32),
        FileOp(at(16, 10, 5), "stream", "stdin", size=0, sha256="ef" * 32),
    ])  # fmt: skip
    w.store.log_file_ops("s-small", [
        FileOp(at(16, 11, 5), "stream", "stdout", size=60 << 20, sha256="ab" * 32),
        FileOp(at(16, 11, 5), "stream", "stdin", size=60 << 20, sha256="ab" * 32),
    ])  # fmt: skip
    w.when(at(24, 9))
    report = gather(w.store, load_config_text(tmp_path), WEEK, now=w.clock.now(),
                    verification=INTACT)  # fmt: skip
    moved = by_rule(report)["large_transfer"]
    assert sorted((f.evidence[0].ref, f.title) for f in moved) == [
        ("s-dump", "alice moved 150 MiB in one session on web-1"),
        ("s-small", "alice moved 120 MiB in one session on web-1"),
    ]  # fmt: skip


def test_a_rule_that_fails_is_a_high_finding_and_the_review_still_goes_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = build_week(tmp_path)

    def broken(facts: object, config: object) -> list[Finding]:
        raise IndexError("list index out of range")

    from bastion.reports import gather as gather_module  # noqa: PLC0415

    monkeypatch.setattr(gather_module, "RULES", (*gather_module.RULES, broken))
    report = gather(w.store, load_config_text(tmp_path), WEEK, now=w.clock.now(),
                    verification=INTACT)  # fmt: skip
    [failed] = by_rule(report)["rule_failed"]
    assert failed.severity == "high" and "broken" in failed.title
    assert "destructive_command" in by_rule(report)  # the other rules still ran


def test_one_scan_of_the_statements_folds_into_counts_people_and_volume() -> None:
    rows: list[dict[str, Any]] = [
        {"session_id": "a", "kind": "SELECT", "n": 5, "refused": 1, "small_n": 3,
         "small_rows": 30, "person": "alice", "known": 1},
        {"session_id": "a", "kind": "UPDATE", "n": 2, "refused": 0, "small_n": 0,
         "small_rows": 0, "person": "alice", "known": 1},
        {"session_id": "b", "kind": "SELECT", "n": 4, "refused": 0, "small_n": 4,
         "small_rows": 8, "person": "bob", "known": 1},
        {"session_id": "gone", "kind": None, "n": 7, "refused": 7, "small_n": None,
         "small_rows": None, "person": None, "known": 0},
    ]  # fmt: skip
    counts, people, volume = fold_statements(rows)
    assert sorted((c["kind"] or "", c["refused"], c["n"]) for c in counts) == [
        ("", 1, 7), ("SELECT", 0, 8), ("SELECT", 1, 1), ("UPDATE", 0, 2)
    ]  # fmt: skip
    assert {p["person"]: (p["n"], p["refused"]) for p in people} == {
        "alice": (7, 1), "bob": (4, 0)
    }  # a session the store no longer knows is nobody's  # fmt: skip
    assert {v["session_id"]: (v["day"], v["n"], v["rows"]) for v in volume} == {
        "a": (0, 3, 30), "b": (0, 4, 8)
    }  # fmt: skip


def test_a_restore_of_the_store_is_a_high_finding_the_restorer_cannot_pass(
    tmp_path: Path,
) -> None:
    w = Week(tmp_path)
    w.when(at(18, 10))
    w.store.record_restore("carol", "nightly.db", "disk died", 40, {})
    w.when(at(24, 9))
    report = gather(w.store, load_config_text(tmp_path), WEEK, now=w.clock.now(),
                    verification=INTACT)  # fmt: skip
    [restored] = by_rule(report)["store_restored"]
    kept = restored.evidence[0].ref
    assert restored.severity == "high" and restored.involved == ("carol",)
    assert (
        f"events {int(kept)} to 40 were lost" in restored.title and "disk died" in restored.action
    )


def test_the_same_week_on_a_store_on_postgresql_is_the_same_review(
    tmp_path: Path, pg_store_at: PgLocation
) -> None:
    """One week written to a SQLite store and to a store on PostgreSQL: the same findings
    with the same evidence, summary and tables (the review's reads run on both engines), and
    the same verdict of the week's checks (the chain, the query log and its indexes)."""
    reports, verdicts = [], []
    for where, home in ((None, tmp_path / "lite"), (pg_store_at, tmp_path / "pg")):
        home.mkdir()
        clock = FakeClock(at(9, 9))
        store = Store.create(where or home / "bastion.db", clock)
        w = build_week(home, store, clock)
        reports.append(gather(w.store, load_config_text(home), WEEK, now=clock.now(),
                              verification=INTACT))  # fmt: skip
        verdicts.append(verify_week(store, SecretBox(bytes(32)), WEEK))
        store.close()
    assert verdicts[1] == verdicts[0] == Verification("intact", 0)
    lite, pg = (asdict(r) for r in reports)
    for part in ("findings", "summary", "tables", "charts"):
        assert pg[part] == lite[part], part
    assert pg["provenance"]["counts"] == lite["provenance"]["counts"]
