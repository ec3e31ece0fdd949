"""`bastion audit verify` checks every query-log row against the chain: an admin with the files
but not the key edits, deletes, copies or swaps statement rows, and each is caught and named.
A store whose statements were chained one event each (before commit events) still verifies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bastion.audit import NewGrant, QueryEnd, QueryStart, Store
from bastion.clock import SystemClock
from tests import test_cli
from tests.audit.first_form import write_first_form
from tests.test_cli import Bastion, assert_ok, assert_tampered, tamper
from tests.test_cli_reviewer_activity import keyed_store

pristine = test_cli.pristine
bst = test_cli.bst
EDITED = "QUERY LOG EDITED"


def start(key: str, sql: str, **kw: object) -> QueryStart:
    at = SystemClock().now() - timedelta(minutes=5)
    return QueryStart(key, "s1", "alice", "db", at, "simple", sql, **kw)  # type: ignore[arg-type]


def end(key: str, rows: int, tag: str) -> QueryEnd:
    at = SystemClock().now() - timedelta(minutes=4)
    return QueryEnd(key, "s1", "alice", "db", at, rows, tag, None, 50, '{"masked": ["c.email"]}')


def session(store: Store) -> None:
    store.add_user("alice", "engineer", None, bytes(16), "admin")
    store.add_target(name="db", kind="postgres", host="127.0.0.1", port=5432, login="x",
                     database="app", secret_sealed=b"x", actor="admin")  # fmt: skip
    now = SystemClock().now()
    grant = store.add_grant(NewGrant(target="db", mode="write", starts_at=now - timedelta(hours=1),
                                     ends_at=now + timedelta(hours=1), reason="INC-1 fix",
                                     actor="admin", user="alice"))  # fmt: skip
    store.open_session(session_id="s1", user="alice", target="db", grant_id=grant.id,
                       protocol="postgres", client_addr="127.0.0.1:5000")  # fmt: skip


@pytest.fixture
def logged(bst: Bastion) -> Bastion:
    """Rows 1-4: q1 and q2 in one commit, q3 started there and ended in the next, q4 there."""
    store = keyed_store(bst)
    session(store)
    store.write_batch([start("q1", "SELECT email FROM customers", kind="SELECT"),
                       end("q1", 2, "SELECT 2"),
                       start("q2", "DROP TABLE invoices", kind="DROP"), end("q2", 0, "DROP TABLE"),
                       start("q3", "DELETE FROM carts", kind="DELETE")])  # fmt: skip
    store.write_batch([end("q3", 40, "DELETE 40"),
                       start("q4", "SELECT 1", kind="SELECT", refused="masked")])  # fmt: skip
    store.close()
    return bst


def test_an_untouched_log_verifies(logged: Bastion) -> None:
    assert "intact" in assert_ok(logged.run("audit", "verify")).stdout


def test_an_edited_statement_is_named(logged: Bastion) -> None:
    tamper(logged.db, "UPDATE queries SET sql = 'SELECT 1' WHERE query_key = 'q2'")
    assert_tampered(
        logged.run("audit", "verify"),
        EDITED,
        "statement q2 in the query log differs from its chained commit (row 2, event",
    )


def test_an_outcome_edited_is_named_against_the_later_commit(logged: Bastion) -> None:
    tamper(logged.db, "UPDATE queries SET rows = 4 WHERE query_key = 'q3'")
    assert_tampered(logged.run("audit", "verify"), EDITED, "statement q3", "(its outcome)")


def test_a_refusal_erased_is_named(logged: Bastion) -> None:
    tamper(logged.db, "UPDATE queries SET refused_reason = NULL WHERE query_key = 'q4'")
    assert_tampered(logged.run("audit", "verify"), EDITED, "statement q4 in the query log differs")


def test_a_deleted_row_is_named(logged: Bastion) -> None:
    tamper(logged.db, "DELETE FROM queries WHERE query_key = 'q1'")
    assert_tampered(logged.run("audit", "verify"), EDITED,
                    "query log row 1, bound by chained commit event")  # fmt: skip


def test_a_copied_row_is_named(logged: Bastion) -> None:
    tamper(
        logged.db,
        "INSERT INTO queries (id, session_id, at, protocol_step, sql, query_key)"
        " SELECT 9, session_id, at, protocol_step, sql, query_key FROM queries WHERE id = 2",
    )
    assert_tampered(logged.run("audit", "verify"), EDITED,
                    "query log row 9 (statement q2) is in no chained commit")  # fmt: skip


def test_two_rows_with_their_ids_swapped_are_both_named(logged: Bastion) -> None:
    tamper(logged.db, "UPDATE queries SET id = 100 WHERE id = 1")
    tamper(logged.db, "UPDATE queries SET id = 1 WHERE id = 2")
    tamper(logged.db, "UPDATE queries SET id = 2 WHERE id = 100")
    message = assert_tampered(logged.run("audit", "verify"), EDITED)
    assert "statement q2 in the query log differs from its chained commit (row 1" in message
    assert "statement q1 in the query log differs from its chained commit (row 2" in message


def test_two_rows_with_their_keys_swapped_are_both_named(logged: Bastion) -> None:
    tamper(logged.db, "UPDATE queries SET query_key = 'x' WHERE query_key = 'q1'")
    tamper(logged.db, "UPDATE queries SET query_key = 'q1' WHERE query_key = 'q2'")
    tamper(logged.db, "UPDATE queries SET query_key = 'q2' WHERE query_key = 'x'")
    message = assert_tampered(logged.run("audit", "verify"), EDITED)
    assert "statement q2 in the query log differs" in message
    assert "statement q1 in the query log differs" in message


def test_a_session_handed_to_someone_else_is_named(logged: Bastion) -> None:
    store = keyed_store(logged)
    store.add_user("bob", "engineer", None, bytes(16), "admin")
    store.close()
    tamper(logged.db, "UPDATE sessions SET user_id = (SELECT id FROM users WHERE name = 'bob')")
    assert_tampered(logged.run("audit", "verify"), EDITED, "session s1 names bob on db")


def test_a_store_of_the_first_form_still_verifies_and_is_checked(bst: Bastion) -> None:
    """Statements chained one event each, then the upgrade: both parts verify, and an edit in
    the old part is still caught (against its statement's own event)."""
    store = keyed_store(bst)
    session(store)
    write_first_form(store, [start("o1", "SELECT 2", kind="SELECT"), end("o1", 1, "SELECT 1"),
                             start("o2", "TRUNCATE t", kind="TRUNCATE")])  # fmt: skip
    write_first_form(store, [end("o2", 0, "TRUNCATE TABLE")])
    store.write_batch([start("n1", "SELECT 3", kind="SELECT"), end("n1", 1, "SELECT 1")])
    store.close()
    assert "intact" in assert_ok(bst.run("audit", "verify")).stdout
    tamper(bst.db, "UPDATE queries SET rows = 7 WHERE query_key = 'o2'")
    assert_tampered(bst.run("audit", "verify"), EDITED, "statement o2 in the query log differs")


def test_a_row_slipped_in_below_the_first_commit_is_named(logged: Bastion) -> None:
    """Ids below the first commit's are of the first form: such a row needs an event of its
    own, which a copy under id 0 has not."""
    tamper(
        logged.db,
        "INSERT INTO queries (id, session_id, at, protocol_step, sql, query_key)"
        " SELECT 0, session_id, at, protocol_step, sql, 'q0' FROM queries WHERE id = 2",
    )
    assert_tampered(logged.run("audit", "verify"), EDITED, "q0 is in the query log but in no")


def test_a_row_added_with_a_time_out_of_any_range_is_named(logged: Bastion) -> None:
    """Every range by time would skip a row whose time is not a time; `queries list` would
    still show it. verify looks at every row by id."""
    tamper(
        logged.db,
        "INSERT INTO queries (id, session_id, at, protocol_step, sql, query_key)"
        " SELECT 50, session_id, 'zzz', protocol_step, 'DROP TABLE x', 'q50' FROM queries"
        " WHERE id = 2",
    )
    assert_tampered(logged.run("audit", "verify"), EDITED, "query log row 50 (statement q50)")


def test_a_row_added_under_a_far_off_id_is_named(logged: Bastion) -> None:
    """An id far beyond every commit's is read and named, without a slot for every id
    between (which would not fit in memory)."""
    tamper(
        logged.db,
        "INSERT INTO queries (id, session_id, at, protocol_step, sql, query_key)"
        " SELECT 4611686018427387904, session_id, at, protocol_step, sql, 'far' FROM queries"
        " WHERE id = 2",
    )
    assert_tampered(logged.run("audit", "verify"), EDITED, "(statement far) is in no chained")
