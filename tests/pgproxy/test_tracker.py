"""Attributing backend replies to statements: simple queries, pipelines, errors, skips."""

from __future__ import annotations

from bastion.pgproxy.tracker import Tracker


def test_a_simple_query_ends_at_ready_for_query_with_all_rows() -> None:
    t = Tracker()
    t.sent("q1", simple=True, now_ns=0)
    t.data_rows(2)
    assert t.complete("SELECT 2", 10) == []
    t.data_rows(3)
    assert t.complete("SELECT 3", 20) == []
    [done] = t.ready(30)
    assert (done.key, done.rows, done.tag, done.duration_ns) == ("q1", 3, "SELECT 3", 30)
    assert not t.busy


def test_a_pipeline_ends_each_execute_and_skips_after_an_error() -> None:
    t = Tracker()
    for key in ("e1", "e2", "e3"):
        t.sent(key, simple=False, now_ns=0)
    t.data_rows(1)
    [first] = t.complete("SELECT 1", 5)
    assert (first.key, first.rows) == ("e1", 1)
    [second] = t.error("23505", 6)
    assert (second.key, second.sqlstate) == ("e2", "23505")
    [third] = t.ready(7)
    assert (third.key, third.tag) == ("e3", "not executed")


def test_an_error_in_a_simple_query_is_kept_until_ready() -> None:
    t = Tracker()
    t.sent("q1", simple=True, now_ns=0)
    assert t.error("42P01", 1) == []
    [done] = t.ready(2)
    assert done.sqlstate == "42P01" and done.tag is None


def test_suspended_portals_and_tags_without_counts() -> None:
    t = Tracker()
    t.sent("e1", simple=False, now_ns=0)
    t.data_rows(100)
    [done] = t.complete(None, 1)  # PortalSuspended
    assert done.rows == 100 and done.tag is None
    t.sent("e2", simple=False, now_ns=0)
    [ddl] = t.complete("CREATE TABLE", 1)
    assert ddl.rows is None and ddl.tag == "CREATE TABLE"


def test_abandon_reports_what_was_in_flight() -> None:
    t = Tracker()
    t.sent("q1", simple=True, now_ns=0)
    t.data_rows(7)
    [done] = t.abandon(9, "client disconnected")
    assert (done.rows, done.tag) == (7, "client disconnected")
    assert t.complete("SELECT 1", 10) == [] and t.ready(11) == []
