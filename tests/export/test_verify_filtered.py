"""`export verify --sink NAME`: on a filtered sink, a gap the filter explains (every event in
it one the sink passes over, as the store holds them) is no failure; a record the filter
takes that is not there is, and so is an end short of the sink's cursor (a truncated file,
a dropped newest file). Without --sink, --allow-gaps cannot tell the two apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.errors import Exit
from tests.export.test_syslog_outage import activity, caught_up
from tests.harness import Bastion
from tests.test_cli import run_bastion


def filtered_feed(tmp_path: Path) -> tuple[Bastion, Path]:
    path = tmp_path / "export" / "audit.jsonl"
    path.parent.mkdir()
    config = f'[export.trail]\nkind = "file"\npath = "{path}"\nkinds = ["user.disabled"]\n'
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 9))  # user.added each, user.disabled every third
        caught_up(b, "trail", "the file")
    finally:
        b.stop()
    return b, path


def verify(b: Bastion, path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    home = ("--config", str(b.home / "bastion.toml"))
    done = run_bastion(*home, "export", "verify", str(path), "--json", *extra, cwd=b.home)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def covers(gaps: list[str], seq: int) -> bool:
    spans = [tuple(map(int, gap.split("-"))) for gap in gaps]
    return any(first <= seq <= end for first, end in spans)


def test_gaps_the_filter_explains_pass_and_a_dropped_record_does_not(tmp_path: Path) -> None:
    b, path = filtered_feed(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    kinds = [json.loads(line)["kind"] for line in lines]
    assert kinds.count("user.disabled") == 3
    code, report = verify(b, path, "--sink", "trail")
    assert (code, report["ok"]) == (0, True) and report["filtered"]
    assert report["gaps"] == []

    dropped = json.loads(lines[kinds.index("user.disabled")])["seq"]
    path.write_bytes(b"".join(line for line in lines if json.loads(line)["seq"] != dropped))
    code, report = verify(b, path, "--sink", "trail")
    assert (code, report["ok"]) == (Exit.TAMPERED, False)
    assert covers(report["gaps"], dropped), report
    code, report = verify(b, path, "--allow-gaps")  # the blunt tool cannot see it
    assert code == 0


def test_an_end_short_of_the_cursor_is_found(tmp_path: Path) -> None:
    b, path = filtered_feed(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])["seq"]
    path.write_bytes(b"".join(lines[:-1]))  # the newest record cut off the file
    code, report = verify(b, path, "--sink", "trail")
    assert (code, report["ok"]) == (Exit.TAMPERED, False)
    assert covers(report["gaps"], last), report
