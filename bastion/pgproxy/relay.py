"""Relaying one database session both ways: statement log, read-only guard, replies attributed."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from bastion import pgwire, sqlparse
from bastion.audit import QueryEnd, QueryStart
from bastion.core import Core
from bastion.pgproxy.client import Client
from bastion.pgproxy.tracker import Finished, Tracker
from bastion.pgproxy.upstream import Upstream

log = structlog.get_logger("bastion.postgres")

FLUSH_AT = 256 * 1024  # bytes of replies gathered before they are written to the client


@dataclass
class Relay:
    core: Core
    client: Client
    up: Upstream
    session_id: str
    user: str
    target: str
    read_only: bool
    status: str = "I"  # the last ReadyForQuery status: I idle, T in transaction, E failed
    tracker: Tracker = field(default_factory=Tracker)
    statements: dict[str, str] = field(default_factory=dict)
    portals: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    skipping: bool = False  # a refused message in a pipeline: drop everything up to Sync
    counter: int = 0
    failure: str | None = None  # set when the audit trail could not be written

    # -- client to target ---------------------------------------------------------------

    async def from_client(self) -> str:
        """Forward the client's messages; returns why the client side ended."""
        while True:
            frame = await self.client.next_frame()
            if frame is None:
                return "client closed the connection"
            if self.failure is not None:
                return self.failure
            if self.skipping:
                self._skip(frame)
                continue
            forward = await self._inspect(frame)
            if forward:
                self.up.writer.write(frame.raw)
                await self.up.writer.drain()
            if frame.type == b"X":
                return "client ended the session"

    async def _inspect(self, frame: pgwire.Frame) -> bool:
        kind = frame.type
        if kind == b"Q":
            return await self._simple(frame)
        if kind == b"P":
            return await self._parse(frame)
        if kind == b"B":
            bind = pgwire.decode_frontend(frame)
            assert isinstance(bind, pgwire.Bind)
            self.portals[bind.portal] = (bind.statement, self._params(bind))
        elif kind == b"E":
            await self._execute(frame)
        elif kind == b"F":
            return await self._function_call()
        return True

    def _skip(self, frame: pgwire.Frame) -> None:
        if frame.type == b"S":
            self.skipping = False
            self.client.send(pgwire.ready_for_query(self.status))

    def _key(self) -> str:
        self.counter += 1
        return f"{self.session_id}:{self.counter}"

    def _refusal(self, sql: str) -> str | None:
        if not self.read_only:
            return None
        found = sqlparse.classify(sql)
        if found.error is not None:
            # The parser's message quotes the text near the error; keep none of it.
            return "cannot parse the statement"
        refusal: str | None = found.read_only_refusal
        return refusal

    async def _simple(self, frame: pgwire.Frame) -> bool:
        query = pgwire.decode_frontend(frame)
        assert isinstance(query, pgwire.Query)
        refused = self._refusal(query.sql)
        key = self._key()
        await self._record_start(key, "simple", query.sql, None, refused)
        if refused is not None:
            self._refuse(refused)
            self.client.send(pgwire.ready_for_query(self.status))
            return False
        self.tracker.sent(key, simple=True, now_ns=time.monotonic_ns())
        return True

    async def _parse(self, frame: pgwire.Frame) -> bool:
        parse = pgwire.decode_frontend(frame)
        assert isinstance(parse, pgwire.Parse)
        refused = self._refusal(parse.sql)
        if refused is not None:
            await self._record_start(self._key(), "parse", parse.sql, None, refused)
            self._refuse(refused)
            self.skipping = True
            return False
        self.statements[parse.name] = parse.sql
        return True

    async def _execute(self, frame: pgwire.Frame) -> None:
        execute = pgwire.decode_frontend(frame)
        assert isinstance(execute, pgwire.Execute)
        statement, params = self.portals.get(execute.portal, ("", None))
        sql = self.statements.get(statement)
        key = self._key()
        if sql is None:  # prepared before the bastion saw it: nothing to show but its name
            sql = f"[prepared statement {statement!r}]"
        await self._record_start(key, "execute", sql, params, None)
        self.tracker.sent(key, simple=False, now_ns=time.monotonic_ns())

    async def _function_call(self) -> bool:
        refused = "the fast-path function call cannot be checked" if self.read_only else None
        key = self._key()
        await self._record_start(key, "function", "[fast-path function call]", None, refused)
        if refused is not None:
            self._refuse(refused)
            self.skipping = True
            return False
        self.tracker.sent(key, simple=False, now_ns=time.monotonic_ns())
        return True

    def _refuse(self, reason: str) -> None:
        message = f"refused by the bastion: {reason} (this grant is read-only)"
        self.client.send(pgwire.error_response("ERROR", "25006", message))

    def _params(self, bind: pgwire.Bind) -> str | None:
        if not bind.params:
            return None
        if self.core.config.audit.keep_literals:
            return json.dumps(sqlparse.describe_params(bind.params, bind.param_formats))
        return json.dumps(sqlparse.redact_params(bind.params))

    async def _record_start(self, key: str, step: str, sql: str, params: str | None,
                            refused: str | None) -> None:  # fmt: skip
        """Durable before the statement goes upstream (strict), or queued (batched)."""
        placeholder = sql.startswith("[") and sql.endswith("]")
        text = sql if self.core.config.audit.keep_literals or placeholder else sqlparse.redact(sql)
        record = QueryStart(key, self.session_id, self.user, self.target, self.core.clock.now(),
                            step, text, params, sqlparse.command_kind(sql), refused)  # fmt: skip
        future = self.core.audit_writer().submit(record)
        if self.core.config.audit.durability == "strict":
            await future
        else:
            future.add_done_callback(self._check_write)

    def _check_write(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.failure = "the audit trail could not be written; the session was ended"

    # -- target to client ---------------------------------------------------------------

    async def from_upstream(self) -> str:
        """Forward the target's replies, gathered, never faster than the client drains."""
        out = bytearray()
        while True:
            frame = self.up.frames.next_frame()
            if frame is None:
                if out:
                    self.client.send(bytes(out))
                    out.clear()
                    await self.client.writer.drain()
                data = await self.up.reader.read(256 * 1024)
                if not data:
                    return "upstream_lost"
                self.up.frames.feed(data)
                continue
            self._observe(frame)
            out += frame.raw
            if len(out) >= FLUSH_AT:
                self.client.send(bytes(out))
                out.clear()
                await self.client.writer.drain()

    def _observe(self, frame: pgwire.Frame) -> None:
        kind = frame.type
        if kind == b"D":
            self.tracker.data_rows(1)
            return
        now = time.monotonic_ns()
        finished: list[Finished] = []
        if kind == b"C":
            message = pgwire.decode_backend(frame)
            assert isinstance(message, pgwire.CommandComplete)
            finished = self.tracker.complete(message.tag, now)
        elif kind in (b"I", b"s"):
            finished = self.tracker.complete(None, now)
        elif kind == b"E":
            error = pgwire.decode_backend(frame)
            assert isinstance(error, pgwire.ErrorResponse)
            finished = self.tracker.error(error.sqlstate, now)
        elif kind == b"Z":
            self.status = chr(frame.raw[5])
            finished = self.tracker.ready(now)
        if finished:
            self.record_ends(finished)

    def record_ends(self, finished: list[Finished]) -> None:
        writer = self.core.audit_writer()
        for f in finished:
            record = QueryEnd(f.key, self.session_id, self.user, self.target,
                              self.core.clock.now(), f.rows, f.tag, f.sqlstate,
                              f.duration_ns // 1000)  # fmt: skip
            writer.submit(record).add_done_callback(self._check_write)
