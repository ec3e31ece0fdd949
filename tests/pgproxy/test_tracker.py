"""Statements' outcomes from the state machine's attribution: simple queries, pipelines,
errors and what they skip, Syncs between pipelined statements, abandoned connections."""

from __future__ import annotations

from bastion.pgproxy.tracker import NOT_EXECUTED, Finished, Tracker
from bastion.pgwire.state import ProtocolState, Request


class Books:
    """A tracker on its own state machine, fed as the relay feeds them."""

    def __init__(self) -> None:
        self.state = ProtocolState()
        self.tracker = Tracker(self.state)
        self.done: list[Finished] = []

    def query(self, key: str, now_ns: int = 0) -> None:
        self.done += self.tracker.sent(self.state.query(), key, now_ns=now_ns)

    def extended(self, key: str, now_ns: int = 0) -> None:
        """Parse, Bind and Execute of the unnamed statement and portal."""
        self.state.parse("")
        self.state.bind("", "")
        self.done += self.tracker.sent(self.state.execute(""), key, now_ns=now_ns)

    def reply(self, kind: bytes, now_ns: int, tag: str | None = None, *,
              sqlstate: str = "", status: str = "I", rows: int = 0) -> None:  # fmt: skip
        request: Request | None = self.state.head
        self.state.server(kind, status if kind == b"Z" else None)
        t = self.tracker
        if kind == b"D":
            t.data_rows(request, rows)
        elif kind in (b"C", b"I", b"s"):
            self.done += t.complete(request, tag, now_ns)
        elif kind == b"E":
            self.done += t.error(request, sqlstate, now_ns, self.state.skipped)
        elif kind == b"Z":
            self.done += t.ready(request, now_ns)

    def outcomes(self) -> list[tuple[str, int | None, str | None, str | None]]:
        return [(f.key, f.rows, f.tag, f.sqlstate) for f in self.done]


def test_a_simple_query_ends_at_ready_for_query_with_all_rows() -> None:
    b = Books()
    b.query("q1")
    for n in (2, 3):
        b.reply(b"T", 1)
        b.reply(b"D", 1, rows=n)
        b.reply(b"C", 10 * n, f"SELECT {n}")
    assert b.done == []
    b.reply(b"Z", 30)
    [done] = b.done
    assert (done.key, done.rows, done.tag, done.duration_ns) == ("q1", 5, "SELECT 3", 30)
    assert not b.tracker.busy


def test_a_pipeline_ends_each_execute_and_skips_after_an_error() -> None:
    b = Books()
    for key in ("e1", "e2", "e3"):
        b.extended(key)
    b.state.sync()
    for kind in (b"1", b"2"):
        b.reply(kind, 1)
    b.reply(b"D", 1, rows=1)
    b.reply(b"C", 5, "SELECT 1")
    b.reply(b"1", 5)
    b.reply(b"2", 5)
    b.reply(b"E", 6, sqlstate="23505")
    b.reply(b"Z", 7, status="E")
    assert b.outcomes() == [("e1", 1, "SELECT 1", None), ("e2", None, None, "23505"),
                            ("e3", None, NOT_EXECUTED, None)]  # fmt: skip
    assert not b.tracker.busy


def test_a_failed_parse_fails_its_own_execute_and_the_rest_never_run() -> None:
    b = Books()
    b.extended("e1")
    b.extended("e2")
    b.state.sync()
    b.reply(b"E", 3, sqlstate="42601")  # the first Parse: a syntax error
    assert b.outcomes() == [("e1", None, None, "42601"), ("e2", None, NOT_EXECUTED, None)]


def test_ready_for_a_sync_leaves_the_executes_after_it_waiting() -> None:
    """P B E S P B E S: an error in the first part ends only it; the second part runs."""
    b = Books()
    b.extended("e1")
    b.state.sync()
    b.extended("e2")
    b.state.sync()
    b.reply(b"1", 1)
    b.reply(b"2", 1)
    b.reply(b"E", 2, sqlstate="22012")
    b.reply(b"Z", 3, status="I")
    assert b.outcomes() == [("e1", None, None, "22012")] and b.tracker.busy
    for kind in (b"1", b"2"):
        b.reply(kind, 4)
    b.reply(b"D", 4, rows=1)
    b.reply(b"C", 5, "SELECT 1")
    b.reply(b"Z", 6)
    assert b.outcomes()[1] == ("e2", 1, "SELECT 1", None) and not b.tracker.busy


def test_statements_sent_while_the_server_skips_end_at_once_unrun() -> None:
    b = Books()
    b.extended("e1")
    b.reply(b"1", 1)
    b.reply(b"2", 1)
    b.reply(b"E", 2, sqlstate="22012")  # no Sync sent yet: what follows is skipped
    b.extended("e2", now_ns=3)
    assert b.outcomes() == [("e1", None, None, "22012"), ("e2", None, NOT_EXECUTED, None)]
    assert not b.tracker.busy


def test_an_error_in_a_simple_query_is_kept_until_ready() -> None:
    b = Books()
    b.query("q1")
    b.reply(b"E", 1, sqlstate="42P01")
    assert b.done == []
    b.reply(b"Z", 2)
    [done] = b.done
    assert done.sqlstate == "42P01" and done.tag is None


def test_suspended_portals_and_tags_without_counts() -> None:
    b = Books()
    b.extended("e1")
    b.reply(b"1", 0)
    b.reply(b"2", 0)
    b.reply(b"D", 0, rows=100)
    b.reply(b"s", 1)  # PortalSuspended
    b.extended("e2")
    b.reply(b"1", 1)
    b.reply(b"2", 1)
    b.reply(b"C", 1, "CREATE TABLE")
    assert b.outcomes() == [("e1", 100, None, None), ("e2", None, "CREATE TABLE", None)]


def test_abandon_reports_what_was_in_flight() -> None:
    b = Books()
    b.query("q1")
    b.reply(b"T", 0)
    b.reply(b"D", 0, rows=7)
    [done] = b.tracker.abandon(9, "client disconnected")
    assert (done.rows, done.tag) == (7, "client disconnected")
    assert not b.tracker.busy
    b.reply(b"C", 10, "SELECT 1")
    b.reply(b"Z", 11)
    assert b.done == []  # abandoned statements end once
