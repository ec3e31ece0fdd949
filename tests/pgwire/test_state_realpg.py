"""The protocol state machine against a real PostgreSQL 15: arbitrary pipelines (Parse, Bind,
Describe, Execute, Close, Sync, simple queries; some statements failing) go to the server over a
raw socket, its replies are fed to the machine, and what each reply names (the value a row
carries, the statement or portal an error names) must be the request the machine says it
answers; the statement and portal tables must be what the server lists."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from bastion import pgwire
from bastion.pgwire.state import SKIPPED, ProtocolState, Request
from tests.realpg import PgCluster, PgDatabase

STATEMENTS = st.sampled_from(["", "s1", "s2"])
PORTALS = st.sampled_from(["", "p1", "p2"])
VARIANTS = st.sampled_from(["ok", "ok", "parse_error", "run_error"])
PROBE_STATEMENTS = "SELECT name FROM pg_prepared_statements WHERE NOT from_sql ORDER BY 1"
STATEMENT_NAMED = re.compile(r'prepared statement "(\w*)" (does not exist|already exists)')
PORTAL_NAMED = re.compile(r'(portal|cursor) "(\w*)" (does not exist|already exists)')
PROBE_PORTALS = "SELECT name FROM pg_cursors WHERE name <> '' ORDER BY 1"


def _sql(variant: str, ident: int) -> str:
    if variant == "parse_error":
        return f"SELECT x{ident}"  # column "x<id>" does not exist, at Parse
    if variant == "run_error":  # fails only when it runs (random() is not folded)
        return f"SELECT CAST('e{ident}_' || (random() * 0)::int AS int)"
    return f"SELECT {ident}"


class Conversation:
    """A raw connection to the server whose replies are fed to a ProtocolState."""

    def __init__(self, db: PgDatabase) -> None:
        self.sock = socket.create_connection((db.host, db.port), timeout=10)
        self.reader = pgwire.FrameReader()
        params = {"user": db.user, "database": db.database}
        self.sock.sendall(pgwire.startup_message(params))
        while self._frame().type != b"Z":
            pass
        self.state = ProtocolState()
        self.ids: dict[int, int | None] = {}  # id(Bind request) -> the SQL id it bound

    def _frame(self) -> pgwire.Frame:
        while (frame := self.reader.next_frame()) is None:
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.reader.feed(data)
        return frame

    def close(self) -> None:
        self.sock.close()

    def exchange(self, out: bytes) -> list[list[str]]:
        """Send `out` and feed every reply to the machine until it owes nothing; returns
        the rows (first column) each Query statement returned, for the probes."""
        self.sock.sendall(out)
        rows: list[list[str]] = []
        while self.state.in_flight:
            frame = self._frame()
            status = chr(frame.raw[5]) if frame.type == b"Z" else None
            request = self.state.server(frame.type, status)
            self._check(frame, request, rows)
        return rows

    def _check(self, frame: pgwire.Frame, request: Request | None, rows: list[list[str]]) -> None:
        kind = frame.type
        if kind == b"D":
            assert request is not None
            [value] = pgwire.data_row_values(frame.body)
            assert value is not None
            if isinstance(request.tag, list) and request.tag == ["probe"]:
                rows.append([value.decode()])
            else:
                assert int(value) == self._running(request), (request, value)
        elif kind == b"2":
            assert request is not None
            made = self.state.statements.get(request.statement)
            assert made is not None, f"bound {request.statement!r}, which the machine lacks"
            assert isinstance(made.tag, int)
            self.ids[id(request)] = made.tag
        elif kind == b"E":
            message = pgwire.error_fields(frame.body)["M"]
            assert request is not None, message
            self._check_error(message, request)

    def _running(self, request: Request) -> int | None:
        """The SQL id of what `request` runs now, by the machine's books."""
        if request.kind == b"Q":
            assert isinstance(request.tag, list)
            ident: int | None = request.tag[request.results]
            return ident
        assert request.kind == b"E", request
        bound = self.state.portals.get(request.name)
        assert bound is not None, f"rows for portal {request.name!r}, which the machine lacks"
        return self.ids[id(bound)]

    def _check_error(self, message: str, request: Request) -> None:
        kind, name = request.kind, request.name
        if found := re.fullmatch(r'column "x(\d+)" does not exist', message):
            assert kind == b"P" and request.tag == int(found[1]), (request, message)
        elif found := re.search(r'"e(\d+)_0"', message):
            if kind == b"Q":  # the statement the error ended is counted already
                assert isinstance(request.tag, list)
                assert request.tag[request.results - 1] == int(found[1]), (request, message)
            else:
                assert kind == b"E" and self._running(request) == int(found[1]), request
        elif found := re.fullmatch(
            r'prepared statement "(\w*)" (does not exist|already exists)', message
        ):
            wanted = {b"B": request.statement, b"D": name, b"P": name}
            assert kind in wanted and wanted[kind] == found[1], (request, message)
            assert (found[1] in self.state.statements) == (found[2] != "does not exist")
        elif message == "unnamed prepared statement does not exist":
            assert (kind, request.statement if kind == b"B" else name) in ((b"B", ""), (b"D", ""))
            assert "" not in self.state.statements
        elif found := re.fullmatch(
            r'(portal|cursor) "(\w*)" (does not exist|already exists)', message
        ):
            assert kind in (b"B", b"E", b"D") and name == found[2], (request, message)
            assert (name in self.state.portals) == (found[3] != "does not exist"), request
        elif message.startswith("current transaction is aborted"):
            assert self.state.status == "E" or kind != b"S", (request, message)
        elif message.startswith("syntax error"):
            assert kind == b"Q", (request, message)
        else:
            raise AssertionError(f"an error the test did not make: {message} for {request}")

    def probe(self) -> None:
        """The server's own lists of prepared statements and portals against the tables."""
        if self.state.status == "E":
            return
        listed = self._probe(PROBE_STATEMENTS)
        assert listed == sorted(name for name in self.state.statements if name)
        if self.state.status == "T":  # portals live only inside a transaction
            assert self._probe(PROBE_PORTALS) == sorted(n for n in self.state.portals if n)
        else:
            assert not self.state.portals

    def _probe(self, sql: str) -> list[str]:
        self.state.query(["probe"])
        return [row[0] for row in self.exchange(pgwire.query(sql))]


@pytest.fixture
def trusted(pg: PgDatabase, pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    """The test's database, its role let in without a password over TCP."""
    pg_cluster.set_role_auth(pg.user, "trust")
    try:
        yield pg
    finally:
        pg_cluster.set_role_auth(pg.user, None)


class Pipelines(RuleBasedStateMachine):
    """Builds a pipeline message by message; `send` ends it with a Sync and checks."""

    db: PgDatabase  # set by the test

    @initialize()
    def connect(self) -> None:
        self.talk = Conversation(self.db)
        self.out: list[bytes] = []
        self.next_id = 0
        self.skipped = 0

    def teardown(self) -> None:
        if hasattr(self, "talk"):
            self.talk.close()

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _sent(self, request: Request | None) -> None:
        if request is not None and request.outcome == SKIPPED:
            self.skipped += 1

    @rule(name=STATEMENTS, variant=VARIANTS)
    def parse(self, name: str, variant: str) -> None:
        ident = self._id()
        self.out.append(pgwire.parse(name, _sql(variant, ident)))
        self._sent(self.talk.state.parse(name, ident))

    @rule(portal=PORTALS, statement=STATEMENTS)
    def bind(self, portal: str, statement: str) -> None:
        self.out.append(pgwire.bind(portal, statement, ()))
        self._sent(self.talk.state.bind(portal, statement))

    @rule(which=st.sampled_from([b"S", b"P"]), statement=STATEMENTS, portal=PORTALS)
    def describe(self, which: bytes, statement: str, portal: str) -> None:
        name = statement if which == b"S" else portal
        self.out.append(pgwire.describe(which.decode(), name))
        self._sent(self.talk.state.describe(which, name))

    @rule(portal=PORTALS)
    def execute(self, portal: str) -> None:
        self.out.append(pgwire.execute(portal))
        self._sent(self.talk.state.execute(portal))

    @rule(which=st.sampled_from([b"S", b"P"]), statement=STATEMENTS, portal=PORTALS)
    def close(self, which: bytes, statement: str, portal: str) -> None:
        name = statement if which == b"S" else portal
        self.out.append(pgwire.close(which.decode(), name))
        self._sent(self.talk.state.close(which, name))

    @rule()
    def sync(self) -> None:
        self.out.append(pgwire.sync())
        self.talk.state.sync()

    @rule(shape=st.sampled_from(["one", "two", "fails", "begin", "commit", "rollback",
                                 "empty", "syntax"]))  # fmt: skip
    def query(self, shape: str) -> None:
        a, b, c = self._id(), self._id(), self._id()
        sql, ids = {
            "one": (f"SELECT {a}", [a]),
            "two": (f"SELECT {a}; SELECT {b}", [a, b]),
            "fails": (f"SELECT {a}; {_sql('run_error', b)}; SELECT {c}", [a, b, c]),
            "begin": ("BEGIN", [None]),
            "commit": ("COMMIT", [None]),
            "rollback": ("ROLLBACK", [None]),
            "empty": ("", [None]),
            "syntax": (f"SELEC {a}", [a]),
        }[shape]
        self.out.append(pgwire.query(sql))
        self._sent(self.talk.state.query(ids))

    @precondition(lambda self: bool(self.out))
    @rule()
    def send(self) -> None:
        self.talk.state.sync()
        self.talk.exchange(b"".join(self.out) + pgwire.sync())
        self.out.clear()
        assert not self.talk.state.in_flight
        self.talk.probe()


def test_the_machine_attributes_arbitrary_pipelines_as_the_server_answers(
    trusted: PgDatabase,
) -> None:
    Pipelines.db = trusted
    Pipelines.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    Pipelines.TestCase().runTest()


def _run(talk: Conversation, steps: list[tuple[bytes, Request | None]]) -> None:
    talk.exchange(b"".join(raw for raw, _ in steps))


def test_a_failed_unnamed_parse_drops_the_unnamed_statement(trusted: PgDatabase) -> None:
    talk = Conversation(trusted)
    try:
        state = talk.state
        _run(talk, [(pgwire.parse("", "SELECT 1"), state.parse("", 1)),
                    (pgwire.sync(), state.sync())])  # fmt: skip
        assert "" in state.statements
        _run(talk, [(pgwire.parse("", "SELECT x2"), state.parse("", 2)),
                    (pgwire.sync(), state.sync()),
                    (pgwire.bind("", "", ()), state.bind("", "")),
                    (pgwire.sync(), state.sync())])  # fmt: skip
        assert "" not in state.statements
    finally:
        talk.close()


def test_an_error_skips_to_the_sync_and_the_pipeline_goes_on_after_it(
    trusted: PgDatabase,
) -> None:
    talk = Conversation(trusted)
    try:
        state = talk.state
        parse_ok = state.parse("s1", 1)
        bad = state.parse("s2", 2)
        bind = state.bind("p1", "s1")
        execute = state.execute("p1")
        state.sync()
        bind_after = state.bind("", "s1")
        execute_after = state.execute("")
        state.sync()
        talk.exchange(pgwire.parse("s1", "SELECT 1") + pgwire.parse("s2", "SELECT x2")
                      + pgwire.bind("p1", "s1", ()) + pgwire.execute("p1") + pgwire.sync()
                      + pgwire.bind("", "s1", ()) + pgwire.execute("") + pgwire.sync())  # fmt: skip
        assert [r.outcome for r in (parse_ok, bad, bind, execute, bind_after, execute_after)] == [
            1, 2, 3, 3, 1, 1]  # fmt: skip
        assert list(state.statements) == ["s1"] and not state.portals
    finally:
        talk.close()


def test_portals_last_until_the_transaction_ends(trusted: PgDatabase) -> None:
    talk = Conversation(trusted)
    try:
        state = talk.state
        state.query([None])
        state.parse("s1", 1)
        state.bind("", "s1")
        state.bind("p1", "s1")
        state.sync()
        binds = pgwire.bind("", "s1", ()) + pgwire.bind("p1", "s1", ())
        talk.exchange(
            pgwire.query("BEGIN") + pgwire.parse("s1", "SELECT 1") + binds + pgwire.sync()
        )
        assert sorted(state.portals) == ["", "p1"] and state.status == "T"
        state.execute("")
        state.close(b"P", "p1")
        state.sync()
        talk.exchange(pgwire.execute("") + pgwire.close("P", "p1") + pgwire.sync())
        assert list(state.portals) == [""]
        state.query([None])
        talk.exchange(pgwire.query("COMMIT"))
        assert not state.portals and state.status == "I"
    finally:
        talk.close()
