"""Large transfers and exports split into pieces are found per person and local day, across
sessions, targets and doors; a day whose large part was already flagged is not flagged twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import FileOp
from bastion.reports import volume
from bastion.reports.facts import EXPORT_ROWS
from bastion.reports.gather import gather
from bastion.reports.model import WeeklyReport
from tests.reports.test_gather import INTACT, WEEK, Week, at, by_rule, load_config_text

_MIB = 1 << 20


def _report(w: Week, tmp_path: Path) -> WeeklyReport:
    w.when(at(24, 9))
    return gather(w.store, load_config_text(tmp_path), WEEK, now=w.clock.now(),
                  verification=INTACT)  # fmt: skip


def _two_targets(w: Week) -> tuple[int, int]:
    w.store.add_target(name="web-2", kind="ssh", host="127.0.0.1", port=22, login="x",
                       database=None, secret_sealed=b"x", actor="test")  # fmt: skip
    one = w.grant("alice", "web-1", at(16, 8), 100, "INC-9 copy the logs for the vendor")
    two = w.grant("alice", "web-2", at(16, 8), 100, "INC-9 copy the logs for the vendor")
    return one, two


def test_a_day_of_small_copies_over_sessions_and_targets_is_a_large_transfer(
    tmp_path: Path,
) -> None:
    """1,000 files of 10 MiB would pass unseen one by one: here 40 files of 10 MiB over four
    sessions on two targets in one day (400 MiB, each session 100 MiB: at the limit, not
    over it)."""
    w = Week(tmp_path)
    one, two = _two_targets(w)
    for i in range(4):
        sid = f"s-copy{i}"
        w.session(sid, "alice", "web-1" if i % 2 else "web-2", one if i % 2 else two,
                  start=at(18, 10 + i), minutes=20)  # fmt: skip
        w.store.log_file_ops(sid, [FileOp(at(18, 10 + i, j), "read", f"/srv/logs/{i}-{j}.gz",
                                          size=10 * _MIB, sha256="ab" * 32)
                                   for j in range(10)])  # fmt: skip
    found = by_rule(_report(w, tmp_path))
    assert "large_transfer" not in found  # no one session passed the limit
    [day] = found["large_transfer_day"]
    assert day.subject == "alice" and "400 MiB" in day.title and "2026-11-18" in day.title
    files = [e for e in day.evidence if e.kind == "file"]
    assert 0 < len(files) <= 10  # the largest pieces, bounded
    assert {e.session for e in files} <= {f"s-copy{i}" for i in range(4)}
    assert set(day.grants) == {one, two}


def test_the_same_day_built_twice_has_the_same_finding_id(tmp_path: Path) -> None:
    ids = []
    for n in range(2):
        (tmp_path / str(n)).mkdir()
        w = Week(tmp_path / str(n))
        one, _ = _two_targets(w)
        for i in range(3):
            w.session(f"s{i}", "alice", "web-1", one, start=at(19, 9 + i), minutes=5)
            w.store.log_file_ops(f"s{i}", [FileOp(at(19, 9 + i, 1), "write", f"/x/{i}",
                                                  size=60 * _MIB)])  # fmt: skip
        [day] = by_rule(_report(w, tmp_path / str(n)))["large_transfer_day"]
        ids.append(day.id)
    assert ids[0] == ids[1]


def test_streams_of_an_exec_count_as_moved_bytes(tmp_path: Path) -> None:
    """`ssh host 'cat /srv/dump' > dump` moves data without scp or sftp: the session's stdout
    stream is what left."""
    w = Week(tmp_path)
    one, _ = _two_targets(w)
    for i in range(3):
        w.session(f"s-cat{i}", "alice", "web-1", one, start=at(17, 9 + i), minutes=5)
        w.store.log_file_ops(f"s-cat{i}", [FileOp(at(17, 9 + i, 5), "stream", "stdout", None,
                                                  size=50 * _MIB, sha256="cd" * 32)])  # fmt: skip
    [day] = by_rule(_report(w, tmp_path))["large_transfer_day"]
    assert "150 MiB" in day.title


def test_a_day_already_flagged_for_one_large_session_is_flagged_again_only_for_the_rest(
    tmp_path: Path,
) -> None:
    w = Week(tmp_path)
    one, _ = _two_targets(w)
    w.session("s-big", "alice", "web-1", one, start=at(18, 9), minutes=5)
    w.store.log_file_ops("s-big", [FileOp(at(18, 9, 1), "read", "/x", size=500 * _MIB)])
    w.session("s-small", "alice", "web-1", one, start=at(18, 11), minutes=5)
    w.store.log_file_ops("s-small", [FileOp(at(18, 11, 1), "read", "/y", size=60 * _MIB)])
    found = by_rule(_report(w, tmp_path))
    assert [f.evidence[0].ref for f in found["large_transfer"]] == ["s-big"]
    assert "large_transfer_day" not in found  # the rest of the day (60 MiB) is under the limit


def _exports(w: Week, sid: str, day: int, hour: int, *, count: int, rows: int) -> None:
    for i in range(count):
        w.statement(sid, "alice", at(day, hour, i), f"SELECT * FROM customers WHERE id > {i}",
                    tag="SELECT", rows=rows)  # fmt: skip


def test_an_export_split_into_many_queries_over_sessions_is_a_large_export(
    tmp_path: Path,
) -> None:
    """5M rows as 100 queries of 50k: here 30 queries of 5,000 rows over three sessions."""
    w = Week(tmp_path)
    grant = w.grant("alice", "db-1", at(16, 8), 100, "CHG-5 reconcile the customers table")
    for n in range(3):
        w.session(f"s-db{n}", "alice", "db-1", grant, start=at(19, 9 + n), minutes=30)
        _exports(w, f"s-db{n}", 19, 9 + n, count=10, rows=5000)
    w.session("s-db-other-day", "alice", "db-1", grant, start=at(20, 9), minutes=30)
    _exports(w, "s-db-other-day", 20, 9, count=5, rows=5000)  # 25,000 rows: under the limit
    found = by_rule(_report(w, tmp_path))
    assert "large_export" not in found
    [day] = found["large_export_day"]
    assert "150000 rows" in day.title and "30 statements" in day.title
    assert "2026-11-19" in day.title and day.subject == "alice"
    pieces = [e for e in day.evidence if e.kind == "statement"]
    assert 0 < len(pieces) <= 10 and all(e.session and e.session.startswith("s-db") for e in pieces)
    assert day.grants == (grant,)


def test_one_large_export_is_flagged_once_and_its_day_not_again(tmp_path: Path) -> None:
    w = Week(tmp_path)
    grant = w.grant("alice", "db-1", at(16, 8), 100, "CHG-5 reconcile the customers table")
    w.session("s-db", "alice", "db-1", grant, start=at(19, 9), minutes=30)
    _exports(w, "s-db", 19, 9, count=1, rows=EXPORT_ROWS * 3)
    _exports(w, "s-db", 19, 10, count=3, rows=1000)
    found = by_rule(_report(w, tmp_path))
    assert len(found["large_export"]) == 1
    assert "large_export_day" not in found


def test_a_session_over_midnight_counts_each_statement_on_its_own_local_day(
    tmp_path: Path,
) -> None:
    w = Week(tmp_path)
    grant = w.grant("alice", "db-1", at(16, 8), 100, "CHG-5 reconcile the customers table")
    w.session("s-night", "alice", "db-1", grant, start=at(18, 23), minutes=120)
    _exports(w, "s-night", 18, 23, count=6, rows=10_000)  # 60,000 rows on the 18th
    _exports(w, "s-night", 19, 0, count=6, rows=10_000)  # 60,000 rows on the 19th ...
    w.session("s-morning", "alice", "db-1", grant, start=at(19, 9), minutes=30)
    _exports(w, "s-morning", 19, 9, count=5, rows=10_000)  # ... and 50,000 more
    [day] = by_rule(_report(w, tmp_path))["large_export_day"]
    assert "2026-11-19" in day.title and "110000 rows" in day.title


def test_with_many_sessions_over_midnight_every_statement_is_split_by_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past volume._MANY such sessions the review splits all statements by day in one scan:
    the same days come out."""
    monkeypatch.setattr(volume, "_MANY", 0)
    test_a_session_over_midnight_counts_each_statement_on_its_own_local_day(tmp_path)
