"""The JSON-lines file sink: rotated by size with `keep` old files, every line whole, and a
crash between the fsync and the cursor neither loses nor repeats a line."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from bastion.audit import ChainKey, Event
from bastion.audit.chain import ChainedEvent, link
from bastion.config_export import ExportSink
from bastion.errors import Exit
from bastion.export.sinks import FileSink
from tests.export.test_syslog_outage import activity, caught_up, chained, wait_until
from tests.harness import Bastion
from tests.test_cli import run_bastion

KEY = ChainKey(bytes(range(32)))


def events(first: int, count: int) -> list[ChainedEvent]:
    return [link(Event("test.event", "t", "x" * 40), n, "2026-12-07T09:00:00.000000Z", "0" * 64,
                 KEY.secret) for n in range(first, first + count)]  # fmt: skip


def lines_of(path: Path, keep: int) -> list[dict[str, Any]]:
    """Every line of the rotated files, oldest first, then of the current one."""
    files = [path.with_name(f"{path.name}.{n}") for n in range(keep, 0, -1)] + [path]
    found = []
    for file in files:
        if file.exists():
            data = file.read_bytes()
            assert data.endswith(b"\n") or not data  # never a line cut in two
            found += [json.loads(line) for line in data.splitlines()]
    return found


def test_rotation_keeps_every_line_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = FileSink(ExportSink("trail", "file", path=path, max_bytes=4096, keep=50))
    for first in range(1, 200, 20):
        asyncio.run(sink.deliver(events(first, 20)))
    assert [line["seq"] for line in lines_of(path, 50)] == list(range(1, 201))
    rotated = sorted(tmp_path.glob("audit.jsonl.*"))
    assert rotated and all(p.stat().st_size <= 4096 for p in [*rotated, path])
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_only_keep_old_files_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = FileSink(ExportSink("trail", "file", path=path, max_bytes=4096, keep=2))
    asyncio.run(sink.deliver(events(1, 300)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]  # fmt: skip
    seqs = [line["seq"] for line in lines_of(path, 2)]
    assert seqs == list(range(seqs[0], 301))  # the newest, contiguous, up to the last


def test_a_line_cut_by_a_crash_is_dropped_and_the_last_whole_one_is_known(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = FileSink(ExportSink("trail", "file", path=path))
    asyncio.run(sink.deliver(events(1, 3)))
    with path.open("ab") as file:
        file.write(b'{"seq":4,"kind":"te')  # a crash in the middle of a write
    assert sink.last_written() == (3, events(3, 1)[0].row_hash)
    asyncio.run(sink.deliver(events(4, 2)))  # seq 4 comes again: its cursor never moved
    assert [line["seq"] for line in lines_of(path, 1)] == [1, 2, 3, 4, 5]


def test_a_bastion_feeds_a_rotating_file_every_event_in_order(tmp_path: Path) -> None:
    path = tmp_path / "export" / "audit.jsonl"
    path.parent.mkdir()
    config = f'[export.trail]\nkind = "file"\npath = "{path}"\nmax_bytes = 4096\nkeep = 100\n'
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 30))
        caught_up(b, "trail", "the file")
    finally:
        b.stop()
    written = lines_of(path, 100)
    stored = chained(b)
    assert [line["seq"] for line in written] == [e.seq for e in stored[: len(written)]]
    assert len(written) >= len(stored) - 1  # bastion.stopped: chained as the feed stops
    for line, event in zip(written, stored, strict=False):
        assert line["mac"] == event.row_hash and line["detail"] == json.loads(event.detail)
    assert len(list(path.parent.iterdir())) > 1  # it rotated
    assert os.stat(path).st_mode & 0o077 == 0


def test_a_file_sink_that_fails_goes_on_where_it_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "audit.jsonl"
    config = (f'[export.trail]\nkind = "file"\npath = "{path}"\nretry_after = "1s"\n'
              'retry_max = "1s"\n')  # fmt: skip
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 5))
        caught_up(b, "trail", "the file")
        folder.rename(tmp_path / "aside")
        folder.write_text("a file where the folder was")  # every open fails now
        activity(b, range(5, 10))
        exporter = b.core.exporting
        assert exporter is not None
        wait_until(lambda: exporter.health()[0]["status"] == "failing", "the sink to fail")
        assert exporter.health()[0]["error"] == "cannot write the file (Not a directory)"
        folder.unlink()
        (tmp_path / "aside").rename(folder)
        caught_up(b, "trail", "the rest")
    finally:
        b.stop()
    seqs = [line["seq"] for line in lines_of(path, 1)]
    assert seqs == list(range(1, len(seqs) + 1))  # each once, in order
    assert len(seqs) >= len(chained(b)) - 1


def test_export_verify_checks_a_file_sinks_records_and_export_status_shows_the_cursor(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export" / "audit.jsonl"
    path.parent.mkdir()
    config = f'[export.trail]\nkind = "file"\npath = "{path}"\nmax_bytes = 4096\nkeep = 100\n'
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 12))
        caught_up(b, "trail", "the file")
    finally:
        b.stop()
    files = [str(p) for p in sorted(path.parent.glob("audit.jsonl.*"), reverse=True)]
    files.append(str(path))
    home = ("--config", str(b.home / "bastion.toml"))
    done = run_bastion(*home, "export", "verify", *files, "--json", cwd=path.parent)
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    assert (done.returncode, report["ok"], report["first_seq"]) == (0, True, 1), done.stderr
    status = json.loads(run_bastion(*home, "export", "status", "--json", cwd=path.parent).stdout)
    assert status[0]["sink"] == "trail" and status[0]["behind"] <= 2  # bastion.stopped, ...
    lines = path.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["detail"]["role"] = "admin"  # an insider with the SIEM's files edits a record
    forged = [lines[0], json.dumps(edited).encode() + b"\n", *lines[3:]]  # and drops one
    path.write_bytes(b"".join(forged))
    done = run_bastion(*home, "export", "verify", *files, cwd=path.parent)
    assert done.returncode == Exit.TAMPERED
    seq = edited["seq"]
    assert f"event {seq}: its MAC does not hold" in done.stdout
    assert f"events {seq + 1}-{seq + 1} missing" in done.stdout
