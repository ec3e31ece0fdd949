"""The protocol state machine on message sequences: attribution, skip to Sync, COPY, tables."""

from __future__ import annotations

import pytest

from bastion.pgwire.state import DONE, FAILED, SKIPPED, ProtocolState, StateError, TooMany


def test_a_simple_query_with_several_statements_counts_each_and_ends_at_ready() -> None:
    s = ProtocolState()
    q = s.query("q")
    for reply in (b"T", b"D", b"C", b"T", b"D", b"D", b"C"):
        assert s.server(reply) is q
    assert q.results == 2 and q.outcome == 0
    assert s.server(b"Z", "I") is q and q.outcome == DONE and s.head is None


def test_an_error_in_a_simple_query_ends_its_statement_but_not_the_query() -> None:
    s = ProtocolState()
    q = s.query()
    assert s.server(b"C") is q and s.server(b"E") is q and q.results == 2
    assert not s.skipped and s.server(b"Z", "I") is q


def test_asynchronous_messages_answer_nothing() -> None:
    s = ProtocolState()
    q = s.query()
    for reply in (b"N", b"S", b"A"):
        assert s.server(reply) is None
    assert s.head is q


def test_an_extended_error_skips_what_was_sent_up_to_the_sync() -> None:
    s = ProtocolState()
    p, b, e, e2 = s.parse("s1"), s.bind("p1", "s1"), s.execute("p1"), s.execute("p1")
    sync = s.sync()
    after = s.execute("")
    s.sync()
    assert s.server(b"1") is p and s.server(b"E") is b
    assert (p.outcome, b.outcome, e.outcome, e2.outcome) == (DONE, FAILED, SKIPPED, SKIPPED)
    assert s.skipped == [e, e2]
    assert s.server(b"Z", "I") is sync
    assert s.server(b"C") is after  # the next Sync's requests run
    assert "s1" in s.statements and not s.portals


def test_messages_sent_after_the_error_and_before_the_sync_are_skipped_at_once() -> None:
    s = ProtocolState()
    e = s.execute("")
    assert s.server(b"E") is e and s.head is None
    late = s.execute("")
    query = s.query()
    assert late.outcome == SKIPPED and query.outcome == SKIPPED  # the server drops both
    sync = s.sync()
    assert s.server(b"Z", "I") is sync


def test_a_failing_commit_answers_the_sync_and_its_ready_follows() -> None:
    s = ProtocolState()
    e, sync = s.execute(""), s.sync()
    assert s.server(b"C") is e and s.server(b"E") is sync and s.server(b"Z", "I") is sync


def test_describe_of_a_statement_and_of_a_portal() -> None:
    s = ProtocolState()
    ds, dp = s.describe(b"S", "s1"), s.describe(b"P", "")
    assert s.server(b"t") is ds and s.server(b"T") is ds and s.server(b"n") is dp
    with pytest.raises(StateError):
        ProtocolState().server(b"t")
    portal = ProtocolState()
    portal.describe(b"P", "")
    with pytest.raises(StateError):
        portal.server(b"t")


def test_tables_follow_the_replies_close_and_transaction_end() -> None:
    s = ProtocolState()
    s.parse("s1", "SELECT 1")
    s.bind("p1", "s1")
    s.sync()
    assert not s.statements  # nothing is in a table before the server says so
    s.server(b"1")
    s.server(b"2")
    assert s.statements["s1"].tag == "SELECT 1" and s.portals["p1"].statement == "s1"
    s.server(b"Z", "T")
    assert "p1" in s.portals  # inside a transaction the portal stays
    s.close(b"S", "s1")
    s.sync()
    s.server(b"3")
    s.server(b"Z", "I")
    assert not s.statements and not s.portals


def test_a_simple_query_drops_the_unnamed_statement_and_portal() -> None:
    s = ProtocolState()
    s.parse("")
    s.bind("", "")
    s.sync()
    for reply in (b"1", b"2"):
        s.server(reply)
    s.server(b"Z", "T")
    assert "" in s.statements and "" in s.portals
    s.query()
    s.server(b"C")
    s.server(b"Z", "T")
    assert "" not in s.statements and "" not in s.portals


def test_replies_in_the_wrong_place_break_the_conversation() -> None:
    for sent, reply in ((b"P", b"2"), (b"B", b"1"), (b"E", b"Z"), (b"S", b"C"), (b"Q", b"n")):
        s = ProtocolState()
        s.client(sent)
        with pytest.raises(StateError):
            s.server(reply)
    with pytest.raises(StateError):
        ProtocolState().server(b"Z", "I")
    with pytest.raises(StateError):
        ProtocolState().server(b"W")  # CopyBothResponse: replication, never expected


def test_copy_to_stdout_runs_inside_its_statement() -> None:
    s = ProtocolState()
    q = s.query()
    for reply in (b"H", b"d", b"d", b"c", b"C"):
        assert s.server(reply) is q
    assert s.server(b"Z", "I") is q
    broken = ProtocolState()
    broken.query()
    broken.server(b"H")
    with pytest.raises(StateError):
        broken.server(b"C")  # no CopyDone


def test_copy_from_stdin_swallows_the_syncs_sent_inside_it() -> None:
    s = ProtocolState()
    e = s.execute("")
    s.sync()  # sent ahead, read by the server while copying: swallowed
    assert s.server(b"G") is e
    assert s.sync() is None  # still inside the COPY's data
    s.copy_end()
    assert s.server(b"C") is e and s.head is None
    sync = s.sync()
    assert s.server(b"Z", "I") is sync


def test_copy_done_before_the_copy_began_ends_it_when_it_begins() -> None:
    s = ProtocolState()
    q = s.query()
    s.copy_end()
    s.sync()  # after CopyDone: a real Sync again
    assert s.server(b"G") is q
    assert s.server(b"C") is q and s.server(b"Z", "I") is q
    assert s.head is not None and s.head.kind == b"S"


def test_a_request_pipelined_into_copy_data_breaks_it() -> None:
    s = ProtocolState()
    s.query()
    s.execute("")
    with pytest.raises(StateError):
        s.server(b"G")


def test_the_tables_and_the_queue_are_bounded_before_anything_is_sent() -> None:
    s = ProtocolState(max_statements=2, max_portals=1, max_in_flight=5)
    s.parse("a")
    s.parse("b")
    s.parse("")  # the unnamed one replaces itself: never counted
    with pytest.raises(TooMany, match="more than 2 prepared statements"):
        s.parse("c")
    s.bind("p", "a")
    with pytest.raises(TooMany, match="more than 1 open portals"):
        s.bind("q", "a")
    s.sync()
    with pytest.raises(TooMany, match="more than 5 requests in flight"):
        s.execute("")
    for reply in (b"1", b"1", b"1", b"2"):
        s.server(reply)
    s.server(b"Z", "I")
    with pytest.raises(TooMany):
        s.parse("c")  # two exist now
    s.close(b"S", "a")
    s.sync()
    s.server(b"3")
    s.server(b"Z", "I")
    assert s.parse("c").kind == b"P"


def test_a_function_call_ends_at_ready() -> None:
    s = ProtocolState()
    f = s.function_call()
    assert s.server(b"V") is f and s.server(b"Z", "I") is f
    g = s.function_call()
    assert s.server(b"E") is g and not s.skipped and s.server(b"Z", "I") is g


def test_an_error_nobody_asked_for_answers_nothing() -> None:
    assert ProtocolState().server(b"E") is None  # a FATAL as the server shuts down
