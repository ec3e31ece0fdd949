"""The relay on bytes alone (no door, socket, store or clock): what goes each way, the audit
records it returns, refusals and their stand-ins, errors swapped or scrubbed, masked rows, and
the decisions it leaves to the pump (end with FATAL, read the unmask grants again)."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bastion import pgwire
from bastion.audit import QueryEnd, QueryStart, UnmaskGrant
from bastion.pgproxy import relay as relay_module
from bastion.pgproxy.guard import Guard
from bastion.pgproxy.relay import LOST_CHECK, REFUSED_SQL, Relay, Step
from bastion.pgproxy.reported import LIFTED
from bastion.pgwire.state import TooMany
from bastion.sqlparse.names import GuardCatalog
from tests.masking.test_session import INT4, field, session

T0 = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)
SYNTAX = pgwire.error_response("ERROR", "42601", 'syntax error at or near "bastion"')
READY = pgwire.ready_for_query("I")
FAILED = pgwire.ready_for_query("E")


def read_relay(**kw: object) -> Relay:
    """A read grant's relay, its names snapshot read (empty: no names of the target's own)."""
    return Relay("s1", "alice", "orders-prod", True, T0, names=GuardCatalog(), **kw)  # type: ignore[arg-type]


def masked_relay() -> Relay:
    guard = Guard(session(), ("customers.id",))
    return Relay("s1", "alice", "shop", False, T0, guard, names=GuardCatalog())


def write_relay() -> Relay:
    return Relay("s1", "alice", "orders-prod", False, T0)


def client(relay: Relay, data: bytes, ns: int = 1_000) -> Step:
    step = relay.client_read(data, T0, ns)
    assert not step.refresh and step.fatal is None and step.error is None and not step.down
    assert not step.ends  # a client read starts statements; replies end them
    return step


def server(relay: Relay, data: bytes, ns: int = 5_000) -> Step:
    step = relay.upstream_read(data, T1, ns)
    assert not step.up and not step.starts
    return step


def error_of(data: bytes) -> dict[str, str]:
    frame = pgwire.Scanner(b"D").feed(data).items[0]
    assert isinstance(frame, pgwire.Frame) and frame.type == b"E"
    return pgwire.error_fields(frame.body)


def function_call() -> bytes:
    """FunctionCall: OID 1299 (now()), no arguments, text result."""
    body = (1299).to_bytes(4, "big") + b"\x00\x00" + b"\x00\x00" + b"\x00\x00"
    return b"F" + (len(body) + 4).to_bytes(4, "big") + body


# -- the relay does no I/O --------------------------------------------------------------


def test_the_relay_module_imports_no_io_no_core_and_no_clock() -> None:
    tree = ast.parse(Path(relay_module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"asyncio", "time", "socket", "bastion.core", "bastion.clock"}
    assert "core" not in Relay.__dataclass_fields__


# -- a read grant -------------------------------------------------------------------------


def test_a_refused_write_goes_upstream_only_as_its_stand_in_and_is_logged() -> None:
    relay = read_relay()
    step = client(relay, pgwire.query("DELETE FROM orders WHERE id = 42"))
    assert bytes(step.up) == pgwire.query(REFUSED_SQL)  # the write never reaches the database
    assert b"DELETE" not in bytes(step.up)
    (start,) = step.starts
    assert isinstance(start, QueryStart)
    assert (start.key, start.session_id, start.user, start.target, start.at, start.step) == (
        "s1:1", "s1", "alice", "orders-prod", T0, "simple",
    )  # fmt: skip
    assert start.refused is not None and "42" not in start.sql  # the literal is not logged
    # The server fails the stand-in where the statement's answer belongs: the client gets
    # the bastion's error, never the syntax error, then ReadyForQuery as the server sent it.
    reply = server(relay, SYNTAX + READY)
    fields = error_of(bytes(reply.down))
    assert fields["C"] == "25006" and "this grant is read-only" in fields["M"]
    assert bytes(reply.down).endswith(READY) and b"42601" not in bytes(reply.down)
    (end,) = reply.ends
    assert isinstance(end, QueryEnd)
    assert (end.key, end.sqlstate, end.finished_at, end.duration_us) == ("s1:1", "25006", T1, 4)
    assert relay.status == "I" and not relay.tracker.busy


def test_an_allowed_read_passes_both_ways_untouched_and_is_logged() -> None:
    relay = read_relay()
    sent = pgwire.query("SELECT id FROM orders WHERE id = 7")
    step = client(relay, sent)
    assert bytes(step.up) == sent
    (start,) = step.starts
    assert start.refused is None and start.kind == "SELECT" and "7" not in start.sql
    rows = (pgwire.row_description([field("id", 2, 1, INT4)]) + pgwire.data_row([b"7"])
            + pgwire.command_complete("SELECT 1") + READY)  # fmt: skip
    reply = server(relay, rows)
    assert bytes(reply.down) == rows
    (end,) = reply.ends
    assert (end.key, end.rows, end.tag, end.sqlstate) == ("s1:1", 1, "SELECT 1", None)
    assert relay.last_input == T0


def test_a_server_error_for_an_allowed_statement_reaches_the_client_as_sent() -> None:
    relay = read_relay()
    client(relay, pgwire.query("SELECT nope FROM orders"))
    error = pgwire.error_response("ERROR", "42703", 'column "nope" does not exist')
    reply = server(relay, error + READY)
    assert bytes(reply.down) == error + READY
    assert [e.sqlstate for e in reply.ends] == ["42703"]


def test_a_refused_parse_in_a_pipeline_fails_in_its_place_and_the_execute_never_runs() -> None:
    relay = read_relay()
    pipeline = (pgwire.parse("", "UPDATE orders SET total = 0") + pgwire.bind("", "", [])
                + pgwire.execute("") + pgwire.sync())  # fmt: skip
    step = client(relay, pipeline)
    stand_in = pgwire.parse("", REFUSED_SQL)
    assert bytes(step.up) == stand_in + pgwire.bind("", "", []) + pgwire.execute("") + pgwire.sync()
    parse, execute = step.starts
    assert (parse.step, execute.step) == ("parse", "execute")
    assert parse.refused is not None and execute.refused is None
    assert execute.sql.startswith("UPDATE")  # an Execute logs the statement it runs
    reply = server(relay, SYNTAX + FAILED)
    assert error_of(bytes(reply.down))["C"] == "25006"
    assert bytes(reply.down).endswith(FAILED)
    assert [(e.key, e.sqlstate, e.tag) for e in reply.ends] == [
        ("s1:1", "25006", None), ("s1:2", None, "not executed"),
    ]  # fmt: skip


def test_a_fast_path_function_call_is_refused_under_a_read_grant() -> None:
    relay = read_relay()
    step = client(relay, function_call())
    assert bytes(step.up) == pgwire.query(REFUSED_SQL)
    (start,) = step.starts
    assert (start.step, start.sql) == ("function", "[fast-path function call: function OID 1299]")
    assert start.refused == "the fast-path function call cannot be checked"


def test_without_the_names_snapshot_a_read_grant_refuses_every_statement() -> None:
    relay = Relay("s1", "alice", "orders-prod", True, T0)
    step = client(relay, pgwire.query("SELECT 1"))
    assert bytes(step.up) == pgwire.query(REFUSED_SQL)
    assert step.starts[0].refused is not None and "names" in step.starts[0].refused


def test_bind_parameters_are_logged_redacted_unless_literals_are_kept() -> None:
    statement = pgwire.parse("q", "SELECT id FROM orders WHERE id = $1")
    execute = pgwire.bind("", "q", params=[b"secret-4711"]) + pgwire.execute("") + pgwire.sync()
    for keep, shown in ((False, False), (True, True)):
        relay = read_relay(keep_literals=keep)
        step = client(relay, statement + execute)
        assert bytes(step.up) == statement + execute
        (run,) = step.starts  # a Parse that is not refused is logged by its Executes
        assert run.parameters is not None and ("secret-4711" in run.parameters) == shown


def test_the_server_lifting_read_only_ends_the_session_and_nothing_reaches_the_client() -> None:
    relay = read_relay()
    client(relay, pgwire.query("SELECT harmless()"))
    lifted = pgwire.parameter_status("default_transaction_read_only", "off")
    reply = server(relay, pgwire.command_complete("SELECT 1") + lifted + READY)
    assert reply.fatal is not None
    assert (reply.fatal.sqlstate, reply.fatal.told) == ("XX000", LIFTED)
    assert not reply.down and not reply.ends


def test_a_setting_that_changes_how_sql_is_read_ends_any_session() -> None:
    relay = write_relay()
    client(relay, pgwire.query("SELECT 1"))
    reply = server(relay, pgwire.parameter_status("standard_conforming_strings", "off"))
    assert reply.fatal is not None and reply.fatal.sqlstate == "XX000"
    assert "standard_conforming_strings" in reply.fatal.why and not reply.down


# -- a write grant ------------------------------------------------------------------------


def test_a_write_grant_forwards_writes_and_logs_the_text_for_the_scribe_to_redact() -> None:
    relay = write_relay()
    sent = pgwire.query("DELETE FROM orders WHERE id = 42")
    step = client(relay, sent)
    assert bytes(step.up) == sent
    (start,) = step.starts
    assert start.raw and start.sql == "DELETE FROM orders WHERE id = 42" and start.refused is None


def test_terminate_ends_the_session_after_what_came_before_it() -> None:
    relay = write_relay()
    sent = pgwire.query("SELECT 1") + pgwire.terminate()
    step = client(relay, sent)
    assert step.ended and bytes(step.up) == sent and len(step.starts) == 1


def test_a_malformed_message_is_reported_after_the_bytes_before_it() -> None:
    relay = write_relay()
    good = pgwire.query("SELECT 1")
    step = relay.client_read(good + b"Q\x00\x00\x00\x01", T0, 0)  # a length below 4
    assert step.error is not None and bytes(step.up) == good and len(step.starts) == 1


# -- a masked session ---------------------------------------------------------------------


def test_a_masked_read_has_its_sensitive_column_masked_and_logged_by_name() -> None:
    relay = masked_relay()
    sent = pgwire.query("SELECT id, email FROM customers")
    step = client(relay, sent)
    assert bytes(step.up) == sent and step.starts[0].refused is None
    rows = (pgwire.row_description([field("id", 1, 1, INT4), field("email", 1, 3)])
            + pgwire.data_row([b"4711", b"jane.doe@example.com"])
            + pgwire.command_complete("SELECT 1") + READY)  # fmt: skip
    reply = server(relay, rows)
    down = bytes(reply.down)
    assert b"jane.doe@example.com" not in down and b"j*******@example.com" in down
    (end,) = reply.ends
    assert end.rows == 1 and end.masking is not None
    assert json.loads(end.masking)["masked"] == ["email"]


def test_a_sensitive_value_in_computed_text_is_caught_by_the_detectors() -> None:
    relay = masked_relay()
    client(relay, pgwire.query("SELECT 'call jane.doe@example.com' AS note, name FROM customers"))
    rows = (pgwire.row_description([field("note"), field("name", 1, 2)])
            + pgwire.data_row([b"call jane.doe@example.com", b"Jane"])
            + pgwire.command_complete("SELECT 1") + READY)  # fmt: skip
    reply = server(relay, rows)
    assert b"jane.doe@example.com" not in bytes(reply.down)
    assert b"call j*******@example.com" in bytes(reply.down)
    (end,) = reply.ends
    assert end.masking is not None and json.loads(end.masking)["detected"] == {"note": {"email": 1}}


def test_a_statement_the_masking_refuses_fails_with_the_bastions_reason() -> None:
    relay = masked_relay()
    step = client(relay, pgwire.query("SELECT lower(email) FROM customers"))
    assert bytes(step.up) == pgwire.query(REFUSED_SQL)
    (start,) = step.starts
    assert start.refused is not None and "unmask" in start.refused
    reply = server(relay, SYNTAX + READY)
    fields = error_of(bytes(reply.down))
    assert fields["C"] == "42501" and fields["M"].startswith("refused by the bastion: ")
    assert b"42601" not in bytes(reply.down) and bytes(reply.down).endswith(READY)
    assert [e.sqlstate for e in reply.ends] == ["42501"]


def test_a_server_error_in_a_masked_read_is_scrubbed_and_its_text_kept_for_the_audit() -> None:
    relay = masked_relay()
    client(relay, pgwire.query("SELECT id, email FROM customers WHERE id = 1"))
    said = 'invalid input syntax for type integer: "123-45-6789"'
    reply = server(relay, pgwire.error_response("ERROR", "22P02", said) + READY)
    down = bytes(reply.down)
    assert b"123-45-6789" not in down and down.endswith(READY)
    assert error_of(down)["C"] == "22P02"
    (end,) = reply.ends
    assert (end.sqlstate, end.server_message) == ("22P02", said)


def test_a_notification_never_reaches_a_masked_client() -> None:
    relay = masked_relay()
    client(relay, pgwire.query("SELECT id FROM customers"))
    note = pgwire.notification_response(77, "leak", "jane.doe@example.com")
    done = pgwire.command_complete("SELECT 0")
    reply = server(relay, note + done + READY)
    assert bytes(reply.down) == done + READY


def test_a_reply_the_masking_cannot_attribute_ends_the_session_with_nothing_sent() -> None:
    relay = masked_relay()
    client(relay, pgwire.query("SELECT id, email FROM customers"))
    stray = pgwire.copy_data(b"jane.doe@example.com\n")  # CopyData outside any COPY
    reply = server(relay, pgwire.command_complete("SELECT 0") + stray + READY)
    assert reply.fatal is not None
    assert (reply.fatal.sqlstate, reply.fatal.told) == ("XX000", LOST_CHECK)
    assert not reply.down and not reply.ends


def test_a_fast_path_function_call_is_refused_in_masked_mode() -> None:
    relay = masked_relay()
    step = client(relay, function_call())
    assert bytes(step.up) == pgwire.query(REFUSED_SQL)
    reply = server(relay, SYNTAX + READY)
    assert error_of(bytes(reply.down))["C"] == "42501"


def _grant(grant_id: int) -> UnmaskGrant:
    return UnmaskGrant(grant_id, "alice", "shop", ("customers.email",), "customers.id", "4711",
                       "ticket", "T-1", None, timedelta(hours=1), "alice", T0, "approved",
                       "bob", T0, T0 + timedelta(hours=1))  # fmt: skip


def test_under_an_unmask_grant_each_read_waits_for_the_grants_to_be_read_again() -> None:
    relay = masked_relay()
    assert relay.guard is not None
    relay.guard.set_grants([_grant(3)])
    sent = pgwire.query("SELECT id, email FROM customers")
    asked = relay.client_read(sent, T0, 0)
    assert asked.refresh and not asked.up and not asked.starts  # nothing taken
    assert relay.counter == 0
    relay.set_grants([_grant(3)])
    taken = client(relay, sent)
    assert bytes(taken.up) == sent and len(taken.starts) == 1
    assert relay.client_read(sent, T0, 0).refresh  # and the next read asks again
    relay.set_grants([])  # revoked: the read is taken, and the next needs no grants
    client(relay, pgwire.sync())
    assert not relay.client_read(pgwire.sync(), T0, 0).refresh


@pytest.mark.parametrize("why", ["upstream lost", "client disconnected"])
def test_statements_in_flight_when_the_connection_ends_are_recorded_as_abandoned(
    why: str,
) -> None:
    relay = write_relay()
    client(relay, pgwire.query("SELECT pg_sleep(60)"), ns=1_000)
    (end,) = relay.abandon(why, T1, 3_001_000)
    assert (end.key, end.tag, end.finished_at, end.duration_us) == ("s1:1", why, T1, 3_000)
    assert not relay.tracker.busy


def test_a_malformed_reply_is_reported_after_the_bytes_before_it() -> None:
    relay = write_relay()
    client(relay, pgwire.query("SELECT 1"))
    done = pgwire.command_complete("SELECT 1")
    step = relay.upstream_read(done + b"Z\x00\x00\x00\x02", T1, 0)  # a length below 4
    assert step.error is not None and bytes(step.down) == done and step.fatal is None


def test_a_read_grants_checked_statements_are_pure_reads_the_pump_may_send_at_once() -> None:
    relay = read_relay()
    assert client(relay, pgwire.query("SELECT 1")).pure
    refused = client(relay, pgwire.query("DELETE FROM orders"))  # only its stand-in goes
    assert refused.pure and refused.up == pgwire.query(REFUSED_SQL)
    extended = (pgwire.parse("q", "SELECT $1::int", ()) + pgwire.bind("", "q", (b"1",))
                + pgwire.execute("") + pgwire.sync())  # fmt: skip
    assert client(relay, extended).pure


def test_a_statement_the_relay_never_saw_parsed_is_not_known_to_be_a_read() -> None:
    relay = read_relay()
    unseen = pgwire.bind("", "earlier", ()) + pgwire.execute("") + pgwire.sync()
    assert not client(relay, unseen).pure
    assert client(relay, pgwire.query("SELECT 1")).pure  # judged afresh at each read


def test_a_write_grants_statements_are_pure_reads_only_when_masked_on_a_read_only_role() -> None:
    assert not client(write_relay(), pgwire.query("SELECT 1")).pure
    assert not client(masked_relay(), pgwire.query("SELECT 1")).pure  # the service role
    masked = masked_relay()
    masked.upstream_read_only = True  # the masked role `target harden` made
    assert client(masked, pgwire.query("SELECT 1")).pure
    lifted = pgwire.parameter_status("default_transaction_read_only", "off")
    server(masked, lifted)  # the server says it no longer is: statements wait again
    assert not client(masked, pgwire.query("SELECT 1")).pure


# -- one protocol state machine: the relay's books follow the server's -------------------

PARSED, BOUND = pgwire.parse_complete(), pgwire.bind_complete()


def one_row(tag: str = "SELECT 1") -> bytes:
    return pgwire.data_row([b"1"]) + pgwire.command_complete(tag)


def test_a_sync_between_pipelined_statements_keeps_the_later_ones_waiting() -> None:
    """P B E S P B E S: the first part fails; its ReadyForQuery does not end the second."""
    relay = write_relay()
    part = [pgwire.parse("", sql, ()) + pgwire.bind("", "", []) + pgwire.execute("")
            + pgwire.sync() for sql in ("SELECT 1/0", "SELECT 1")]  # fmt: skip
    client(relay, b"".join(part))
    division = pgwire.error_response("ERROR", "22012", "division by zero")
    first = server(relay, PARSED + BOUND + division + READY)
    assert [(e.key, e.sqlstate, e.tag) for e in first.ends] == [("s1:1", "22012", None)]
    assert relay.tracker.busy
    second = server(relay, PARSED + BOUND + one_row() + READY)
    assert [(e.key, e.rows, e.tag) for e in second.ends] == [("s1:2", 1, "SELECT 1")]
    assert not relay.tracker.busy


def test_statements_sent_after_an_error_before_the_sync_end_unrun_at_once() -> None:
    relay = write_relay()
    client(relay, pgwire.parse("", "SELECT 1/0", ()) + pgwire.bind("", "", [])
           + pgwire.execute("") + pgwire.flush())  # fmt: skip
    division = pgwire.error_response("ERROR", "22012", "division by zero")
    server(relay, PARSED + BOUND + division)
    later = relay.client_read(pgwire.parse("", "SELECT 2", ()) + pgwire.bind("", "", [])
                              + pgwire.execute("") + pgwire.sync(), T0, 2_000)  # fmt: skip
    assert [s.sql for s in later.starts] == ["SELECT 2"]
    assert [(e.key, e.tag) for e in later.ends] == [("s1:2", "not executed")]
    assert not server(relay, FAILED).ends and not relay.tracker.busy


def test_a_closed_statement_leaves_the_books_and_a_later_execute_names_it_only() -> None:
    relay = write_relay()
    client(relay, pgwire.parse("s1", "SELECT 1", ()) + pgwire.bind("p", "s1", [])
           + pgwire.execute("p") + pgwire.sync())  # fmt: skip
    server(relay, PARSED + BOUND + one_row() + READY)
    assert set(relay.state.statements) == {"s1"}
    client(relay, pgwire.close("S", "s1") + pgwire.sync())
    server(relay, pgwire.close_complete() + READY)
    assert relay.state.statements == {} and relay.state.portals == {}
    again = client(relay, pgwire.bind("p", "s1", []) + pgwire.execute("p") + pgwire.sync())
    assert [s.sql for s in again.starts] == ["[prepared statement 's1']"]


def test_a_session_without_masking_holds_at_most_max_prepared_statements() -> None:
    relay = Relay("s1", "alice", "orders-prod", False, T0, max_prepared=16)
    client(relay, b"".join(pgwire.parse(f"s{n}", "SELECT 1", ()) for n in range(16)))
    with pytest.raises(TooMany, match="more than 16 prepared statements"):
        relay.client_read(pgwire.parse("s16", "SELECT 1", ()), T0, 0)


def test_a_reply_no_request_explains_ends_a_session_without_masking_too() -> None:
    relay = write_relay()
    step = relay.upstream_read(pgwire.parse_complete(), T1, 0)
    assert step.fatal is not None and not step.down
    assert "could not tell which statement" in step.fatal.told
