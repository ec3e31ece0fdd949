"""A recording opened for viewing: the audit event is in the chain before its first byte, a
store that will not hold the event means no byte at all, and the checks warn as on the CLI."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from bastion.errors import NotFound, StoreError, UsageError
from bastion.recording import RecordingTampered
from bastion.reviewing.recordings import open_recording
from tests.recording.helpers import lines_of, validate_asciicast_v2, write_lines
from tests.reviewing.conftest import ALICE, BOB, RITA
from tests.reviewing.world import World


class ChainWatcher(io.StringIO):
    """An output that, at its first byte, reads the store's last chained event from a
    connection of its own: what a second process would see at that moment."""

    def __init__(self, db: Path) -> None:
        super().__init__()
        self.db = db
        self.last_at_first_byte: tuple[str, str, str] | None = None

    def write(self, text: str) -> int:
        if self.last_at_first_byte is None and text:
            with sqlite3.connect(self.db) as conn:
                self.last_at_first_byte = conn.execute(
                    "SELECT kind, actor, session_id FROM audit_events ORDER BY seq DESC LIMIT 1"
                ).fetchone()
        return super().write(text)


def kinds(world: World) -> list[str]:
    return [e.kind for e in world.store.events()]


def refuse(world: World, how: str) -> None:
    """An insider's trigger: the viewing's event is refused, or silently dropped."""
    with sqlite3.connect(world.store.file) as conn:
        conn.execute("CREATE TRIGGER hide BEFORE INSERT ON audit_events WHEN NEW.kind LIKE"
                     f" 'recording.%' BEGIN SELECT RAISE({how}); END")  # fmt: skip


@pytest.mark.parametrize("kind", ["recording.replayed", "recording.exported"])
def test_the_viewing_is_chained_before_the_first_byte(world: World, kind: str) -> None:
    opened = open_recording(world.store, world.box, RITA, "s-a1", kind=kind,
                            detail={"via": "web"})  # fmt: skip
    out = ChainWatcher(world.store.file)
    opened.write_asciicast(out)
    assert out.last_at_first_byte == (kind, "rita", "s-a1")
    [event] = [e for e in world.store.events() if e.kind == kind]
    assert event.as_dict()["detail"] == {"target": "web-1", "via": "web"}
    assert event.subject == "alice"
    header, events = validate_asciicast_v2(out.getvalue())
    assert header["version"] == 2
    assert any("systemctl restart nginx" in e[2] for e in events)
    assert opened.warnings == ()


def test_the_browser_gets_the_whole_cast_once_every_chunk_is_authentic(world: World) -> None:
    opened = open_recording(world.store, world.box, ALICE, "s-a1")
    text = opened.asciicast()
    validate_asciicast_v2(text)
    assert "backups  www" in text
    assert opened.public() == {"session": "s-a1", "user": "alice", "target": "web-1",
                               "warnings": []}  # fmt: skip


@pytest.mark.parametrize("how", ["ABORT, 'no trace wanted'", "IGNORE"])
def test_a_store_that_will_not_hold_the_event_means_no_bytes(world: World, how: str) -> None:
    refuse(world, how)
    out = io.StringIO()
    with pytest.raises(StoreError, match="the recording is not shown"):
        opened = open_recording(world.store, world.box, RITA, "s-a1")
        out.write(opened.asciicast())  # never reached: nothing to stream from
    assert out.getvalue() == ""
    assert "recording.replayed" not in kinds(world)


def test_an_engineer_opens_their_own_recording_and_no_one_else_s(world: World) -> None:
    assert open_recording(world.store, world.box, BOB, "s-b1").session.user == "bob"
    with pytest.raises(NotFound, match="no session with id s-a1"):
        open_recording(world.store, world.box, BOB, "s-a1")
    viewings = [e for e in world.store.events() if e.kind == "recording.replayed"]
    assert [(e.actor, e.session_id) for e in viewings] == [("bob", "s-b1")]


def test_a_database_session_has_no_recording(world: World) -> None:
    with pytest.raises(UsageError, match="has no recording"):
        open_recording(world.store, world.box, RITA, "s-a2")


def test_an_open_session_warns_that_it_is_the_recording_so_far(world: World) -> None:
    opened = open_recording(world.store, world.box, RITA, "s-open")
    assert opened.warnings == ("the session is still open: this is the recording so far",)
    assert "tail -f /var/log/syslog" in opened.asciicast()


def test_a_recording_cut_after_it_was_closed_warns_twice_and_the_event_says_so(
    world: World,
) -> None:
    path = Path(str(world.store.session("s-a1").recording_path))
    write_lines(path, lines_of(path)[:-1])  # its final chunk removed: authentic, but short
    opened = open_recording(world.store, world.box, RITA, "s-a1")
    assert [w.split(":")[0] for w in opened.warnings] == [
        "the recording has no final chunk",
        "the recording does not match the hash the audit chain holds for it",
    ]
    [event] = [e for e in world.store.events() if e.kind == "recording.replayed"]
    assert event.as_dict()["detail"]["warnings"] == 2


def test_a_tampered_recording_is_refused_and_no_viewing_is_chained(world: World) -> None:
    path = Path(str(world.store.session("s-a1").recording_path))
    units = lines_of(path)
    units[1], units[2] = units[2], units[1]  # two chunks swapped
    write_lines(path, units)
    with pytest.raises(RecordingTampered):
        open_recording(world.store, world.box, RITA, "s-a1")
    assert "recording.replayed" not in kinds(world)


def test_only_viewing_events_may_be_written(world: World) -> None:
    with pytest.raises(ValueError, match="a viewing is one of"):
        open_recording(world.store, world.box, RITA, "s-a1", kind="session.closed")
