"""Which client request each PostgreSQL reply answers, and the statement and portal tables
(sans-I/O: fed message types both ways, it keeps the books; no bytes, no sockets).

The server answers requests in the order it reads them, so one queue of `Request`s is enough.
Every client message that owes a reply joins it; each server reply answers the head:

    request        replies, in order                         ends at
    Query    Q     (T D* | H d* c | G) C|I|E ... each stmt    Z  (an E ends the rest)
    Parse    P     1 | E                                      1, E
    Bind     B     2 | E                                      2, E
    Describe D     (t if a statement) then T | n  | E         T, n, E
    Execute  E     D* then C | I | s | E  (or H d* c C, G C)  C, I, s, E
    Close    C     3 | E                                      3, E
    Sync     S     (E when the commit fails) Z                Z
    Call     F     V | E, then Z                              Z

An ErrorResponse answering P, B, D, E or C makes the server skip every message up to the next
Sync (Query and function calls included): those requests are never answered, and `skipped`
names them. Flush owes nothing. CopyData, CopyDone and CopyFail owe nothing either; during a
COPY FROM STDIN the server also swallows Flush and Sync, so those owe nothing then.
NoticeResponse, ParameterStatus and NotificationResponse answer nothing (None).

The tables follow the server, updated as replies arrive: a statement exists once its
ParseComplete came (a failed unnamed Parse drops the unnamed one; a simple Query drops it too),
a portal once its BindComplete came, until Close or the end of its transaction
(ReadyForQuery 'I'). Statements made by SQL (PREPARE, DECLARE) are not in them. Both are
bounded: a request that could take a table past its bound raises `TooMany` before it is sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

PENDING, DONE, FAILED, SKIPPED = 0, 1, 2, 3
"""A request's outcome: waiting, answered, answered by an error, never run (skip to Sync)."""

MAX_STATEMENTS = 10_000
MAX_PORTALS = 10_000
MAX_IN_FLIGHT = 100_000


class StateError(Exception):
    """A reply no sent request explains (the peer broke the protocol, or the books are wrong):
    nothing more of the conversation can be attributed."""


class TooMany(Exception):
    """A client request that would take a table or the queue past its bound: refuse it."""


class Request:
    """One client message that owes a reply; `tag` is the caller's own (its SQL, a log key)."""

    __slots__ = ("_new", "doubt", "forgotten", "kind", "name", "note", "outcome", "results",
                 "segment", "statement", "tag", "target")  # fmt: skip

    def __init__(self, kind: bytes, name: str, tag: object, target: bytes = b"",
                 statement: str = "") -> None:  # fmt: skip
        self.kind = kind  # the client message's type: Q P B D E C S F
        self.name = name  # statement (P), portal (B, E) or either (D, C by target)
        self.target = target  # D and C: b"S" a statement, b"P" a portal
        self.statement = statement  # B: the statement it binds
        self.tag = tag
        self.note: object = None  # a second consumer's own (the relay's statement record)
        self.segment = 0  # how many Syncs the client had sent before it
        self.doubt = False  # P, B: the name had another definition when it was sent
        self.forgotten = False  # P, B: sent before forget_names: it lands in no table
        self.outcome = PENDING
        self.results = 0  # Query: statements ended so far (C, I or E each)
        self._new = False  # counted against a table's bound while in flight

    def __repr__(self) -> str:
        what = self.kind.decode() + (self.target.decode() if self.target else "")
        return f"<Request {what} {self.name!r} outcome={self.outcome} tag={self.tag!r}>"


_OWES = frozenset((b"Q", b"P", b"B", b"D", b"E", b"C", b"S", b"F"))
_ROWS = frozenset((b"Q", b"E"))
_BOOKED = frozenset((b"P", b"B", b"C"))  # their outcome changes a table
_DESCRIBE, _READY, _CALL = frozenset((b"D",)), frozenset((b"Q", b"S", b"F")), frozenset((b"F",))


class ProtocolState:
    """The conversation after start-up, as the server will see it (see the module's table)."""

    __slots__ = (
        "_copy",
        "_copy_in",
        "_new_portals",
        "_new_statements",
        "_queue",
        "_replies",
        "_sent_portals",
        "_sent_statements",
        "_skipping",
        "_unrun",
        "last",
        "max_in_flight",
        "max_portals",
        "max_statements",
        "portals",
        "skipped",
        "statements",
        "status",
        "syncs",
    )  # fmt: skip

    def __init__(self, *, max_statements: int = MAX_STATEMENTS, max_portals: int = MAX_PORTALS,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:  # fmt: skip
        self.statements: dict[str, Request] = {}  # name -> the Parse that made it
        self.portals: dict[str, Request] = {}  # name -> the Bind that made it
        self.status = "I"  # the last ReadyForQuery: I idle, T in a transaction, E failed one
        self.skipped: list[Request] = []  # what the last error skipped (empty: nothing)
        self.max_statements = max_statements
        self.max_portals = max_portals
        self.max_in_flight = max_in_flight
        self._queue: deque[Request] = deque()
        self._skipping = False  # an error came and the client's Sync has not been sent yet
        self._copy = 0  # 1: the head's COPY TO STDOUT is sending; 2: COPY FROM STDIN runs
        self._copy_in = False  # the client is inside a COPY FROM STDIN (its Sync is swallowed)
        self._new_statements = 0  # Parses in flight that may add a statement
        self._new_portals = 0
        self._sent_statements: dict[str, Request] = {}  # name -> its Parse still in flight
        self._sent_portals: dict[str, Request] = {}  # name -> its Bind still in flight
        self._unrun: list[Request] = []  # Parses and Binds skipped since the last Sync
        self.last: Request | None = None  # the request the last client message made
        self.syncs = 0  # Syncs the client has sent: the pipeline's segment now being sent
        self._replies: dict[bytes, Callable[[], Request | None]] = {
            b"1": self._parsed, b"2": self._bound, b"3": self._closed,
            b"t": self._parameters, b"T": self._described, b"n": self._no_data,
            b"D": self.rows, b"d": self._copy_data, b"c": self._copy_done,
            b"C": self._ended, b"I": self._ended, b"s": self._ended, b"E": self.error,
            b"V": self._called, b"H": self._copy_out, b"G": self._copy_in_begins,
            b"N": _nothing, b"S": _nothing, b"A": _nothing,
        }  # fmt: skip

    # -- what the client sends --------------------------------------------------------

    @property
    def head(self) -> Request | None:
        """The request the replies arriving now answer."""
        return self._queue[0] if self._queue else None

    @property
    def queue(self) -> deque[Request]:
        """The requests not yet answered, oldest first (read it; never change it)."""
        return self._queue

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def query(self, tag: object = None) -> Request:
        return self._send(Request(b"Q", "", tag))

    def parse(self, name: str, tag: object = None) -> Request:
        request = Request(b"P", name, tag)
        if name and name not in self.statements and not self._skipping:
            named = len(self.statements) - ("" in self.statements)
            if named + self._new_statements >= self.max_statements:
                raise TooMany(f"more than {self.max_statements} prepared statements on one"
                              " connection; close some before preparing more")  # fmt: skip
            request._new = True
            self._new_statements += 1
        self._send(request)
        self._sent(self._sent_statements, request)
        return request

    def bind(self, portal: str, statement: str, tag: object = None) -> Request:
        request = Request(b"B", portal, tag, statement=statement)
        if portal and portal not in self.portals and not self._skipping:
            named = len(self.portals) - ("" in self.portals)
            if named + self._new_portals >= self.max_portals:
                raise TooMany(f"more than {self.max_portals} open portals on one connection;"
                              " close some or end the transaction")  # fmt: skip
            request._new = True
            self._new_portals += 1
        self._send(request)
        self._sent(self._sent_portals, request)
        return request

    def describe(self, target: bytes, name: str, tag: object = None) -> Request:
        return self._send(Request(b"D", name, tag, target))

    def execute(self, portal: str, tag: object = None) -> Request:
        return self._send(Request(b"E", portal, tag))

    def close(self, target: bytes, name: str, tag: object = None) -> Request:
        return self._send(Request(b"C", name, tag, target))

    def function_call(self, tag: object = None) -> Request:
        return self._send(Request(b"F", "", tag))

    def sync(self, tag: object = None) -> Request | None:
        """A Sync (None while a COPY FROM STDIN swallows it)."""
        if self._copy_in:
            return None
        for unrun in self._unrun:
            table = self._sent_statements if unrun.kind == b"P" else self._sent_portals
            if table.get(unrun.name) is unrun:
                del table[unrun.name]
        self._unrun.clear()
        self._skipping = False
        request = self._send(Request(b"S", "", tag))
        self.syncs += 1
        return request

    def copy_end(self) -> None:
        """CopyDone or CopyFail: a COPY FROM STDIN's input ends (outside one: ignored)."""
        if self._copy_in:
            self._copy_in = False
        elif len(self._queue) >= self.max_in_flight:
            raise TooMany(f"more than {self.max_in_flight} requests in flight on one"
                          " connection; wait for some answers before sending more")  # fmt: skip
        elif self._queue:
            self._queue.append(Request(b"c", "", None))  # ends a COPY that has not begun yet

    def _sent(self, table: dict[str, Request], request: Request) -> None:
        """What the client last sent by this name (a skipped one until the next Sync, within
        the bound)."""
        name = request.name
        held = self.statements if request.kind == b"P" else self.portals
        request.doubt = name in table or name in held
        if request.outcome == SKIPPED:
            if len(self._unrun) >= self.max_statements:
                return
            self._unrun.append(request)
        table[name] = request

    def uncertain(self, request: Request | None) -> bool:
        """Whether a Parse or Bind sent before a Sync, not yet answered (or skipped), may fail
        and leave its name's other definition in place for the current segment (within one
        segment a failure skips the rest, so only an earlier segment's can)."""
        return (
            request is not None
            and request.outcome in (PENDING, SKIPPED)
            and request.segment < self.syncs
            and request.doubt
        )

    def forget_names(self) -> None:
        """SQL changed the server's names (PREPARE, DEALLOCATE, DISCARD, DECLARE, CLOSE):
        drop every one, and let no request in flight bring one back."""
        self.statements.clear()
        self.portals.clear()
        self._sent_statements.clear()
        self._sent_portals.clear()
        for request in self._queue:
            if request.kind in (b"P", b"B") and request.outcome == PENDING:
                request.doubt = request.forgotten = True

    def statement(self, name: str) -> Request | None:
        """The Parse behind statement `name` once what was sent has run: the latest one still
        in flight (or skipped since the last Sync), else the one the server holds (None: none
        the bastion saw)."""
        return self._sent_statements.get(name) or self.statements.get(name)

    def portal(self, name: str) -> Request | None:
        """The Bind behind portal `name` once what was sent has run (as `statement`)."""
        return self._sent_portals.get(name) or self.portals.get(name)

    def _send(self, request: Request) -> Request:
        self.last = request
        request.segment = self.syncs
        if self._skipping:  # the server will read it and drop it
            request.outcome = SKIPPED
            self._resolve(request)
            return request
        if len(self._queue) >= self.max_in_flight:
            self._resolve(request)
            raise TooMany(f"more than {self.max_in_flight} requests in flight on one"
                          " connection; wait for some answers before sending more")  # fmt: skip
        self._queue.append(request)
        return request

    def client(self, kind: bytes, name: str = "", target: bytes = b"", statement: str = "",
               tag: object = None) -> Request | None:  # fmt: skip
        """Any client message by its type (Flush, CopyData, Terminate owe nothing: None)."""
        if kind == b"P":
            return self.parse(name, tag)
        if kind == b"B":
            return self.bind(name, statement, tag)
        if kind == b"S":
            return self.sync(tag)
        if kind in _OWES:  # Q, D, E, C, F
            return self._send(Request(kind, name, tag, target))
        if kind in (b"c", b"f"):
            self.copy_end()
        return None

    # -- what the server replies ------------------------------------------------------

    def server(self, kind: bytes, status: str | None = None) -> Request | None:
        """A reply of type `kind` (`status`: a ReadyForQuery's): the request it answers
        (None: it answers nothing)."""
        if kind == b"Z":
            return self.ready(status)
        handle = self._replies.get(kind)
        if handle is None:
            raise StateError(f"the server sent {kind!r}, which no request here explains")
        return handle()

    def _head(self, kinds: frozenset[bytes], what: str) -> Request:
        queue = self._queue
        if not queue or queue[0].kind not in kinds:
            raise self._unexpected(what)
        return queue[0]

    def _unexpected(self, what: str) -> StateError:
        found = repr(self._queue[0]) if self._queue else "nothing"
        return StateError(f"{what} came while {found} was owed")

    def _pop(self, outcome: int) -> Request:
        queue = self._queue
        request = queue.popleft()
        request.outcome = outcome
        if request.kind in _BOOKED:
            self._resolve(request)
        while queue and queue[0].kind == b"c":  # CopyDone/CopyFail outside a COPY: ignored
            queue.popleft()
        return request

    def _resolve(self, request: Request) -> None:
        """A request is answered or skipped: its table changes land, its counts go."""
        if request.kind == b"P":
            if self._sent_statements.get(request.name) is request:
                del self._sent_statements[request.name]
        elif request.kind == b"B" and self._sent_portals.get(request.name) is request:
            del self._sent_portals[request.name]
        if request._new:
            request._new = False
            if request.kind == b"P":
                self._new_statements -= 1
            else:
                self._new_portals -= 1
        if request.outcome == DONE and not request.forgotten:
            kind = request.kind
            if kind == b"P":
                self.statements[request.name] = request
            elif kind == b"B":
                self.portals[request.name] = request
            elif kind == b"C":
                table = self.statements if request.target == b"S" else self.portals
                table.pop(request.name, None)
        elif request.outcome == FAILED and request.kind == b"P" and not request.name:
            self.statements.pop("", None)  # the server dropped the old one before parsing

    def _parsed(self) -> Request:
        queue = self._queue
        if not queue or queue[0].kind != b"P":
            raise self._unexpected("a ParseComplete")
        return self._pop(DONE)

    def _bound(self) -> Request:
        queue = self._queue
        if not queue or queue[0].kind != b"B":
            raise self._unexpected("a BindComplete")
        return self._pop(DONE)

    def _closed(self) -> Request:
        queue = self._queue
        if not queue or queue[0].kind != b"C":
            raise self._unexpected("a CloseComplete")
        return self._pop(DONE)

    def _parameters(self) -> Request:
        request = self._head(_DESCRIBE, "a ParameterDescription")
        if request.target != b"S":
            raise StateError("a ParameterDescription answered a portal's Describe")
        return request

    def _described(self) -> Request:
        """RowDescription: a Describe's, or a Query statement's."""
        queue = self._queue
        kind = queue[0].kind if queue else b""
        if kind == b"D":
            return self._pop(DONE)
        if kind == b"Q":
            return queue[0]
        raise self._unexpected("a RowDescription")

    def _no_data(self) -> Request:
        self._head(_DESCRIBE, "a NoData")
        return self._pop(DONE)

    def rows(self) -> Request:
        """DataRows (any number of them): they belong to the head Query or Execute."""
        queue = self._queue
        if queue and not self._copy:
            request = queue[0]
            if request.kind in _ROWS:
                return request
        raise self._unexpected("a DataRow")

    def _copy_out(self) -> Request:
        request = self._head(_ROWS, "a CopyOutResponse")
        self._copy = 1
        return request

    def _copy_data(self) -> Request:
        if self._copy != 1:
            raise StateError("CopyData came outside a COPY TO STDOUT")
        return self._queue[0]

    def _copy_done(self) -> Request:
        if self._copy != 1:
            raise StateError("CopyDone came outside a COPY TO STDOUT")
        self._copy = 0
        return self._queue[0]

    def _copy_in_begins(self) -> Request:
        """CopyInResponse: the client's messages up to its CopyDone or CopyFail feed the COPY;
        the Syncs among them are swallowed, anything else breaks it."""
        request = self._head(_ROWS, "a CopyInResponse")
        self._copy = 2
        queue, ended = self._queue, False
        while len(queue) > 1 and not ended:
            following = queue[1]
            if following.kind not in (b"S", b"c"):
                raise StateError("a request was pipelined into a COPY FROM STDIN's data")
            ended = following.kind == b"c"
            del queue[1]
        self._copy_in = not ended
        self._skipping = False
        return request

    def _ended(self) -> Request:
        """CommandComplete, EmptyQueryResponse, PortalSuspended: a statement's result ends."""
        queue = self._queue
        kind = queue[0].kind if queue else b""
        if kind == b"E" and not self._copy:
            return self._pop(DONE)
        request = self._head(_ROWS, "a CommandComplete, EmptyQueryResponse or PortalSuspended")
        if self._copy == 1:
            raise StateError("a COPY TO STDOUT ended without its CopyDone")
        self._copy = 0
        if kind == b"E":
            return self._pop(DONE)
        self._query_statement_ends()
        return request

    def _query_statement_ends(self) -> None:
        """A statement of the head Query ended: it used (and dropped) the unnamed portal."""
        request = self._queue[0]
        if not request.results:
            self.statements.pop("", None)  # a simple Query drops the unnamed statement first
        request.results += 1
        self.portals.pop("", None)

    def error(self) -> Request | None:
        """ErrorResponse: in the extended protocol, the rest up to the Sync is skipped."""
        queue = self._queue
        if not queue:
            return None  # unasked for (a FATAL as the server shuts down)
        request, self._copy = queue[0], 0
        self._copy_in = False
        kind = request.kind
        if kind == b"Q":
            self._query_statement_ends()
            return request
        if kind in (b"S", b"F"):
            return request  # its ReadyForQuery still comes
        self._pop(FAILED)
        skipped: list[Request] = []
        while queue and queue[0].kind != b"S":
            following = queue.popleft()
            if following.kind != b"c":
                following.outcome = SKIPPED
                self._resolve(following)
                skipped.append(following)
        self.skipped = skipped
        self._skipping = not queue
        return request

    def ready(self, status: str | None = None) -> Request:
        """ReadyForQuery ends a Query, Sync or function call; `status` is its transaction
        status: at 'I' (a transaction's end) the server has dropped every portal."""
        queue = self._queue
        if not queue or queue[0].kind not in _READY or self._copy:
            raise self._unexpected("a ReadyForQuery")
        request = queue[0]
        if request.kind == b"Q" and not request.results:
            self.statements.pop("", None)  # an empty Query string: dropped all the same
        self._pop(DONE)
        if status is not None:
            self.status = status
            if status == "I" and self.portals:
                self.portals.clear()
        return request

    def _called(self) -> Request:
        return self._head(_CALL, "a FunctionCallResponse")


def _nothing() -> None:
    return None
