"""The CLI's reviewer reads go through the shared calls: `sessions list` filters and pages,
`sessions index`, `replay` and `recordings export` refused without a byte when the viewing
cannot be chained, `queries list --session`, `unmask list` with the rows shown."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.audit import Event
from bastion.audit.sessions import RecordingInfo
from bastion.config import load_config
from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from bastion.recording import file_digest
from tests import test_cli
from tests.reviewing.world import World, build
from tests.test_cli import Bastion, assert_error, assert_ok

pristine = test_cli.pristine
bst = test_cli.bst


@pytest.fixture
def busy(bst: Bastion) -> Iterator[Bastion]:
    """The sessions of tests/reviewing/world.py, in a store made by `bastion init`."""
    config = load_config(bst.config)
    world: World = build(bst.home, box=SecretBox.load(config.paths.secrets_key),
                         store_path=bst.db, recordings=config.paths.recordings)  # fmt: skip
    world.store.close()
    yield bst


def refuse(bst: Bastion, kind: str, how: str = "ABORT, 'no trace wanted'") -> None:
    """An insider's trigger: the event is refused (ABORT), or dropped silently (IGNORE)."""
    with sqlite3.connect(bst.db) as conn:
        conn.execute(f"CREATE TRIGGER hide BEFORE INSERT ON audit_events WHEN NEW.kind = '{kind}'"
                     f" BEGIN SELECT RAISE({how}); END")  # fmt: skip


def test_sessions_list_filters_combine_and_page(busy: Bastion) -> None:
    listed = busy.json("sessions", "list", "--user", "alice", "--text", "SELECT")
    assert [s["id"] for s in listed] == ["s-a2"]
    day2 = ["--since", "2026-11-17T00:00+00:00", "--until", "2026-11-18T00:00+00:00"]
    assert [s["id"] for s in busy.json("sessions", "list", *day2)] == ["s-a2", "s-b1"]
    ssh = busy.json("sessions", "list", "--protocol", "ssh", "--target", "web-2")
    assert [s["id"] for s in ssh] == ["s-a3", "s-b1"]
    first = assert_ok(busy.run("sessions", "list", "--limit", "2", "--json"))
    assert [s["id"] for s in json.loads(first.stdout)] == ["s-open", "s-a3"]
    cursor = first.stderr.split("--cursor ")[1].strip()
    rest = busy.json("sessions", "list", "--limit", "2", "--cursor", cursor)
    assert [s["id"] for s in rest] == ["s-b2", "s-a2"]
    assert_error(busy.run("sessions", "list", "--cursor", "junk"), Exit.USAGE, "not a cursor")


def test_sessions_index_gives_each_command_s_offset(busy: Bastion) -> None:
    found = busy.json("sessions", "index", "s-a1")
    assert [(e["text"], e["offset"]) for e in found["entries"]] == [
        ("ls /srv", 300.0), ("sudo systemctl restart nginx", 600.0)]  # fmt: skip
    text = assert_ok(busy.run("sessions", "index", "s-a1")).stdout
    assert "300.000s" in text and "sudo systemctl restart nginx" in text
    assert_error(busy.run("sessions", "index", "s-nope"), Exit.NOT_FOUND, "no session")
    shown = busy.json("sessions", "show", "s-a1")
    assert [(c["command"], c["offset"]) for c in shown["commands"]] == [
        ("ls /srv", 300.0), ("sudo systemctl restart nginx", 600.0)]  # fmt: skip


@pytest.mark.parametrize("how", ["ABORT, 'no trace wanted'", "IGNORE"])
def test_replay_and_export_show_nothing_when_the_viewing_cannot_be_chained(
    busy: Bastion, how: str
) -> None:
    refuse(busy, "recording.exported", how)
    out = busy.cwd / "out.cast"
    exported = busy.run("recordings", "export", "s-a1", "--out", str(out))
    assert_error(exported, Exit.STORE, "the recording is not shown")
    assert not out.exists() and exported.stdout == ""
    played = assert_ok(busy.run("replay", "s-a1", "--speed", "1000"))  # the other one is fine
    assert "systemctl restart nginx" in played.stdout
    with sqlite3.connect(busy.db) as conn:
        conn.execute("DROP TRIGGER hide")
    refuse(busy, "recording.replayed", how)
    replayed = busy.run("replay", "s-a1", "--speed", "1000")
    assert_error(replayed, Exit.STORE, "the recording is not shown")
    assert replayed.stdout == ""


def test_export_warns_as_replay_does(busy: Bastion) -> None:
    out = busy.cwd / "open.cast"
    exported = assert_ok(busy.run("recordings", "export", "s-open", "--out", str(out)))
    assert "the session is still open" in exported.stderr
    assert "tail -f /var/log/syslog" in out.read_text()


def test_queries_list_by_session_and_unmask_list_with_rows_shown(busy: Bastion) -> None:
    rows = busy.json("queries", "list", "--session", "s-a2")
    assert [r["sql"] for r in rows] == ["DELETE FROM invoices WHERE id = $1",
                                        "SELECT * FROM customers"]  # fmt: skip
    assert busy.json("unmask", "list") == []


@pytest.fixture
def world(bst: Bastion) -> Iterator[tuple[Bastion, World]]:
    """The sessions of tests/reviewing/world.py, its store still open for the test to close
    s-open (a live recording, flushed, its writer never closed: cut short) its own way."""
    config = load_config(bst.config)
    made: World = build(bst.home, box=SecretBox.load(config.paths.secrets_key),
                        store_path=bst.db, recordings=config.paths.recordings)  # fmt: skip
    yield bst, made


def close_cut_short(made: World, state: str, *, completed: str = "") -> None:
    """s-open closed with a recording cut short: its own hash chained (state closed or
    interrupted), or (completed) a hash covering more than the object holds, with a
    chained recording.completed saying cut short, for the object ("match") or not."""
    row = made.store.session("s-open")
    assert row.recording_path is not None
    digest, size = file_digest(Path(row.recording_path))
    if completed:
        info = RecordingInfo(row.recording_path, "ab" * 32, size + 4096)
        made.store.close_session("s-open", state, "client closed", info)
        said = {"sha256": digest if completed == "match" else "cd" * 32, "size": size,
                "cut_short": True, "node": "b", "completed_by": "a"}  # fmt: skip
        made.store.append_events([Event("recording.completed", "node:a", "", "high", "s-open",
                                        said)])  # fmt: skip
    else:
        made.store.close_session("s-open", state, "node b lost",
                                 RecordingInfo(row.recording_path, digest, size))  # fmt: skip
    made.store.close()


@pytest.mark.parametrize(
    ("state", "completed", "code"),
    [("interrupted", "", Exit.OK), ("closed", "match", Exit.OK),
     ("closed", "", Exit.TAMPERED), ("closed", "other", Exit.TAMPERED)],
)  # fmt: skip
def test_replay_of_a_cut_short_recording_is_tampering_only_when_the_chain_does_not_say_so(
    world: tuple[Bastion, World], state: str, completed: str, code: int
) -> None:
    """A node crash cuts a recording short; the chain says so (the session closed as
    interrupted, or a recording.completed cut short with the object's hash): replay warns
    and exits 0. A cut the chain does not explain, or a hash it does not hold: tampered."""
    bst, made = world
    close_cut_short(made, state, completed=completed)
    replayed = bst.run("replay", "s-open", "--speed", "1000")
    assert replayed.returncode == code, replayed.stderr
    assert "no final chunk" in replayed.stderr and "tail -f /var/log/syslog" in replayed.stdout
    mismatch = "does not match the hash the audit chain holds" in replayed.stderr
    assert mismatch == (completed == "other")
    if code == Exit.OK:
        assert "the audit chain records the cut" in replayed.stderr
