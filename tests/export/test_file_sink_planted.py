"""Attacks on the file sink's files: a forged last line, a symlink or a FIFO planted at the
sink's path or its rotated name. None of them may make the feed skip an event or hang."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from bastion.config_export import ExportSink
from bastion.export.sinks import FileSink, SinkError
from tests.export.test_file_sink import events, lines_of
from tests.export.test_syslog_outage import activity, caught_up, chained, wait_until
from tests.harness import Bastion


def file_bastion(tmp_path: Path) -> tuple[Bastion, Path]:
    path = tmp_path / "export" / "audit.jsonl"
    path.parent.mkdir()
    config = (f'[export.trail]\nkind = "file"\npath = "{path}"\nretry_after = "1s"\n'
              'retry_max = "1s"\n')  # fmt: skip
    return Bastion(tmp_path / "bastion", config), path


def forged_line(seq: int) -> bytes:
    return json.dumps({"seq": seq, "mac": "f" * 64, "kind": "test"}).encode() + b"\n"


def test_a_forged_last_line_does_not_make_the_feed_skip_events(tmp_path: Path) -> None:
    b, path = file_bastion(tmp_path)
    path.write_bytes(forged_line(1_000_000))  # whoever can write the file: "all taken"
    activity(b, range(0, 4))
    b.start()
    try:
        activity(b, range(4, 8))
        caught_up(b, "trail", "the file")
    finally:
        b.stop()
    written = [line["seq"] for line in lines_of(path, 1)[1:]]
    assert written == list(range(1, len(written) + 1))
    assert len(written) >= len(chained(b)) - 1  # bastion.stopped: chained as the feed stops


def test_a_symlinked_rotated_file_is_not_read_for_the_last_seq(tmp_path: Path) -> None:
    b, path = file_bastion(tmp_path)
    elsewhere = tmp_path / "forged.jsonl"
    activity(b, range(0, 4))
    first = b.store.events()[0]
    record = {"seq": first.seq, "mac": first.row_hash}
    elsewhere.write_bytes(forged_line(1_000_000) + json.dumps(record).encode() + b"\n")
    os.symlink(elsewhere, path.with_name(path.name + ".1"))
    b.start()
    try:
        caught_up(b, "trail", "the file")
    finally:
        b.stop()
    assert [line["seq"] for line in lines_of(path, 0)][:2] == [1, 2]  # seq 1 not skipped


def test_a_fifo_at_the_rotated_name_does_not_hang_the_sink(tmp_path: Path) -> None:
    b, path = file_bastion(tmp_path)
    os.mkfifo(path.with_name(path.name + ".1"))  # reading it would wait for a writer forever
    activity(b, range(0, 3))
    b.start()
    try:
        caught_up(b, "trail", "the file")
    finally:
        b.stop()
    assert [line["seq"] for line in lines_of(path, 0)][:3] == [1, 2, 3]


def test_a_fifo_at_the_path_is_refused_and_the_cursor_stays(tmp_path: Path) -> None:
    b, path = file_bastion(tmp_path)
    os.mkfifo(path)  # a reader on the other end would take the events, none would be kept
    activity(b, range(0, 3))
    b.start()
    try:
        exporter = b.core.exporting
        assert exporter is not None
        wait_until(lambda: exporter.health()[0]["status"] == "failing", "the sink to fail")
        assert exporter.health()[0]["error"] == "cannot write the file (not a regular file)"
        assert b.store.export_cursor("trail") == 0
    finally:
        b.stop()


def test_a_file_planted_open_to_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch(mode=0o666)
    path.chmod(0o666)  # planted before the first start: anyone could read and edit the feed
    sink = FileSink(ExportSink("trail", "file", path=path))
    asyncio.run(sink.deliver(events(1, 2)))
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "the suite runs as root (tests/conftest.py)"
    path = tmp_path / "audit.jsonl"
    path.touch(mode=0o600)
    os.chown(path, 65534, 65534)  # nobody's: they could truncate what the forwarder ships
    sink = FileSink(ExportSink("trail", "file", path=path))
    with pytest.raises(SinkError, match=r"^cannot write the file \(owned by another user\)$"):
        asyncio.run(sink.deliver(events(1, 2)))
    assert path.read_bytes() == b""
