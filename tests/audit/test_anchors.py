"""Signed chain heads: the record, the file and syslog sinks on real sockets, checking a chain
against them, and `bastion serve` sending them at start, on a timer and at stop."""

from __future__ import annotations

import http.server
import json
import os
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from bastion.audit import anchors
from bastion.audit.anchors import Anchor, Anchorer, AnchorError, parse_line, read_anchors
from bastion.config import load_config
from bastion.errors import ConfigError
from tests.harness import Bastion
from tests.realssh import free_port

KEY = bytes(32)
DEADLINE = 20.0  # a safety net for waits, never a timing assertion


def test_a_signed_anchor_reads_back_and_any_edit_breaks_its_signature() -> None:
    anchor = Anchor("node-1", 42, "ab" * 32, "2026-01-05T09:00:00.000000Z")
    line = anchor.signed(KEY)
    assert parse_line(line, KEY) == anchor
    assert parse_line(f"Jan  5 09:00:00 host {anchors.TAG}: {line}", KEY) == anchor
    assert parse_line("an unrelated log line", KEY) is None
    for edited in (line.replace('"seq":42', '"seq":43'), line.replace("node-1", "node-2")):
        assert "not signed with this bastion's key" in str(parse_line(edited, KEY))
    assert "not signed" in str(parse_line(line, b"k" * 32))
    assert "damaged" in str(parse_line(line[:-5], KEY))


def test_check_names_a_deleted_tail_and_a_rewritten_event() -> None:
    macs = {1: "a" * 64, 2: "b" * 64, 3: "c" * 64}
    signed = [Anchor("n", seq, macs[seq], f"t{seq}") for seq in (1, 3)]
    assert anchors.check(signed, 3, macs.get) == []
    [problem] = anchors.check(signed, 2, macs.get)
    assert "ends at event 2" in problem and "anchored event 3" in problem
    [problem] = anchors.check(signed, 3, {**macs, 3: "d" * 64}.get)
    assert "event 3 differs" in problem


def test_the_file_sink_appends_signed_lines_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "anchors.log"
    anchorer = Anchorer([f"file:{path}"], KEY, "node-1", lambda: "now")
    assert anchorer.anchor((1, "a" * 64)) == [] and anchorer.anchor((2, "b" * 64)) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found, problems = read_anchors(path, KEY)
    assert problems == [] and [(a.seq, a.mac) for a in found] == [(1, "a" * 64), (2, "b" * 64)]


def test_a_sink_that_fails_is_reported_not_raised(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-mount" / "anchors.log"
    anchorer = Anchorer([f"file:{missing}"], KEY, "n", lambda: "now")
    [failure] = anchorer.anchor((1, "a" * 64))
    assert str(missing) in failure


def test_the_file_sink_never_writes_through_a_symlink_or_into_a_fifo(tmp_path: Path) -> None:
    # Doctor fails a symlinked anchor file; the sink used to follow it (and append signed lines
    # to whatever it named), and to hang on a FIFO planted at the path.
    victim = tmp_path / "bastion.toml"
    victim.write_text("[store]\n", encoding="utf-8")
    link = tmp_path / "anchors.log"
    link.symlink_to(victim)
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    anchorer = Anchorer([f"file:{link}", f"file:{fifo}"], KEY, "n", lambda: "now")
    failures = anchorer.anchor((1, "a" * 64))
    assert len(failures) == 2 and anchorer.delivered == [False, False], failures
    assert str(link) in failures[0] and str(fifo) in failures[1]
    assert victim.read_text(encoding="utf-8") == "[store]\n"


def test_the_syslog_sink_sends_to_a_unix_socket(tmp_path: Path) -> None:
    address = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        anchorer = Anchorer([f"syslog:{address}"], KEY, "n", lambda: "t")
        assert anchorer.anchor((9, "f" * 64)) == []
        message = server.recv(65536).decode()
        anchorer.close()
    assert message.startswith("<85>") and f" {anchors.TAG}: " in message
    anchor = parse_line(message, KEY)
    assert isinstance(anchor, Anchor) and anchor.seq == 9


class _Collector(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[str]] = []
    status = 204

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(self.rfile.read(length).decode())
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_syslog_socket_nobody_reads_fails_the_sink_and_never_holds_the_store(
    tmp_path: Path,
) -> None:
    # Anchors are sent on the store's own thread. A datagram socket whose reader stopped
    # blocks the sender once its queue is full, and every audit write with it.
    address = str(tmp_path / "stuck.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        anchorer = Anchorer([f"syslog:{address}"], KEY, "n", lambda: "t")
        rounds = [anchorer.anchor((seq, "f" * 64)) for seq in range(1, 5001)]
        anchorer.close()
    failed = [seq for seq, failures in enumerate(rounds, 1) if failures]
    assert failed, "the queue never filled"
    assert failed == list(range(failed[0], 5001))  # from the first full queue on, each fails
    said = {failures[0] for failures in rounds if failures}
    assert said == {f"syslog:{address}: its queue is full: nothing is reading it"}


def test_the_webhook_sink_posts_each_anchor_and_a_refusal_is_a_failure() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/anchors"
        anchorer = Anchorer([f"webhook:{url}"], KEY, "n", lambda: "t")
        assert anchorer.anchor((4, "e" * 64)) == []
        anchor = parse_line(_Collector.bodies[-1], KEY)
        assert isinstance(anchor, Anchor) and (anchor.seq, anchor.mac) == (4, "e" * 64)
        _Collector.status = 500
        [failure] = anchorer.anchor((4, "e" * 64))
        assert url in failure
    finally:
        server.shutdown()
        server.server_close()


def test_a_webhook_failure_names_the_sink_without_its_credentials() -> None:
    """The failure is logged and chained (audit.anchor_failed): a token in the URL's query
    or its user part must reach neither."""
    port = free_port()  # nothing listens: refused
    url = f"http://anchor:pa55word@127.0.0.1:{port}/anchors?token=s3cr3t-t0ken"
    [failure] = Anchorer([f"webhook:{url}"], KEY, "n", lambda: "t").anchor((4, "e" * 64))
    assert failure.startswith(f"webhook:http://127.0.0.1:{port}/anchors: ")
    assert "s3cr3t-t0ken" not in failure and "pa55word" not in failure


def test_read_anchors_fails_on_a_missing_or_empty_file(tmp_path: Path) -> None:
    assert "cannot be read" in read_anchors(tmp_path / "none.log", KEY)[1][0]
    (tmp_path / "empty.log").write_text("")
    assert "holds no anchor" in read_anchors(tmp_path / "empty.log", KEY)[1][0]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("file:/mnt/a/anchors.log", ("file", "/mnt/a/anchors.log")),
        ("syslog", ("syslog", "/dev/log")),
        ("syslog:/run/log.sock", ("syslog", "/run/log.sock")),
        ("syslog:udp://loghost:514", ("udp", "loghost:514")),
        ("syslog:udp://[::1]:514", ("udp", "::1:514")),
        ("webhook:https://audit.example/anchors", ("webhook", "https://audit.example/anchors")),
    ],
)
def test_sink_specs(spec: str, parsed: tuple[str, str]) -> None:
    assert anchors.parse_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec", ["file:relative.log", "webhook", "webhook:ftp://h/x", "syslog:tcp://h:1", "file:"]
)
def test_bad_sink_specs_are_config_errors(spec: str, tmp_path: Path) -> None:
    with pytest.raises(AnchorError):
        anchors.parse_spec(spec)
    path = tmp_path / "bastion.toml"
    path.write_text(f"[audit]\nanchors = [{json.dumps(spec)}]\n")
    with pytest.raises(ConfigError, match=r"audit\.anchors"):
        load_config(path)


def test_serve_anchors_at_start_on_its_timer_and_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "anchors.log"
    path.parent.mkdir()
    extra = f'[audit]\nanchors = ["file:{path}"]\nanchor_every = "1s"\n'
    b = Bastion(tmp_path / "b", extra).start()
    try:
        assert len(path.read_text().splitlines()) == 1  # sent before start() returned
        deadline = time.monotonic() + DEADLINE
        while len(path.read_text().splitlines()) < 3:  # the timer sends more
            assert time.monotonic() < deadline, "no anchor came from the timer"
            time.sleep(0.1)
    finally:
        b.stop()
    key = anchors.anchor_key(b.box)
    found, problems = read_anchors(path, key)
    assert problems == []
    conn = sqlite3.connect(b.store.file)  # the bastion's store is closed by now
    seq, mac, kind = conn.execute(
        "SELECT seq, row_hash, kind FROM audit_events ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    conn.close()
    assert kind == "bastion.stopped"
    assert (found[-1].seq, found[-1].mac) == (seq, mac)  # the stop's anchor covers the stop


def test_a_failing_sink_is_audited_once_per_outage(tmp_path: Path) -> None:
    path = tmp_path / "not-mounted-yet" / "anchors.log"
    extra = f'[audit]\nanchors = ["file:{path}"]\nanchor_every = "1s"\n'
    b = Bastion(tmp_path / "b", extra).start()
    try:
        [failed] = b.events("audit.anchor_failed")
        assert failed.severity == "high" and str(path) in failed.detail
        path.parent.mkdir()  # the mount comes back
        deadline = time.monotonic() + DEADLINE
        while not b.events("audit.anchor_ok"):
            assert time.monotonic() < deadline, "the recovery was not audited"
            time.sleep(0.1)
        assert len(b.events("audit.anchor_failed")) == 1
    finally:
        b.stop()
    assert read_anchors(path, anchors.anchor_key(b.box))[1] == []
