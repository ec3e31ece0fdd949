"""What relaying one database session means: statement log, read-only guard, replies attributed
(sans-I/O: given bytes and the time, it returns bytes, audit records and decisions)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from bastion import pgwire, sqlparse
from bastion.audit import QueryEnd, QueryStart, UnmaskGrant
from bastion.pgproxy.guard import Guard, MaskingLost, masking_note
from bastion.pgproxy.reported import check_status
from bastion.pgproxy.tracker import Finished, Tracker
from bastion.pgwire.state import MAX_STATEMENTS, ProtocolState, Request, StateError
from bastion.sqlparse import disguise
from bastion.sqlparse.names import GuardCatalog

REFUSED_SQL = "bastion refused this statement"
"""Sent upstream in place of a refused statement. It is a syntax error, so the server answers
with an error exactly where the refused statement's answer belongs, aborts the transaction and
skips to Sync as for any failed statement; the relay swaps that error for its own message."""
_STAND_IN_QUERY = pgwire.query(REFUSED_SQL)
_STAND_IN_PARSE = pgwire.parse("", REFUSED_SQL, ())

LOST_CHECK = "the bastion could not check a reply from the database, so it ended the session"
UNATTRIBUTED = ("the bastion could not tell which statement a reply from the database answers,"
                " so it ended the session")  # fmt: skip


class Fatal(NamedTuple):
    """The session must end now: FATAL `sqlstate` `told` to the client, `why` for its row."""

    sqlstate: str
    told: str
    why: str


class Step(NamedTuple):
    """What one read asks of the pump, which does it in this order: end with `fatal` (and
    nothing else); submit `starts` (under strict durability, `up` waits until they are
    durable, unless `pure`) and post `ends`; send `up` to the target and `down` to the
    client; then end the session if `ended` (the client said goodbye) or `error` (a
    malformed message followed). `pure`: the session is read-only upstream and every
    statement of `starts` was parsed and checked as a read (or refused, its stand-in sent),
    so `up` changes nothing: under strict durability it goes at once, and every byte the
    client gets from then on is held until `starts` are durable."""

    up: bytes | memoryview = b""
    down: bytes | memoryview = b""
    starts: Sequence[QueryStart] = ()  # statements begun or refused, in order
    ends: Sequence[QueryEnd] = ()  # statements answered, in order
    ended: bool = False
    error: pgwire.ProtocolError | None = None
    fatal: Fatal | None = None
    refresh: bool = False  # nothing was taken: read the unmask grants, set_grants, read again
    pure: bool = False  # only pure reads: `up` may go before `starts` are durable


_REFRESH = Step(refresh=True)


@dataclass
class Relay:
    """One session's protocol logic; it holds no core, reads no clock and does no I/O."""

    session_id: str
    user: str
    target: str
    read_only: bool  # a read grant: every statement is checked as a read
    opened: datetime  # when the session opened: the first `last_input`
    guard: Guard | None = None  # set when the target masks (and then every reply is checked)
    names: GuardCatalog | None = None  # a read grant's snapshot of the target's names
    names_missed: Callable[[], None] | None = None  # the snapshot lacked a name: read it again
    keep_literals: bool = False  # config audit.keep_literals
    max_message: int = pgwire.DEFAULT_MAX_MESSAGE  # config postgres.max_message
    max_prepared: int = MAX_STATEMENTS  # config postgres.max_prepared (without masking)
    # The server holds the session read-only: a read grant's default_transaction_read_only,
    # or the masked role `target harden` made (read-only by default until it reports not).
    upstream_read_only: bool = False
    status: str = "I"  # the last ReadyForQuery status: I idle, T in transaction, E failed
    counter: int = 0
    state: ProtocolState = field(init=False)  # the one protocol state machine (the masking's)
    tracker: Tracker = field(init=False)
    last_input: datetime = field(init=False)  # when the client last sent anything
    _now: datetime = field(init=False)  # the time the current step was given
    _now_ns: int = field(init=False)  # and its monotonic reading, for durations
    _fresh: bool = field(init=False, default=False)  # grants were read for the next read
    _unknown: bool = field(init=False, default=False)  # this read runs text the relay never saw
    _unrun: list[Finished] = field(init=False, default_factory=list)  # this read's skipped ones
    # Parses refused since the last Sync, by name: the text their Binds and Executes log (the
    # server skips those, as the stand-in failed).
    _refused: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.last_input = self._now = self.opened
        self._now_ns = 0
        self.upstream_read_only = self.upstream_read_only or self.read_only
        if self.guard is not None:  # the masking's flow feeds it
            self.state = self.guard.flow.state
        else:
            bound = self.max_prepared
            self.state = ProtocolState(max_statements=bound, max_portals=bound)
        self.tracker = Tracker(self.state)
        self._from_client = pgwire.Scanner(b"d", self.max_message)  # COPY in, in bulk
        self._from_upstream = pgwire.Scanner(b"Dd", self.max_message)  # DataRows, COPY out

    # -- client to target ---------------------------------------------------------------

    def set_grants(self, live: Sequence[UnmaskGrant]) -> None:
        """The engineer's live unmask grants, read by the pump because a step asked (`refresh`):
        the next client read is taken under them."""
        if self.guard is not None:
            self.guard.set_grants(live)
        self._fresh = True

    def client_read(self, data: bytes, now: datetime, now_ns: int) -> Step:
        """One read from the client, at `now` (wall) and `now_ns` (monotonic): what goes
        upstream, and the audit records of its statements.

        Each read is scanned whole; its statements' records come back together (under strict
        durability the pump has them on disk before any of the read goes upstream). Under an
        unmask grant, nothing is taken until the grants are read again (`refresh`): expiry and
        revocation take effect on the next statement.
        """
        if self.guard is not None and self.guard.grant_ids and not self._fresh:
            return _REFRESH
        self._fresh = False
        self.last_input = self._now = now
        self._now_ns = now_ns
        scan = self._from_client.feed(data)
        starts: list[QueryStart] = []
        self._unrun: list[Finished] = []
        self._unknown = False
        out, ended = self._client_scan(scan, starts)
        joined = out[0] if len(out) == 1 else b"".join(out) if out else b""
        # A read grant and the masking check every statement as a read calling only allowed
        # functions before it goes upstream (refused ones go as a stand-in that fails).
        checked = self.read_only or self.guard is not None
        pure = checked and self.upstream_read_only and not self._unknown
        ends = self._ends(self._unrun) if self._unrun else ()
        return Step(joined, b"", starts, ends, ended, scan.error, pure=pure)

    def client_eof(self) -> str:
        """The client closed its side; ProtocolError if it stopped inside a message."""
        self._from_client.feed_eof()
        return "client closed the connection"

    def _client_scan(
        self, scan: pgwire.Scan, starts: list[QueryStart]
    ) -> tuple[list[bytes | memoryview], bool]:
        """What to send upstream for one read, and whether the client said goodbye
        (Terminate); `starts` gets the records of its statements."""
        out: list[bytes | memoryview] = []
        for item in scan.items:
            if isinstance(item, pgwire.Run):
                out.append(item.raw)
                continue
            out.append(self._inspect(item, starts))
            if item.type == b"X":
                return out, True
        return out, False

    def _inspect(self, frame: pgwire.Frame, starts: list[QueryStart]) -> bytes:
        """What to send upstream for one client message (itself, or a refusal's stand-in)."""
        kind = frame.type
        if kind in _STATEMENTS:
            return self._checked(frame, starts)
        message = pgwire.decode_frontend(frame) if kind in _BOUND else None
        guard, state = self.guard, self.state
        # Without masking the log alone says what ran: a definition in doubt is refused. (The
        # masking's plans follow the server's tables; there only the row's text may differ.)
        if guard is None and isinstance(message, pgwire.Bind | pgwire.Execute):
            doubt = self._doubt(message)
            if doubt is not None:
                return self._refused_in_doubt(message, doubt, starts)
        # The masking's flow feeds the state machine itself (and may add a Describe).
        raw = guard.message(frame) if guard is not None else frame.raw
        if isinstance(message, pgwire.Bind):
            self._bind(message, guard is None)
        elif isinstance(message, pgwire.Execute):
            if guard is None:
                state.execute(message.portal)
            self._execute(message.portal, starts)
        elif kind == b"S":
            self._refused.clear()
            if guard is None:
                state.sync()
        elif guard is None:
            self._follow(frame)
        return raw

    def _doubt(self, message: pgwire.Bind | pgwire.Execute) -> str | None:
        """Why the bastion cannot tell what a Bind binds or an Execute runs (None: it can)."""
        state = self.state
        if isinstance(message, pgwire.Bind):
            if not state.uncertain(state.statement(message.statement)):
                return None
            what = f"the statement {message.statement!r} it binds"
        else:
            if not state.uncertain(state.portal(message.portal)):
                return None
            what = f"the portal {message.portal!r} it runs"
        return (f"{what} was redefined in an earlier part of this pipeline that the database"
                " has not answered yet, so the bastion cannot tell which definition would"
                " run; send it after that answer")  # fmt: skip

    def _refused_in_doubt(self, message: pgwire.Bind | pgwire.Execute, reason: str,
                          starts: list[QueryStart]) -> bytes:  # fmt: skip
        """A Bind or Execute refused: its stand-in fails in its place."""
        if isinstance(message, pgwire.Bind):
            step, sql = "bind", f"[prepared statement {message.statement!r}]"
        else:
            step, sql = "execute", f"[portal {message.portal!r}]"
        return self._refused_statement(step, sql, reason, starts, masked=True)

    def _bind(self, bind: pgwire.Bind, follow: bool) -> None:
        """A Bind's request notes the text of its statement and its parameters, redacted."""
        state = self.state
        request = state.bind(bind.portal, bind.statement) if follow else state.last
        assert request is not None
        sql = self._refused.get(bind.statement)
        if sql is None:
            made = state.statement(bind.statement)
            sql = made.note if made is not None and isinstance(made.note, str) else None
        request.note = (sql, bind.statement, self._params(bind))

    def _follow(self, frame: pgwire.Frame) -> None:
        """Feed the state machine a Describe, Close, CopyDone or CopyFail (without masking);
        Flush, CopyData and Terminate owe nothing."""
        kind = frame.type
        if kind in _NAMED:
            message = pgwire.decode_frontend(frame)
            assert isinstance(message, pgwire.Describe | pgwire.Close)
            self.state.client(kind, message.name, message.kind.encode())
        elif kind in _COPY_ENDS:
            self.state.copy_end()

    def _execute(self, portal: str, starts: list[QueryStart]) -> None:
        """An Execute's record: the text of the statement its portal was bound to."""
        bound = self.state.portal(portal)
        note = bound.note if bound is not None else None
        sql, statement, params = note if isinstance(note, tuple) else (None, portal, None)
        if sql is None:  # prepared before the bastion saw it: nothing to show but its name
            sql = f"[prepared statement {statement!r}]"
            self._unknown = True  # never checked: not known to be a read
        key = self._record_start("execute", sql, params, None, starts)
        unrun = self.tracker.sent(self.state.last, key, now_ns=self._now_ns)
        if unrun:
            self._unrun += unrun

    def _checked(self, frame: pgwire.Frame, starts: list[QueryStart]) -> bytes:
        """A Query, Parse or function call: checked by the masking and the read-only guard."""
        guard = self.guard
        if frame.type == b"Q":
            sql = pgwire.query_text(frame)
            masked = guard.query(sql) if guard is not None else None
            if masked is not None:
                return self._refused_statement("simple", sql, masked, starts, masked=True)
            return self._statement(frame.raw, "simple", sql, starts)
        message = pgwire.decode_frontend(frame)
        if isinstance(message, pgwire.Parse):
            masked = guard.parse(message.name, message.sql) if guard is not None else None
            refused = masked or self._refusal(message.sql, message.param_types)
            if refused is not None:
                if len(self._refused) >= self.max_prepared:
                    self._refused.clear()  # only what a skipped Execute's row shows is lost
                self._refused[message.name] = message.sql
                return self._refused_statement(
                    "parse", message.sql, refused, starts, masked=bool(masked)
                )
            self._refused.pop(message.name, None)  # the latest Parse of a name is the one
            if guard is None and _NAMES_SQL.search(message.sql):
                self.state.forget_names()
            request = self._request(b"P", message.name)
            if request is not None:
                request.note = message.sql  # what its Executes log
            return frame.raw
        return self._function_call(frame.raw, starts)

    def _request(self, kind: bytes, name: str = "") -> Request | None:
        """The request a client message rides on: made by the masking's flow already, or
        here (the message going upstream is a Query, Parse or function call)."""
        if self.guard is None:
            self.state.client(kind, name)
        return self.state.last

    def _function_call(self, raw: bytes, starts: list[QueryStart]) -> bytes:
        """A FunctionCall, logged by its function's OID (its arguments are values: not kept)."""
        oid = int.from_bytes(raw[5:9], "big") if len(raw) >= 9 else 0
        call = f"[fast-path function call: function OID {oid}]"
        if self.guard is not None:
            reason = self.guard.function_call()
            return self._refused_statement("function", call, reason, starts, masked=True)
        if self.read_only:
            refused = "the fast-path function call cannot be checked"
            return self._refused_statement("function", call, refused, starts)
        return self._statement(raw, "function", call, starts)

    def _statement(self, raw: bytes, step: str, sql: str, starts: list[QueryStart]) -> bytes:
        """A simple Query or a function call: answered in full before ReadyForQuery."""
        refused = self._refusal(sql) if step == "simple" else None
        if refused is not None:
            return self._refused_statement(step, sql, refused, starts)
        request = self._request(b"Q" if step == "simple" else b"F")
        if self.guard is None and _NAMES_SQL.search(sql):
            self.state.forget_names()
        key = self._record_start(step, sql, None, None, starts)
        self._unrun += self.tracker.sent(request, key, now_ns=self._now_ns)
        return raw

    def _refused_statement(self, step: str, sql: str, reason: str, starts: list[QueryStart],
                 *, masked: bool = False) -> bytes:  # fmt: skip
        """Log the refusal and send the stand-in that fails where the statement would have."""
        parse = step in _PARSE_STAND_IN
        request = self._request(b"P" if parse else b"Q")  # the stand-in's
        key = self._record_start(step, sql, None, reason, starts)
        if masked or not self.read_only:  # a masked session's check (its grant may write)
            error = pgwire.error_response("ERROR", "42501", f"refused by the bastion: {reason}")
        else:
            message = f"refused by the bastion: {reason} (this grant is read-only)"
            error = pgwire.error_response("ERROR", "25006", message)
        self._unrun += self.tracker.sent(request, key, now_ns=self._now_ns, stand_in=error)
        return _STAND_IN_PARSE if parse else _STAND_IN_QUERY

    def _key(self) -> str:
        self.counter += 1
        return f"{self.session_id}:{self.counter}"

    def _refusal(self, sql: str, param_types: tuple[int, ...] = ()) -> str | None:
        """A read grant's refusal; and for read and masked sessions alike, a call in disguise."""
        if not self.read_only and self.guard is None:
            return None
        if self.read_only:
            found = sqlparse.classify(sql)
            if found.error is not None:
                # The parser's message quotes the text near the error; keep none of it.
                return "cannot parse the statement"
            refusal: str | None = found.read_only_refusal
            if refusal is not None:
                return refusal
        if self.names is None:  # fail closed: nothing can prove a qualified name a column
            return "the bastion has not read the target's names to check the statement"
        refusal = disguise.refusal(sql, self.names)
        if refusal is None and param_types:
            return disguise.parameter_refusal(param_types, self.names)
        if refusal is not None and self.names_missed is not None:
            self.names_missed()  # maybe created since the snapshot: the next session reads again
        return refusal

    def _params(self, bind: pgwire.Bind) -> str | None:
        if not bind.params:
            return None
        if self.keep_literals:
            return json.dumps(sqlparse.describe_params(bind.params, bind.param_formats))
        return json.dumps(sqlparse.redact_params(bind.params))

    def _record_start(self, step: str, sql: str, params: str | None, refused: str | None,
                      starts: list[QueryStart]) -> str:  # fmt: skip
        """The statement's audit record joins `starts`, which the read returns together."""
        keep_literals = self.keep_literals
        key = self._key()
        placeholder = sql.startswith("[") and sql.endswith("]")
        # The scribe redacts in its own process, unless this session parsed the text already
        # (read-only and masked sessions check every statement before it goes upstream).
        raw = not (keep_literals or placeholder or self.read_only or self.guard is not None)
        kept_whole = None
        if raw:
            text, kind = sql, None
        else:
            if keep_literals or placeholder:
                text = sql
            else:
                text, kept_whole = sqlparse.log_text(sql)
            kind = sqlparse.command_kind(sql)
        starts.append(QueryStart(key, self.session_id, self.user, self.target, self._now, step,
                                 text, params, kind, refused, raw, kept_whole))  # fmt: skip
        return key

    # -- target to client ---------------------------------------------------------------

    def upstream_read(self, data: bytes, now: datetime, now_ns: int) -> Step:
        """One read from the target: the bytes for the client and the records of the
        statements it ended. `fatal` when the checks cannot vouch for the read (nothing of it
        may reach the client)."""
        self._now, self._now_ns = now, now_ns
        scan = self._from_upstream.feed(data)
        finished: list[Finished] = []
        try:
            down = self._observe(scan, finished)
        except (MaskingLost, StateError) as exc:  # the replies before it keep their outcomes
            told = UNATTRIBUTED if isinstance(exc, StateError) else exc.told or LOST_CHECK
            ends = self._ends(finished) if finished else ()
            return Step(ends=ends, fatal=Fatal("XX000", told, f"error: {exc}"))
        return Step(b"", down, (), self._ends(finished) if finished else (), False, scan.error)

    def _observe(self, scan: pgwire.Scan, finished: list[Finished]) -> bytes | memoryview:
        """Attribute the replies to statements; the bytes for the client (changed only where
        the masking rewrites or a refused statement's stand-in error is swapped for the
        bastion's own), and the statements that ended."""
        swapped: dict[int, bytes] = {}
        tracker, guard, state = self.tracker, self.guard, self.state
        for index, item in enumerate(scan.items):
            request = state.head  # the request this reply answers (if it answers one)
            if guard is not None:  # the masking's flow feeds the state machine
                changed = guard.reply(item, tracker.head)
                if changed is not None:
                    swapped[index] = changed
            if isinstance(item, pgwire.Run):
                if guard is None:  # DataRows, or a COPY TO STDOUT's CopyData
                    state.server(b"D" if item.raw[0] == 0x44 else b"d")
                tracker.data_rows(request, item.messages)
                continue
            if guard is None:
                state.server(item.type, chr(item.raw[5]) if item.type == b"Z" else None)
            finished += self._reply(request, item, index, swapped)
        if not swapped:
            return scan.data
        return b"".join(swapped.get(i, item.raw) for i, item in enumerate(scan.items))

    def _reply(self, request: Request | None, item: pgwire.Frame, index: int,
               swapped: dict[int, bytes]) -> list[Finished]:  # fmt: skip
        """What one reply (answering `request`) ends."""
        kind, tracker, now_ns = item.type, self.tracker, self._now_ns
        if kind == b"C":
            return tracker.complete(request, pgwire.command_tag(item), now_ns)
        if kind in (b"I", b"s"):
            return tracker.complete(request, None, now_ns)
        if kind == b"E":
            return self._error(request, item, index, swapped)
        if kind == b"S" and not check_status(item, self.read_only):
            self.upstream_read_only = False  # a masked session's statements wait again
        elif kind == b"Z":
            self.status = chr(item.raw[5])
            return tracker.ready(request, now_ns)
        return []

    def _error(self, request: Request | None, item: pgwire.Frame, index: int,
               swapped: dict[int, bytes]) -> list[Finished]:  # fmt: skip
        """An ErrorResponse ends its statement (and skips the rest up to Sync); a refused
        one's stand-in error is swapped."""
        tracker = self.tracker
        skipped = self.state.skipped if request is not None and request.kind in _SKIPS else ()
        note = request.note if request is not None else None
        stand_in = getattr(note, "stand_in", None)
        if stand_in is not None:
            swapped[index] = stand_in
            sqlstate = "42501" if self.guard is not None else "25006"
            return tracker.error(request, sqlstate, self._now_ns, skipped)
        error = pgwire.decode_backend(item)
        assert isinstance(error, pgwire.ErrorResponse)
        return tracker.error(request, error.sqlstate, self._now_ns, skipped)

    def abandon(self, why: str, now: datetime, now_ns: int) -> list[QueryEnd]:
        """The connection ended: the records of whatever was still in flight, tagged `why`."""
        self._now, self._now_ns = now, now_ns
        return self._ends(self.tracker.abandon(now_ns, why))

    def _ends(self, finished: list[Finished]) -> list[QueryEnd]:
        ends = []
        for f in finished:
            p = f.pending
            note = masking_note(p.mask, p.shown, p.earlier) if p is not None else None
            ends.append(QueryEnd(f.key, self.session_id, self.user, self.target, self._now,
                                 f.rows, f.tag, f.sqlstate, f.duration_ns // 1000, note,
                                 p.server_message if p is not None else None))  # fmt: skip
        return ends


_STATEMENTS = frozenset((b"Q", b"P", b"F"))  # client messages the checks read first
_NAMED = frozenset((b"D", b"C"))  # Describe, Close: what they name is in the books
_BOUND = frozenset((b"B", b"E"))  # Bind, Execute: what they name must be certain
_PARSE_STAND_IN = frozenset(("parse", "bind", "execute"))  # refused with a failing Parse
# SQL that changes the server's statements or portals behind the protocol's back.
_NAMES_SQL = re.compile(r"\b(?:prepare|deallocate|discard|declare|close)\b", re.IGNORECASE)
_COPY_ENDS = frozenset((b"c", b"f"))
_SKIPS = frozenset((b"P", b"B", b"D", b"E", b"C"))  # an error answering one skips to Sync
