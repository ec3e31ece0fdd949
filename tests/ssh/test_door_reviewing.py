"""The shared reads on what the real SSH door wrote: an OpenSSH client in tmux, through the
bastion, to the test sshd; then the search, the command index and the browser's recording."""

from __future__ import annotations

from pathlib import Path

from bastion.audit import SessionFilter
from bastion.reviewing.recordings import open_recording
from bastion.reviewing.sessions import command_index, search_sessions
from tests.harness import Bastion
from tests.recording.helpers import validate_asciicast_v2
from tests.reviewing.conftest import ALICE, RITA
from tests.ssh.test_door_sessions import closed_sessions


def test_a_door_written_session_is_found_indexed_and_played(
    bastion: Bastion, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    with ssh.tmux(login="alice+web-1", answers=bastion.answers("alice"), flags=["-t"]) as tmux:
        tmux.wait_for("$ ")
        tmux.type_text("echo first-$((6*7))", enter=True)
        tmux.wait_for("first-42")
        bastion.clock.advance(30)  # the command log's clock: the second command is 30 s on
        tmux.type_text("echo second-$((7*8))", enter=True)
        tmux.wait_for("second-56")
        tmux.type_text("exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    store = bastion.store

    page = search_sessions(store, ALICE, SessionFilter(text="second-$((7*8))"))
    assert [item["id"] for item in page.items] == [session.id]
    assert search_sessions(store, ALICE, SessionFilter(text="third")).items == []

    index = command_index(store, RITA, session.id)
    typed = [(e["text"], e["offset"]) for e in index["entries"] if e["text"].startswith("echo")]
    assert [text for text, _ in typed] == ["echo first-$((6*7))", "echo second-$((7*8))"]
    assert typed[1][1] - typed[0][1] == 30.0

    opened = open_recording(store, bastion.box, RITA, session.id, detail={"via": "web"})
    assert opened.warnings == ()  # closed, whole, and the chain holds its hash
    _, events = validate_asciicast_v2(opened.asciicast())
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "first-42" in output and "second-56" in output
    [viewing] = [e for e in store.events() if e.kind == "recording.replayed"]
    assert (viewing.actor, viewing.subject, viewing.session_id) == ("rita", "alice", session.id)
