"""Client text with NUL in it: one escaping, reversible, for every engine (bastion/audit/nul.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import Event, FileOp, Store
from bastion.audit.location import PgLocation
from bastion.audit.nul import MARK, escape, restore
from bastion.clock import FakeClock

TRICKY = ["", "plain", "\x00", MARK, MARK + "0", "\x00" + MARK, MARK + "\x00", "a\x00\x000b",
          MARK * 3 + "0", "0\x00" + MARK + MARK + "\x00"]  # fmt: skip


@pytest.mark.parametrize("text", TRICKY)
def test_escaping_is_reversible_and_leaves_no_nul(text: str) -> None:
    stored = escape(text)
    assert "\x00" not in stored
    assert restore(stored) == text


def test_distinct_texts_are_stored_distinct() -> None:
    assert len({escape(t) for t in TRICKY}) == len(TRICKY)


def test_text_without_either_character_is_stored_unchanged() -> None:
    assert escape("ls -la /tmp 'a\\0b' %_") == "ls -la /tmp 'a\\0b' %_"


@pytest.mark.parametrize("stored", [MARK, "a" + MARK, MARK + "x"])
def test_text_escape_could_not_have_made_is_refused(stored: str) -> None:
    with pytest.raises(ValueError, match="lone"):
        restore(stored)


@pytest.fixture
def store(store_at: Path | PgLocation) -> Store:
    made = Store.create(store_at, FakeClock())
    made.add_user("alice", "engineer", None, b"sealed", "cli:root")
    made.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="deploy",
                    database=None, secret_sealed=b"sealed", actor="cli:root")  # fmt: skip
    made.open_session(session_id="s1", user="alice", target="web-1", grant_id=None,
                      protocol="ssh", client_addr="127.0.0.1")  # fmt: skip
    return made


def test_an_sftp_path_with_a_nul_is_stored_escaped(store: Store) -> None:
    """OpenSSH's sftp-server never answers a path with a NUL (it drops the channel), so the
    door logs none from it; another server may, and the store must hold what it logs."""
    at = FakeClock().now()
    store.log_file_ops("s1", [FileOp(at, "rename", "/srv/a\x00b", "/srv/c\x00" + MARK,
                                     status="fail: no\x00such")])  # fmt: skip
    [op] = store.file_ops("s1")
    assert (op.path, op.path2, op.status) == ("/srv/a\u24000b", "/srv/c\u24000\u2400\u2400",
                                              "fail: no\u24000such")  # fmt: skip
    assert restore(op.path) == "/srv/a\x00b"


def test_a_nul_in_an_events_actor_or_subject_is_chained_escaped(store: Store) -> None:
    [event] = store.append_events([Event("test.nul", "ssh:a\x00b", "c\x00", "notice")])
    assert (event.actor, event.subject) == ("ssh:a\u24000b", "c\u24000")
    assert store.last_events(1)[0] == event
    assert store.verify_chain().ok


def test_a_sessions_end_and_kill_reasons_are_stored_escaped(store: Store) -> None:
    """A reason may quote what a client sent (an error naming its path, an admin's words)."""
    store.request_kill("s1", "cli:admin", "stop\x00now")
    assert store.pending_kills() == [("s1", "cli:admin", "stop\u24000now")]
    store.close_session("s1", "killed", "ended: bad path /a\x00b")
    [row] = store.sessions()
    assert row.end_reason == "ended: bad path /a\u24000b"
    assert store.verify_chain().ok
