"""The SQLite evidence file: opens on its own, every section a typed table, findings linked."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from bastion.reports.model import TABLES
from bastion.reports.render_sqlite import render_sqlite
from tests.reports.sample import SCRIPT_COMMAND, empty_report, sample_report


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def test_every_section_is_a_table_with_its_rows(tmp_path: Path) -> None:
    report = sample_report()
    path = tmp_path / "evidence.db"
    render_sqlite(report, path)
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    names = {name for (name,) in rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == {*TABLES, "provenance", "summary", "findings", "evidence",
                     "finding_grants", "finding_requests", "charts"}  # fmt: skip
    for key, columns in TABLES.items():
        info = rows(path, f"PRAGMA table_info([{key}])")
        assert [column[1] for column in info] == list(columns)
        assert rows(path, f"SELECT count(*) FROM [{key}]") == [(len(report.tables[key].rows),)]
    assert rows(path, "SELECT count(*) FROM findings") == [(len(report.findings),)]
    assert sorted(p for f in report.findings for p in f.grants) == [14, 21]
    assert rows(path, "SELECT grant_id FROM finding_grants ORDER BY 1") == [(14,), (21,)]


def test_columns_are_typed_and_keys_declared_for_datasette(tmp_path: Path) -> None:
    path = tmp_path / "evidence.db"
    render_sqlite(sample_report(), path)
    types = {c[1]: c[2] for c in rows(path, "PRAGMA table_info(sessions)")}
    assert types["hours"] == "REAL" and types["id"] == "TEXT"
    assert [c[1] for c in rows(path, "PRAGMA table_info(sessions)") if c[5]] == ["id"]
    access = {c[1]: c[2] for c in rows(path, "PRAGMA table_info(access)")}
    assert access["grant_id"] == "INTEGER" and access["break_glass"] == "INTEGER"
    links = {(fk[3], fk[2], fk[4]) for fk in rows(path, "PRAGMA foreign_key_list(evidence)")}
    assert links == {("finding_id", "findings", "id"), ("session", "sessions", "id")}
    notable = rows(path, "PRAGMA foreign_key_list(notable)")
    assert [(fk[3], fk[2], fk[4]) for fk in notable] == [("session", "sessions", "id")]


def test_evidence_joins_its_finding_and_session(tmp_path: Path) -> None:
    path = tmp_path / "evidence.db"
    render_sqlite(sample_report(), path)
    joined = rows(
        path,
        "SELECT f.rule, e.text, s.target, e.replay FROM evidence e JOIN findings f "
        "ON f.id = e.finding_id JOIN sessions s ON s.id = e.session WHERE e.kind = 'command'",
    )
    assert joined == [("break_glass", SCRIPT_COMMAND, "db1",
                       "bastion replay 0b6f7c1e-alice-ssh-db1 --at 328.5")]  # fmt: skip
    prov = {key: value for key, value in rows(path, "SELECT key, value FROM provenance")}
    assert prov["week"] == "2026-W47" and prov["chain_end_seq"] == "5230"
    assert prov["count.findings"] == "8"


def test_the_file_is_the_same_bytes_and_replaces_an_old_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    second.write_bytes(b"an old report that is not SQLite at all")
    render_sqlite(sample_report(), first)
    render_sqlite(sample_report(), second)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db", "b.db"]  # no journal left


def test_an_empty_week_writes_empty_tables(tmp_path: Path) -> None:
    path = tmp_path / "evidence.db"
    render_sqlite(empty_report(), path)
    assert rows(path, "SELECT count(*) FROM sessions") == [(0,)]
    assert [c[1] for c in rows(path, "PRAGMA table_info(consent)")] == list(TABLES["consent"])
