"""What relaying one database session means: statement log, read-only guard, replies attributed
(sans-I/O: the pump moves the bytes)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import structlog

from bastion import pgwire, sqlparse
from bastion.audit import QueryEnd, QueryStart
from bastion.core import Core
from bastion.pgproxy.guard import Guard, MaskingLost, masking_note
from bastion.pgproxy.tracker import Finished, Tracker
from bastion.sqlparse import disguise
from bastion.sqlparse import lexing as sqlparse_lexing
from bastion.sqlparse.names import GuardCatalog

log = structlog.get_logger("bastion.postgres")

REFUSED_SQL = "bastion refused this statement"
"""Sent upstream in place of a refused statement. It is a syntax error, so the server answers
with an error exactly where the refused statement's answer belongs, aborts the transaction and
skips to Sync as for any failed statement; the relay swaps that error for its own message."""
_STAND_IN_QUERY = pgwire.query(REFUSED_SQL)
_STAND_IN_PARSE = pgwire.parse("", REFUSED_SQL, ())


class ClientStep(NamedTuple):
    """What one client read asks of the pump."""

    out: bytes | memoryview  # for the target, once `durable` is done
    durable: asyncio.Future[Any] | None  # the read's audit rows, on disk first (strict)
    ended: bool  # the client said goodbye (Terminate)
    error: pgwire.ProtocolError | None  # a malformed message followed `out`


@dataclass
class Relay:
    core: Core
    session_id: str
    user: str
    target: str
    read_only: bool
    guard: Guard | None = None  # set when the target masks (and then every reply is checked)
    names: GuardCatalog | None = None  # a read grant's snapshot of the target's names
    names_missed: Callable[[], None] | None = None  # the snapshot lacked a name: read it again
    status: str = "I"  # the last ReadyForQuery status: I idle, T in transaction, E failed
    tracker: Tracker = field(default_factory=Tracker)
    statements: dict[str, str] = field(default_factory=dict)
    portals: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    counter: int = 0
    failure: str | None = None  # set when the audit trail could not be written
    last_input: datetime = field(init=False)  # when the client last sent anything

    def __post_init__(self) -> None:
        self.last_input = self.core.clock.now()
        limit = self.core.config.postgres.max_message
        self._from_client = pgwire.Scanner(b"d", limit)  # COPY in, in bulk
        self._from_upstream = pgwire.Scanner(b"Dd", limit)  # DataRows and COPY out, counted

    # -- client to target ---------------------------------------------------------------

    def needs_refresh(self) -> bool:
        """Whether the unmask grants must be read again before the next client read is used:
        expiry and revocation take effect on the next statement."""
        return self.guard is not None and bool(self.guard.grant_ids)

    async def refresh_grants(self) -> None:
        if self.guard is not None:
            live = await self.core.unmask_grants(self.user, self.target)
            self.guard.set_grants(live)

    def client_read(self, data: bytes) -> ClientStep:
        """One read from the client: what goes upstream, and what must be durable first.

        Each read is scanned whole; its statements are queued for the audit trail together
        and, under strict durability, are on disk before any of the read goes upstream.
        """
        self.last_input = self.core.clock.now()
        scan = self._from_client.feed(data)
        records: list[QueryStart] = []
        out, ended = self._client_scan(scan, records)
        joined = out[0] if len(out) == 1 else b"".join(out) if out else b""
        durable = self.core.audit_writer().submit_all(records) if records else None
        return ClientStep(joined, durable, ended, scan.error)

    def client_eof(self) -> str:
        """The client closed its side; ProtocolError if it stopped inside a message."""
        self._from_client.feed_eof()
        return "client closed the connection"

    def _client_scan(
        self, scan: pgwire.Scan, waits: list[QueryStart]
    ) -> tuple[list[bytes | memoryview], bool]:
        """What to send upstream for one read, and whether the client said goodbye
        (Terminate); `waits` gets the audit rows that must be durable first (strict)."""
        out: list[bytes | memoryview] = []
        for item in scan.items:
            if isinstance(item, pgwire.Run):
                out.append(item.raw)
                continue
            out.append(self._inspect(item, waits))
            if item.type == b"X":
                return out, True
        return out, False

    def _inspect(self, frame: pgwire.Frame, waits: list[QueryStart]) -> bytes:
        """What to send upstream for one client message (itself, or a refusal's stand-in)."""
        kind = frame.type
        if kind in (b"Q", b"P", b"F"):
            return self._checked(frame, waits)
        # Tracked by the masking, which may put a Describe before an Execute.
        raw = self.guard.message(frame) if self.guard is not None else frame.raw
        if kind == b"B":
            bind = pgwire.decode_frontend(frame)
            assert isinstance(bind, pgwire.Bind)
            self.portals[bind.portal] = (bind.statement, self._params(bind))
        elif kind == b"E":
            execute = pgwire.decode_frontend(frame)
            assert isinstance(execute, pgwire.Execute)
            statement, params = self.portals.get(execute.portal, ("", None))
            sql = self.statements.get(statement)
            if sql is None:  # prepared before the bastion saw it: nothing to show but its name
                sql = f"[prepared statement {statement!r}]"
            key = self._record_start("execute", sql, params, None, waits)
            self.tracker.sent(key, simple=False, now_ns=time.monotonic_ns())
        return raw

    def _checked(self, frame: pgwire.Frame, waits: list[QueryStart]) -> bytes:
        """A Query, Parse or function call: checked by the masking and the read-only guard."""
        guard = self.guard
        if frame.type == b"Q":
            sql = pgwire.query_text(frame)
            masked = guard.query(sql) if guard is not None else None
            if masked is not None:
                return self._refused("simple", sql, masked, waits, masked=True)
            return self._statement(frame.raw, "simple", sql, waits)
        message = pgwire.decode_frontend(frame)
        if isinstance(message, pgwire.Parse):
            masked = guard.parse(message.name, message.sql) if guard is not None else None
            refused = masked or self._refusal(message.sql, message.param_types)
            self.statements[message.name] = message.sql  # refused or not: what Executes log
            if refused is None:
                return frame.raw
            return self._refused("parse", message.sql, refused, waits, masked=bool(masked))
        return self._function_call(frame.raw, waits)

    def _function_call(self, raw: bytes, waits: list[QueryStart]) -> bytes:
        call = "[fast-path function call]"
        if self.guard is not None:
            reason = self.guard.function_call()
            return self._refused("function", call, reason, waits, masked=True)
        if self.read_only:
            refused = "the fast-path function call cannot be checked"
            return self._refused("function", call, refused, waits)
        return self._statement(raw, "function", call, waits)

    def _statement(self, raw: bytes, step: str, sql: str, waits: list[QueryStart]) -> bytes:
        """A simple Query or a function call: answered in full before ReadyForQuery."""
        refused = self._refusal(sql) if step == "simple" else None
        if refused is not None:
            return self._refused(step, sql, refused, waits)
        key = self._record_start(step, sql, None, None, waits)
        self.tracker.sent(key, simple=True, now_ns=time.monotonic_ns())
        return raw

    def _refused(self, step: str, sql: str, reason: str, waits: list[QueryStart],
                 *, masked: bool = False) -> bytes:  # fmt: skip
        """Log the refusal and send the stand-in that fails where the statement would have."""
        key = self._record_start(step, sql, None, reason, waits)
        if masked or not self.read_only:  # a masked session's check (its grant may write)
            error = pgwire.error_response("ERROR", "42501", f"refused by the bastion: {reason}")
        else:
            message = f"refused by the bastion: {reason} (this grant is read-only)"
            error = pgwire.error_response("ERROR", "25006", message)
        self.tracker.sent(key, simple=step != "parse", now_ns=time.monotonic_ns(), stand_in=error)
        return _STAND_IN_PARSE if step == "parse" else _STAND_IN_QUERY

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
        if self.core.config.audit.keep_literals:
            return json.dumps(sqlparse.describe_params(bind.params, bind.param_formats))
        return json.dumps(sqlparse.redact_params(bind.params))

    def _record_start(self, step: str, sql: str, params: str | None, refused: str | None,
                      waits: list[QueryStart]) -> str:  # fmt: skip
        """Queue the statement's audit row; strict durability waits for it before forwarding
        (it joins `waits`, which the read submits together)."""
        audit = self.core.config.audit
        key = self._key()
        placeholder = sql.startswith("[") and sql.endswith("]")
        # The scribe redacts in its own process, unless this session parsed the text already
        # (read-only and masked sessions check every statement before it goes upstream).
        raw = not (audit.keep_literals or placeholder or self.read_only or self.guard is not None)
        kept_whole = None
        if raw:
            text, kind = sql, None
        else:
            if audit.keep_literals or placeholder:
                text = sql
            else:
                text, kept_whole = sqlparse.log_text(sql)
            kind = sqlparse.command_kind(sql)
        record = QueryStart(key, self.session_id, self.user, self.target, self.core.clock.now(),
                            step, text, params, kind, refused, raw, kept_whole)  # fmt: skip
        if audit.durability == "strict":
            waits.append(record)
        else:
            self.core.audit_writer().post(record, self._write_lost)
        return key

    def _write_lost(self) -> None:
        self.failure = "the audit trail could not be written; the session was ended"

    # -- target to client ---------------------------------------------------------------

    def upstream_read(self, data: bytes) -> tuple[bytes | memoryview, pgwire.ProtocolError | None]:
        """One read from the target: the bytes for the client, and a framing error that
        followed them. MaskingLost when the masking cannot vouch for the read (nothing of it
        may reach the client)."""
        scan = self._from_upstream.feed(data)
        return self._observe(scan), scan.error

    def _observe(self, scan: pgwire.Scan) -> bytes | memoryview:
        """Attribute the replies to statements; the bytes for the client (changed only where a
        refused statement's stand-in error is swapped for the bastion's own)."""
        swapped: dict[int, bytes] = {}
        finished: list[Finished] = []
        tracker, guard = self.tracker, self.guard
        for index, item in enumerate(scan.items):
            if guard is not None:
                changed = guard.reply(item, tracker.head)
                if changed is not None:
                    swapped[index] = changed
            if isinstance(item, pgwire.Run):
                tracker.data_rows(item.messages)
                continue
            kind = item.type
            if kind == b"C":
                finished += tracker.complete(pgwire.command_tag(item), time.monotonic_ns())
            elif kind in (b"I", b"s"):
                finished += tracker.complete(None, time.monotonic_ns())
            elif kind == b"E":
                finished += self._error(item, index, swapped)
            elif kind == b"S":
                _check_status(item, self.read_only)
            elif kind == b"Z":
                self.status = chr(item.raw[5])
                finished += tracker.ready(time.monotonic_ns())
        if finished:
            self.record_ends(finished)
        if not swapped:
            return scan.data
        return b"".join(swapped.get(i, item.raw) for i, item in enumerate(scan.items))

    def _error(self, item: pgwire.Frame, index: int, swapped: dict[int, bytes]) -> list[Finished]:
        """An ErrorResponse ends its statement; a refused one's stand-in error is swapped."""
        tracker = self.tracker
        stand_in = tracker.stand_in()
        if stand_in is not None:
            swapped[index] = stand_in
            sqlstate = "42501" if self.guard is not None else "25006"
            return tracker.error(sqlstate, time.monotonic_ns())
        error = pgwire.decode_backend(item)
        assert isinstance(error, pgwire.ErrorResponse)
        return tracker.error(error.sqlstate, time.monotonic_ns())

    def record_ends(self, finished: list[Finished]) -> None:
        writer = self.core.audit_writer()
        for f in finished:
            p = f.pending
            note = masking_note(p.mask, p.shown, p.earlier) if p is not None else None
            record = QueryEnd(f.key, self.session_id, self.user, self.target,
                              self.core.clock.now(), f.rows, f.tag, f.sqlstate,
                              f.duration_ns // 1000, note,
                              p.server_message if p is not None else None)  # fmt: skip
            writer.post(record, self._write_lost)


LIFTED = ("the read-only guard was lifted by code the database runs (a function, view, cast or"
          " operator of its own); the session was ended")  # fmt: skip


def _check_status(frame: pgwire.Frame, read_only: bool) -> None:
    """The server reports a setting that changes how it reads SQL (SET in a pipelined query,
    a function, a role's default): the bastion would judge text the server reads otherwise.
    Under a read grant, it reports default_transaction_read_only turned off: code the guard
    could not see lifted it, and the session ends before anything else runs."""
    status = pgwire.decode_backend(frame)
    if isinstance(status, pgwire.ParameterStatus):
        why = sqlparse_lexing.refusal(status.name, status.value)
        if why is not None:
            raise MaskingLost(f"the database reported {status.name}={status.value}", why)
        if read_only and status.name == "default_transaction_read_only" and status.value != "on":
            raise MaskingLost(f"the database reported {status.name}={status.value}", LIFTED)
