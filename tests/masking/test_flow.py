"""Replies matched to the messages they answer, in simple and extended protocol, pipelines with
errors, and a Describe injected when a client executes a portal it never described."""

from __future__ import annotations

import pytest

from bastion.masking.flow import Flow, FlowError
from bastion.masking.lineage import Refused
from bastion.pgwire.state import ProtocolState, TooMany
from tests.masking.test_session import INT4, field, session

CUSTOMERS = "SELECT id, email FROM customers"
FIELDS = [field("id", 1, 1, INT4), field("email", 1, 3)]


def flow() -> Flow:
    return Flow(session())


def test_a_simple_query_gets_its_mask_and_ends_at_ready() -> None:
    f = flow()
    f.query(CUSTOMERS)
    assert f.row_description(FIELDS)
    mask = f.rows_mask()
    assert mask is not None and mask.masked == ["email"]
    f.completed()
    f.ready()
    assert not f.queue


def test_a_query_without_rows_and_one_that_fails() -> None:
    f = flow()
    f.query("SET application_name = 'x'")
    f.completed()
    f.ready()
    f.query(CUSTOMERS)
    f.error()
    f.ready()
    assert not f.queue


def test_a_refused_statement_queues_nothing() -> None:
    f = flow()
    with pytest.raises(Refused):
        f.query("SELECT lower(email) FROM customers")
    with pytest.raises(Refused):
        f.parse("s1", "COPY customers FROM STDIN")
    assert not f.queue


def test_extended_protocol_with_describe() -> None:
    f = flow()
    f.parse("", CUSTOMERS)
    f.bind("", "")
    f.describe("P", "")
    assert not f.execute("")  # described: nothing to inject
    f.sync()
    f.acknowledged()
    f.acknowledged()
    assert f.row_description(FIELDS)
    mask = f.rows_mask()
    assert mask is not None and mask.masked == ["email"]
    f.completed()
    f.ready()
    assert not f.queue


def test_a_portal_never_described_gets_a_describe_whose_reply_is_swallowed() -> None:
    f = flow()
    f.parse("", CUSTOMERS)
    f.bind("", "")
    assert f.execute("")
    f.sync()
    f.acknowledged()
    f.acknowledged()
    assert not f.row_description(FIELDS)  # the injected Describe's reply: not for the client
    mask = f.rows_mask()
    assert mask is not None and mask.masked == ["email"]
    f.completed()
    f.ready()


def test_a_statement_described_once_serves_its_later_portals() -> None:
    f = flow()
    f.parse("s1", CUSTOMERS)
    f.describe("S", "s1")
    f.sync()
    f.acknowledged()
    f.parameter_description()
    assert f.row_description(FIELDS)
    f.ready()
    f.bind("p1", "s1")
    assert not f.execute("p1")
    f.sync()
    f.acknowledged()
    mask = f.rows_mask()
    assert mask is not None and mask.masked == ["email"]
    f.completed()
    f.ready()


def test_an_error_in_a_pipeline_skips_to_its_sync() -> None:
    f = flow()
    for portal in ("a", "b"):
        f.parse("", CUSTOMERS)
        f.bind(portal, "")
        f.execute(portal)
        f.sync()
    f.acknowledged()
    f.acknowledged()
    f.row_description(FIELDS)
    f.error()  # the first Execute failed: the server skips to the first Sync
    f.ready()
    f.acknowledged()
    f.acknowledged()
    f.row_description(FIELDS)
    assert f.rows_mask() is not None
    f.completed()
    f.ready()
    assert not f.queue


def test_a_reply_nobody_asked_for_ends_the_session() -> None:
    f = flow()
    with pytest.raises(FlowError):
        f.rows_mask()
    f.query(CUSTOMERS)
    with pytest.raises(FlowError):
        f.acknowledged()


def test_a_query_with_nothing_to_mask_is_forwarded_untouched() -> None:
    f = flow()
    f.query("SELECT id FROM customers")
    f.row_description([field("id", 1, 1, INT4)])
    assert f.rows_mask() is None


UNION = "SELECT email FROM customers UNION ALL SELECT email FROM customers"
NO_ORIGIN = [field("email", 0, 0)]  # a UNION's column: the server names no table for it


def test_a_parse_the_server_skipped_does_not_replace_the_statement_it_runs() -> None:
    """After an error the server skips to Sync: a Parse sent there never ran, so a later Bind
    binds the statement that was there before, and its rows get that statement's plan."""
    f = flow()
    f.parse("", UNION)
    f.sync()
    f.acknowledged()
    f.ready()
    f.bind("p", "missing")  # fails: the server skips to the Sync
    f.parse("", "SELECT 'x' AS email")  # skipped: the UNION stays the unnamed statement
    f.sync()
    f.bind("", "")
    assert f.execute("")
    f.sync()
    f.error()
    f.ready()
    f.acknowledged()
    assert not f.row_description(NO_ORIGIN)
    mask = f.rows_mask()
    assert mask is not None and mask.masked == ["email"]


def test_a_named_parse_refused_as_a_duplicate_leaves_the_first_plan_in_force() -> None:
    f = flow()
    f.parse("s1", UNION)
    f.parse("s1", "SELECT 'x' AS email")  # the server: prepared statement "s1" already exists
    f.sync()
    f.bind("p1", "s1")
    f.describe("P", "p1")
    f.execute("p1")
    f.sync()
    f.acknowledged()
    f.error()
    f.ready()
    f.acknowledged()
    assert f.row_description(NO_ORIGIN)
    mask = f.rows_mask()
    assert mask is not None and mask.masked == ["email"]


def test_the_statement_table_is_bounded_before_the_parse_goes_upstream() -> None:
    f = Flow(session(), ProtocolState(max_statements=2))
    f.parse("s1", CUSTOMERS)
    f.parse("s2", CUSTOMERS)
    with pytest.raises(TooMany, match="more than 2 prepared statements"):
        f.parse("s3", CUSTOMERS)
    f.parse("", CUSTOMERS)  # the unnamed statement replaces itself
    assert len(f.queue) == 3


def test_a_long_pipeline_costs_linear_time_and_stays_attributed() -> None:
    """Executes far from their Bind get a Describe rather than a search through the queue."""
    f = flow()
    f.parse("s1", CUSTOMERS)
    f.describe("S", "s1")
    f.bind("p1", "s1")
    injected = 0
    for _ in range(2000):
        f.parse("", "SELECT 1")
        injected += f.execute("p1")
    assert 0 < injected < 2000  # near the Bind the Describe is known; far from it, asked again


def test_a_setting_parameter_of_any_parse_in_flight_is_checked() -> None:
    f = flow()
    f.parse("s1", "SELECT current_setting($1)")
    f.parse("s1", "SELECT $1::text")  # a duplicate: the first one is what the server keeps
    with pytest.raises(FlowError):
        f.bind("", "s1", (), (b"app.secret",))
