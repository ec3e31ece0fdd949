"""Red-team: pipelines through the real door that try to make the query log misstate what ran
(the text an Execute is logged with, its outcome, or no outcome at all), or to wedge, crash or
bloat the session's protocol books. Each test asserts what a truthful log must show."""

from __future__ import annotations

import socket

from bastion import pgwire as pw
from bastion.audit.queries import QueryRow
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, wait_for_outcomes
from tests.pgproxy.test_door_admin import frames_until, logged_in
from tests.realpg import PgDatabase, psycopg_connect
from tests.ssh.test_door_admin import wait_until


def _writer(b: Bastion) -> tuple[socket.socket, pw.FrameReader]:
    """wendy, with a write grant on orders-prod, over a raw protocol connection."""
    b.add_user("wendy", password=PASSWORD)
    b.grant("wendy", "orders-prod", mode="write")
    return logged_in(b, "wendy")


def _log(b: Bastion, count: int) -> list[QueryRow]:
    wait_for_outcomes(b, count)
    return list(reversed(b.store.queries()))


def _orders(pg: PgDatabase) -> int:
    with psycopg_connect(pg) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    assert row is not None
    return int(row[0])


def _errors(frames: list[pw.Frame]) -> list[str]:
    return [pw.error_fields(f.body)["C"] for f in frames if f.type == b"E"]


DELETE_ALL = "DELETE FROM orders"
DECOY = "SELECT 1"


REDEFINED = "redefined in an earlier part of this pipeline"


def _refused_in_doubt(frames: list[pw.Frame]) -> None:
    """The bastion refused the Bind or Execute whose definition was still in doubt."""
    [refusal] = [f for f in frames if f.type == b"E" and REDEFINED in pw.error_fields(f.body)["M"]]
    assert pw.error_fields(refusal.body)["C"] == "42501"


def _no_row_ran(rows: list[QueryRow], text: str) -> None:
    """No row of the log says a statement with `text` ran."""
    for row in rows:
        assert not (text in row.sql and row.tag and row.tag != "not executed"), row


# -- A1: a named statement "redefined" by a Parse that fails (its name is taken) -----------


def test_an_execute_is_logged_with_the_text_the_server_ran_not_a_failed_redefinition(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """Parse s1 DELETE; Sync. Then, pipelined: Parse s1 'SELECT 1' (fails: 42P05, s1 exists),
    Sync, Bind s1, Execute, Sync. Which definition the Bind gets depends on an answer not yet
    come, so the bastion refuses the Bind: nothing runs, and no row claims 'SELECT 1' ran."""
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.parse("s1", DELETE_ALL) + pw.sync())
        frames_until(sock, reader, 1)
        sock.sendall(pw.parse("s1", DECOY) + pw.sync()
                     + pw.bind("", "s1", ()) + pw.execute("") + pw.sync())  # fmt: skip
        frames = frames_until(sock, reader, 2)
        sock.sendall(pw.terminate())
    assert _errors(frames)[0] == "42P05"  # prepared statement "s1" already exists
    _refused_in_doubt(frames)
    assert _orders(pg) == before  # the DELETE did not run
    rows = _log(bastion, 2)
    assert [r.step for r in rows if r.refused] == ["bind"]
    _no_row_ran(rows, "SELECT")


# -- A2: the unnamed statement "redefined" by a Parse the server skips ------------------------


def test_an_execute_of_the_unnamed_statement_is_logged_with_what_ran_not_a_skipped_parse(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """Parse '' DELETE; Sync. Then, pipelined: Bind of a missing statement (fails), Parse ''
    'SELECT 1' (skipped: the unnamed statement stays the DELETE), Sync, Bind '', Execute,
    Sync. The second Bind's definition is in doubt: refused, and the DELETE never runs."""
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.parse("", DELETE_ALL) + pw.sync())
        frames_until(sock, reader, 1)
        sock.sendall(pw.bind("", "missing", ()) + pw.parse("", DECOY) + pw.sync()
                     + pw.bind("", "", ()) + pw.execute("") + pw.sync())  # fmt: skip
        frames = frames_until(sock, reader, 2)
        sock.sendall(pw.terminate())
    assert _errors(frames)[0] == "26000"  # prepared statement "missing" does not exist
    _refused_in_doubt(frames)
    assert _orders(pg) == before
    _no_row_ran(_log(bastion, 2), "SELECT")


# -- A3: a named portal "rebound" by a Bind that fails (its name is taken) --------------------


def test_an_execute_of_a_portal_is_logged_with_what_ran_not_a_failed_rebind(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """In a transaction: Bind portal p to a DELETE (not executed), SAVEPOINT. Then, pipelined:
    Bind p to 'SELECT 1' (fails: 42P03, p exists), Sync, ROLLBACK TO the savepoint, Execute p,
    Sync, COMMIT. Which portal Execute p runs is in doubt: refused, and the DELETE never runs."""
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.query("BEGIN") + pw.parse("sd", DELETE_ALL) + pw.parse("ss", DECOY)
                     + pw.bind("p", "sd", ()) + pw.sync() + pw.query("SAVEPOINT a"))  # fmt: skip
        frames_until(sock, reader, 3)
        sock.sendall(pw.bind("p", "ss", ()) + pw.sync()
                     + pw.parse("", "ROLLBACK TO SAVEPOINT a") + pw.bind("", "", ())
                     + pw.execute("") + pw.execute("p") + pw.sync()
                     + pw.query("COMMIT"))  # fmt: skip
        frames = frames_until(sock, reader, 3)
        sock.sendall(pw.terminate())
    assert _errors(frames)[0] == "42P03"  # cursor "p" already exists
    _refused_in_doubt(frames)
    assert _orders(pg) == before
    rows = _log(bastion, 5)
    assert not [r for r in rows if r.tag and r.tag.startswith("DELETE")]
    _no_row_ran(rows, "SELECT $1")


# -- A4 (held): a message sent into a COPY FROM STDIN ------------------------------------------


def test_a_query_sent_into_a_copy_ends_the_session_and_is_not_logged_as_run(
    bastion: Bastion,
) -> None:
    """COPY FROM STDIN; once it waits for data, a Query. The state machine would book the Query
    as owed while the server eats it; PostgreSQL 15 ends the connection instead (protocol
    synchronization lost), so no later reply can be misattributed."""
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.query("COPY orders (customer_id, total) FROM STDIN"))
        assert [f.type for f in frames_until(sock, reader, 1, stop=b"G")] == [b"G"]
        sock.sendall(pw.query(DECOY))  # eaten by the COPY
        frames = frames_until(sock, reader, 99)  # to the end of the connection
    assert _errors(frames)[:2] == ["08P01", "08P01"]  # ...then the bastion's 08006
    rows = _log(bastion, 2)
    assert [(r.sql.split()[0], r.tag) for r in rows] == [
        ("COPY", "upstream lost"), ("SELECT", "upstream lost")]  # fmt: skip


# -- A5: a reply the books cannot explain loses the outcomes read with it ---------------------


def _pbe(sql: str) -> bytes:
    return pw.parse("", sql) + pw.bind("", "", ()) + pw.execute("")


def test_statements_answered_in_the_read_that_ends_the_session_keep_their_outcome(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """BEGIN; then, pipelined: DELETE, COMMIT, COPY FROM STDIN, and a Parse behind it. The
    server answers DELETE, COMMIT and the CopyInResponse in one write; the CopyInResponse with
    a request queued behind it is a reply the books cannot explain, and the session ends. The
    DELETE ran and was committed, but its outcome was in the same read: it is never logged."""
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.query("BEGIN"))
        frames_until(sock, reader, 1)
        sock.sendall(_pbe(DELETE_ALL) + _pbe("COMMIT")
                     + _pbe("COPY orders (customer_id, total) FROM STDIN")
                     + pw.parse("", DECOY) + pw.sync())  # fmt: skip
        frames = frames_until(sock, reader, 99)  # to the end of the connection
    assert _errors(frames) == ["XX000"]  # the bastion could not tell which statement...
    assert _orders(pg) == 0 < before  # the DELETE ran, and was committed
    wait_until(lambda: not bastion.store.sessions(open_only=True))
    wait_for_outcomes(bastion, 2)  # outcomes are posted: they follow the rows
    rows = list(reversed(bastion.store.queries()))
    [delete] = [r for r in rows if r.sql.startswith("DELETE")]
    assert (delete.tag, delete.rows) == (f"DELETE {before}", before), delete


# -- A9: statements and portals changed by SQL (DEALLOCATE/PREPARE, CLOSE/DECLARE) ------------


def test_a_statement_redefined_by_sql_is_not_logged_with_its_old_protocol_text(
    bastion: Bastion,
) -> None:
    """Read grant. Parse s1 'SELECT 1'; then DEALLOCATE s1 and PREPARE s1 AS a read of every
    SSN, by simple Query (both allowed); then Bind s1, Execute. The relay's table still holds
    the Parse, so the Execute's row says 'SELECT 1' over the 1000 SSNs it returned."""
    sock, reader = logged_in(bastion)
    with sock:
        sock.sendall(pw.parse("s1", DECOY) + pw.sync() + pw.query("DEALLOCATE s1")
                     + pw.query("PREPARE s1 AS SELECT ssn FROM customers"))  # fmt: skip
        frames_until(sock, reader, 3)
        sock.sendall(pw.bind("", "s1", ()) + pw.execute("") + pw.sync())
        frames = frames_until(sock, reader, 1)
        sock.sendall(pw.terminate())
    ran = sum(f.type == b"D" for f in frames)
    assert ran > 1 and not _errors(frames)
    execute = _log(bastion, 3)[-1]
    assert execute.rows == ran
    assert "ssn" in execute.sql or execute.sql.startswith("[prepared"), execute.sql


def test_a_portal_redeclared_by_sql_is_not_logged_with_its_old_protocol_text(
    bastion: Bastion,
) -> None:
    """Read grant. BEGIN; Bind portal p to 'SELECT 1'; then CLOSE p and DECLARE p CURSOR FOR a
    read of every SSN, by simple Query; then Execute p. The Execute's row says 'SELECT 1'."""
    sock, reader = logged_in(bastion)
    with sock:
        sock.sendall(pw.query("BEGIN") + pw.parse("s1", DECOY) + pw.bind("p", "s1", ())
                     + pw.sync() + pw.query("CLOSE p")
                     + pw.query("DECLARE p CURSOR FOR SELECT ssn FROM customers"))  # fmt: skip
        frames_until(sock, reader, 4)
        sock.sendall(pw.execute("p") + pw.sync())
        frames = frames_until(sock, reader, 1)
        sock.sendall(pw.terminate())
    ran = sum(f.type == b"D" for f in frames)
    assert ran > 1 and not _errors(frames)
    execute = _log(bastion, 4)[-1]
    assert execute.rows == ran
    assert "ssn" in execute.sql or execute.sql.startswith("[prepared"), execute.sql


# -- A11: a fast-path function call under a write grant ----------------------------------------


def _function_call(oid: int, *args: bytes) -> bytes:
    """FunctionCall of `oid` with text arguments, text result."""
    body = oid.to_bytes(4, "big") + b"\x00\x00" + len(args).to_bytes(2, "big")
    body += b"".join(len(a).to_bytes(4, "big") + a for a in args) + b"\x00\x00"
    return b"F" + (len(body) + 4).to_bytes(4, "big") + body


def test_a_fast_path_call_is_logged_with_the_function_it_ran(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """Write grant: a FunctionCall of a function that deletes every order. The row says only
    '[fast-path function call]': not which function, nor its arguments."""
    with psycopg_connect(pg, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION wipe(reason text) RETURNS int LANGUAGE sql"
                     " AS 'WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*)::int"
                     " FROM d'")  # fmt: skip
        found = conn.execute("SELECT 'wipe'::regproc::oid").fetchone()
    assert found is not None
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(_function_call(int(found[0]), b"cleanup"))
        frames = frames_until(sock, reader, 1)
        sock.sendall(pw.terminate())
    assert [f.type for f in frames] == [b"V", b"Z"]
    assert _orders(pg) == 0 < before
    [row] = _log(bastion, 1)
    assert "wipe" in row.sql or str(found[0]) in row.sql, row


# -- A13: a simple Query of several statements is logged with its last tag only --------------


def test_a_multi_statement_query_is_not_logged_as_touching_only_its_last_statements_rows(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """'DELETE FROM orders; SELECT 1': the row's tag is 'SELECT 1' and its rows 1 (the module
    says 'the sum of rows'); the 5000 rows deleted are in no count of the log."""
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.query(DELETE_ALL + "; " + DECOY))
        frames_until(sock, reader, 1)
        sock.sendall(pw.terminate())
    assert _orders(pg) == 0 < before
    [row] = _log(bastion, 1)
    assert row.rows is not None and row.rows >= before, row


# -- held: what the books got right ------------------------------------------------------------


def test_held_close_then_redefine_in_flight_logs_the_new_text(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """Close s1 (a DELETE), Parse s1 'SELECT 1', Bind, Execute, all in flight: the server runs
    the new text, and the log says so."""
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.parse("s1", DELETE_ALL) + pw.sync())
        frames_until(sock, reader, 1)
        sock.sendall(pw.close("S", "s1") + pw.parse("s1", DECOY) + pw.bind("", "s1", ())
                     + pw.execute("") + pw.sync())  # fmt: skip
        frames_until(sock, reader, 1)
        sock.sendall(pw.terminate())
    assert _orders(pg) == before
    [row] = _log(bastion, 1)
    assert (row.sql, row.tag) == ("SELECT $1", "SELECT 1")


def test_held_function_call_and_query_mid_pipeline_and_suspended_portals(
    bastion: Bastion,
) -> None:
    """BEGIN; P B E, a fast-path call and a simple Query before the Sync, then a portal run
    two rows at a time: each row of the log has its own outcome, in order."""
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(pw.query("BEGIN") + _pbe("SELECT 1") + _function_call(1299)
                     + pw.query("SELECT 2") + pw.sync()
                     + pw.parse("g", "SELECT generate_series(1, 5)") + pw.bind("p", "g", ())
                     + pw.execute("p", 2) + pw.execute("p", 2) + pw.execute("p", 0)
                     + pw.sync() + pw.query("COMMIT"))  # fmt: skip
        frames_until(sock, reader, 6)
        sock.sendall(pw.terminate())
    rows = _log(bastion, 8)
    assert [(r.step, r.rows, r.tag) for r in rows] == [
        ("simple", None, "BEGIN"),
        ("execute", 1, "SELECT 1"),
        ("function", None, None),
        ("simple", 1, "SELECT 1"),
        ("execute", 2, None),  # suspended
        ("execute", 2, None),
        ("execute", 1, "SELECT 1"),
        ("simple", None, "COMMIT"),
    ]


def test_held_copy_from_stdin_in_a_pipeline_with_syncs_inside_and_after(
    bastion: Bastion,
) -> None:
    """Extended COPY FROM STDIN with Syncs during the copy (swallowed), CopyFail, Sync, then
    a second COPY that succeeds and a query behind it, all in one write: each row's outcome
    is its own."""
    copy = "COPY orders (customer_id, total) FROM STDIN"
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(_pbe(copy) + pw.sync())
        frames_until(sock, reader, 1, stop=b"G")
        sock.sendall(pw.copy_data(b"1\t2\n") + pw.sync() + pw.flush()
                     + pw.copy_fail("no") + pw.sync())  # fmt: skip
        frames_until(sock, reader, 1)
        sock.sendall(pw.query(copy))
        frames_until(sock, reader, 1, stop=b"G")
        sock.sendall(pw.copy_data(b"1\t2\n1\t3\n") + pw.copy_done() + pw.query("SELECT 1"))
        frames_until(sock, reader, 2)
        sock.sendall(pw.terminate())
    rows = _log(bastion, 3)
    assert [(r.sql.split()[0], r.tag, r.sqlstate) for r in rows] == [
        ("COPY", None, "57014"),
        ("COPY", "COPY 2", None),
        ("SELECT", "SELECT 1", None),
    ]


def test_a_committed_delete_keeps_its_outcome_when_a_setting_ends_the_session(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """Write grant, one pipeline: DELETE, then SET standard_conforming_strings = off, Sync.
    The server commits both and answers them in one write; the ParameterStatus ends the
    session (rightly), but the DELETE's CommandComplete, in the same read, is dropped with it:
    its row never gets an outcome, though every order is gone. (A simpler trigger for A5.)"""
    before = _orders(pg)
    sock, reader = _writer(bastion)
    with sock:
        sock.sendall(_pbe(DELETE_ALL) + _pbe("SET standard_conforming_strings = off") + pw.sync())
        frames = frames_until(sock, reader, 99)  # to the end of the connection
    assert _errors(frames) == ["XX000"]
    assert _orders(pg) == 0 < before  # committed
    wait_until(lambda: not bastion.store.sessions(open_only=True))
    wait_for_outcomes(bastion, 2)  # outcomes are posted: they follow the rows
    [delete] = [r for r in bastion.store.queries() if r.sql.startswith("DELETE")]
    assert delete.tag == f"DELETE {before}", delete


def test_a_read_grant_cannot_hide_what_it_read_behind_a_failed_redefinition(
    bastion: Bastion,
) -> None:
    """A1 under a read grant: Parse s1 reading every SSN; Sync; Parse s1 'SELECT 1' (42P05),
    Sync, Bind s1, Execute, Sync. The Bind is refused: no SSN comes back under a row that
    says 'SELECT 1'."""
    sock, reader = logged_in(bastion)
    with sock:
        sock.sendall(pw.parse("s1", "SELECT ssn FROM customers") + pw.sync())
        frames_until(sock, reader, 1)
        sock.sendall(pw.parse("s1", DECOY) + pw.sync()
                     + pw.bind("", "s1", ()) + pw.execute("") + pw.sync())  # fmt: skip
        frames = frames_until(sock, reader, 2)
        sock.sendall(pw.terminate())
    assert not [f for f in frames if f.type == b"D"]
    _refused_in_doubt(frames)
    _no_row_ran(_log(bastion, 2), "SELECT")


def test_a_parse_behind_a_refusal_does_not_lend_its_text_past_the_sync(
    bastion: Bastion,
) -> None:
    """Read grant. s1 reads every SSN. Then, pipelined: Parse s1 DELETE (refused: its stand-in
    fails, so the server skips to Sync), Parse s1 'SELECT 1' (skipped), Sync, Bind s1, Execute,
    Sync. The Bind is refused in doubt: no SSN comes back under a row saying 'SELECT 1'."""
    sock, reader = logged_in(bastion)
    with sock:
        sock.sendall(pw.parse("s1", "SELECT ssn FROM customers") + pw.sync())
        frames_until(sock, reader, 1)
        sock.sendall(pw.parse("s1", DELETE_ALL) + pw.parse("s1", DECOY) + pw.sync()
                     + pw.bind("", "s1", ()) + pw.execute("") + pw.sync())  # fmt: skip
        frames = frames_until(sock, reader, 2)
        sock.sendall(pw.terminate())
    assert not [f for f in frames if f.type == b"D"]
    _refused_in_doubt(frames)
    rows = _log(bastion, 3)
    assert rows[0].refused is not None
    _no_row_ran(rows, "SELECT")
