"""Session search (each filter, and together, in pages) and a session's command index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bastion.access.viewing import Viewer
from bastion.audit import SessionFilter
from bastion.errors import Denied, NotFound, StoreError, UsageError
from bastion.recording import read_recording
from bastion.reviewing.sessions import command_index, search_sessions
from tests.reviewing.conftest import ALICE, BOB, OPERATOR, RITA
from tests.reviewing.world import World, day


def ids(world: World, viewer: Viewer = OPERATOR, **wanted: Any) -> list[str]:
    page = search_sessions(world.store, viewer, SessionFilter(**wanted), limit=100)
    assert page.next is None
    return [item["id"] for item in page.items]


ALL = ["s-open", "s-a3", "s-b2", "s-a2", "s-b1", "s-a1"]  # newest first


def test_no_filter_is_every_session_newest_first(world: World) -> None:
    assert ids(world) == ALL


FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"user": "bob"}, ["s-b2", "s-b1"]),
    ({"target": "web-2"}, ["s-a3", "s-b1"]),
    ({"protocol": "postgres"}, ["s-b2", "s-a2"]),
    ({"open_only": True}, ["s-open"]),
    # day 2, midnight to midnight: the session begun at 23:30 counts, the one before not
    ({"since": day(2, 0), "until": day(3, 0)}, ["s-a2", "s-b1"]),
    # day 3: the session that began on day 2 at 23:30 was still open after midnight
    ({"since": day(3, 0), "until": day(4, 0)}, ["s-open", "s-a3", "s-b2", "s-a2"]),
    ({"until": day(2, 0)}, ["s-a1"]),
    # text: a command of an SSH session, any case
    ({"text": "SYSTEMCTL"}, ["s-a1"]),
    # text: a statement of a database session
    ({"text": "delete from invoices"}, ["s-a2"]),
    # % and _ are themselves, not LIKE's wildcards
    ({"text": "100%_"}, ["s-a3"]),
    ({"text": "0%"}, ["s-a3"]),
    ({"text": "nothing like this"}, []),
]


@pytest.mark.parametrize(("wanted", "expected"), FILTERS)
def test_each_filter(world: World, wanted: dict[str, Any], expected: list[str]) -> None:
    assert ids(world, **wanted) == expected


def test_filters_combine(world: World) -> None:
    assert ids(world, user="alice", text="select") == ["s-a2"]
    assert ids(world, user="bob", text="select") == ["s-b2"]
    assert ids(world, user="alice", target="web-1") == ["s-open", "s-a1"]
    assert ids(world, user="alice", target="web-1", open_only=True) == ["s-open"]
    assert ids(world, target="web-2", since=day(3, 0)) == ["s-a3"]
    assert ids(world, user="bob", protocol="ssh", text="shadow", until=day(3, 0)) == ["s-b1"]
    assert ids(world, user="bob", text="systemctl") == []


def test_pages_never_repeat_or_skip_even_as_sessions_arrive(world: World) -> None:
    seen: list[str] = []
    cursor = None
    first = True
    while True:
        page = search_sessions(world.store, OPERATOR, SessionFilter(), cursor=cursor, limit=2)
        assert len(page.items) <= 2
        seen += [item["id"] for item in page.items]
        if first:  # a session opens while the reviewer reads the first page
            world.ssh("s-new", "bob", "web-1", day(4, 9), [(1.0, "uptime", "up")])
            first = False
        if page.next is None:
            break
        cursor = page.next
    assert seen == ALL


def test_sessions_begun_at_the_same_moment_page_by_id(world: World) -> None:
    for sid in ("s-t1", "s-t2", "s-t3"):
        world.psql(sid, "bob", day(5, 9), [(1.0, "select 2")])
    wanted = SessionFilter(since=day(5, 0), protocol="postgres")
    first = search_sessions(world.store, OPERATOR, wanted, limit=2)
    rest = search_sessions(world.store, OPERATOR, wanted, cursor=first.next, limit=2)
    assert [i["id"] for i in first.items + rest.items] == ["s-t3", "s-t2", "s-t1"]
    assert rest.next is None


def test_the_page_is_what_a_json_api_returns_as_is(world: World) -> None:
    page = search_sessions(world.store, OPERATOR, SessionFilter(user="alice"), limit=1)
    data = json.loads(json.dumps(page.public()))
    assert set(data) == {"items", "next"}
    [item] = data["items"]
    assert item["id"] == "s-open" and item["recorded"] is True
    assert "recording_path" not in item  # where recordings lie on disk is not for the page
    assert data["next"] == f"{item['started_at']}~s-open"


@pytest.mark.parametrize("cursor", ["nonsense", "2026-11-16T09:00:00.000000Z~../etc", "~", "1"])
def test_a_cursor_it_did_not_give_is_refused(world: World, cursor: str) -> None:
    with pytest.raises(UsageError, match="not a cursor"):
        search_sessions(world.store, OPERATOR, SessionFilter(), cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_a_page_size_out_of_bounds_is_refused(world: World, limit: int) -> None:
    with pytest.raises(UsageError, match="a page holds"):
        search_sessions(world.store, OPERATOR, SessionFilter(), limit=limit)


def test_a_backwards_date_range_and_an_unknown_protocol_are_refused(world: World) -> None:
    with pytest.raises(UsageError, match="after its start"):
        search_sessions(world.store, OPERATOR, SessionFilter(since=day(3, 0), until=day(2, 0)))
    with pytest.raises(UsageError, match="protocol"):
        search_sessions(world.store, OPERATOR, SessionFilter(protocol="rdp"))


# --- who sees what ---------------------------------------------------------------------------


def test_an_engineer_lists_only_their_own_sessions(world: World) -> None:
    assert ids(world, BOB) == ["s-b2", "s-b1"]
    assert ids(world, ALICE) == ["s-open", "s-a3", "s-a2", "s-a1"]
    assert ids(world, ALICE, text="shadow") == []  # bob's command is not found through alice
    assert ids(world, BOB, user="bob", target="web-2") == ["s-b1"]


def test_an_engineer_asking_for_someone_else_is_refused(world: World) -> None:
    with pytest.raises(Denied, match="only their own"):
        search_sessions(world.store, ALICE, SessionFilter(user="bob"))


def test_reviewers_and_admins_see_everyone_and_other_roles_nothing(world: World) -> None:
    assert ids(world, RITA) == ALL
    assert ids(world, Viewer.user("carol", "admin"), user="bob") == ["s-b2", "s-b1"]
    for viewer in (Viewer.user("mallory", "auditor"), Viewer("x", None, "engineer")):
        with pytest.raises(Denied):
            search_sessions(world.store, viewer, SessionFilter())


# --- the command index -----------------------------------------------------------------------


def test_an_ssh_session_s_commands_with_their_moment_in_the_recording(world: World) -> None:
    found = command_index(world.store, RITA, "s-a1")
    assert found["session"]["id"] == "s-a1" and found["next"] is None
    entries = found["entries"]
    assert [(e["kind"], e["text"], e["offset"]) for e in entries] == [
        ("command", "ls /srv", 300.0),
        ("command", "sudo systemctl restart nginx", 600.0),
    ]
    assert entries[0]["at"] == "2026-11-16T09:05:00.000000Z" and entries[0]["reconstructed"]
    # at each offset, the recording shows the command typed: a click lands on it
    path = world.store.session("s-a1").recording_path
    assert path is not None
    recording = read_recording(Path(path), world.box, "s-a1")
    for entry in entries:
        shown = "".join(e.data for e in recording.events
                        if e.code == "o" and e.elapsed <= entry["offset"])  # fmt: skip
        assert entry["text"] in shown
        later = [e for e in entries if e["offset"] > entry["offset"]]
        assert not any(e["text"] in shown for e in later)
    json.dumps(found)


def test_a_database_session_s_statements_with_their_offsets(world: World) -> None:
    found = command_index(world.store, ALICE, "s-a2")
    assert found["session"]["recorded"] is False
    assert [(e["kind"], e["text"], e["offset"], e["tag"]) for e in found["entries"]] == [
        ("statement", "SELECT * FROM customers", 10.0, "SELECT 1"),
        ("statement", "DELETE FROM invoices WHERE id = $1", 1895.5, "DELETE 1"),
    ]


def test_the_index_pages(world: World) -> None:
    first = command_index(world.store, OPERATOR, "s-a1", limit=1)
    assert [e["text"] for e in first["entries"]] == ["ls /srv"]
    rest = command_index(world.store, OPERATOR, "s-a1", cursor=first["next"], limit=1)
    assert [e["text"] for e in rest["entries"]] == ["sudo systemctl restart nginx"]
    assert rest["next"] is None


def test_someone_else_s_session_is_not_found_as_a_missing_one_is(world: World) -> None:
    with pytest.raises(NotFound) as other:
        command_index(world.store, BOB, "s-a1")
    with pytest.raises(NotFound) as missing:
        command_index(world.store, BOB, "s-nope")
    assert str(other.value) == "no session with id s-a1"
    assert str(missing.value) == "no session with id s-nope"
    assert command_index(world.store, BOB, "s-b1")["entries"][0]["text"] == "cat /etc/shadow"


def test_a_search_text_is_bounded(world: World) -> None:
    assert ids(world, text="x" * 500) == []
    with pytest.raises(UsageError, match="at most 500 characters"):
        search_sessions(world.store, OPERATOR, SessionFilter(text="x" * 501))


def _listed(world: World) -> list[dict[str, Any]]:
    events = world.store.last_events(500)
    return [json.loads(e.detail) for e in events if e.kind == "queries.listed"]


def test_a_database_session_s_index_is_a_reading_of_the_query_log(world: World) -> None:
    before = len(_listed(world))
    index = command_index(world.store, RITA, "s-a2")
    after = _listed(world)
    assert len(after) == before + 1 and len(index["entries"]) == 2
    assert after[-1]["filters"]["via"] == "sessions index" and after[-1]["rows"] == 2
    assert after[-1]["filters"]["session"] == "s-a2"


def test_an_ssh_session_s_index_is_not_a_query_log_reading(world: World) -> None:
    before = len(_listed(world))
    command_index(world.store, RITA, "s-a1")
    assert len(_listed(world)) == before


def test_an_index_that_cannot_be_recorded_shows_nothing(world: World) -> None:
    with sqlite3.connect(world.store.file) as conn:
        conn.execute("CREATE TRIGGER hide BEFORE INSERT ON audit_events WHEN NEW.kind ="
                     " 'queries.listed' BEGIN SELECT RAISE(IGNORE); END")  # fmt: skip
    with pytest.raises(StoreError, match="is not shown"):
        command_index(world.store, RITA, "s-a2")


def test_searching_by_text_is_a_reading_of_the_query_log(world: World) -> None:
    before = len(_listed(world))
    assert ids(world, text="invoices") == ["s-a2"]
    after = _listed(world)
    assert len(after) == before + 1 and after[-1]["filters"]["grep"] == "invoices"
    ids(world, user="bob")  # no text: nothing read of what anyone typed
    assert len(_listed(world)) == before + 1


def test_a_row_given_to_an_engineer_does_not_open_someone_else_s_session(world: World) -> None:
    """An admin with the files (not the key) gives bob's session to alice: the chain's
    session.opened still names bob, so alice is told it does not exist."""
    with sqlite3.connect(world.store.file) as conn:
        conn.execute("UPDATE sessions SET user_id = (SELECT id FROM users WHERE name = 'alice')"
                     " WHERE id = 's-b1'")  # fmt: skip
    with pytest.raises(NotFound, match="no session with id s-b1"):
        command_index(world.store, ALICE, "s-b1")
    assert command_index(world.store, ALICE, "s-a1")["session"]["id"] == "s-a1"


@pytest.mark.parametrize("cursor", ["²", "١٢", "12x"])
def test_a_cursor_of_other_digits_is_refused_not_a_crash(world: World, cursor: str) -> None:
    with pytest.raises(UsageError, match="not a cursor"):
        command_index(world.store, RITA, "s-a1", cursor=cursor)


def test_the_same_searches_on_a_store_on_postgresql(pg_world: World) -> None:
    """The searches and indexes above on one world whose store is on PostgreSQL: the same
    answers (text matched case-insensitively, % and _ as themselves, pages by time then id);
    the tests that write sessions last."""
    w = pg_world
    test_no_filter_is_every_session_newest_first(w)
    for wanted, expected in FILTERS:
        assert ids(w, **wanted) == expected, wanted
    test_filters_combine(w)
    test_an_engineer_lists_only_their_own_sessions(w)
    test_reviewers_and_admins_see_everyone_and_other_roles_nothing(w)
    test_an_ssh_session_s_commands_with_their_moment_in_the_recording(w)
    test_a_database_session_s_statements_with_their_offsets(w)
    test_the_index_pages(w)
    test_someone_else_s_session_is_not_found_as_a_missing_one_is(w)
    test_a_search_text_is_bounded(w)
    test_a_database_session_s_index_is_a_reading_of_the_query_log(w)
    test_searching_by_text_is_a_reading_of_the_query_log(w)
    test_pages_never_repeat_or_skip_even_as_sessions_arrive(w)
    test_sessions_begun_at_the_same_moment_page_by_id(w)
