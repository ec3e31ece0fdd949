"""Moving a session's bytes by transport callbacks: reads, writes, flow control, no streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any, NamedTuple, cast

from bastion.audit import QueryEnd, QueryStart
from bastion.core import Core
from bastion.errors import StoreError
from bastion.pgproxy.client import Client
from bastion.pgproxy.relay import Relay, Step
from bastion.pgproxy.upstream import Upstream
from bastion.tasks import spawn

WRITE_LOST = "the audit trail could not be written; the session was ended"
HELD_BOUND = 4 * 1024 * 1024
"""Bytes of held replies (pure reads whose records are not yet durable) kept in memory; past
this the pump stops reading the target until the records are durable (backpressure)."""


class Ended(NamedTuple):
    """Why the relay stopped: a reason for the session row, or the error that stopped it."""

    side: str  # "client" or "database": whose bytes or connection ended it
    why: str
    error: BaseException | None = None


class Pump:
    """Runs a Relay between the client's and the target's transports.

    Login uses streams; the relay takes the two transports over with protocols of its own, so
    a statement costs two callbacks and two writes, with no task switches. The relay does no
    I/O: the pump gives it each read and the time, and does what its step asks (audit records
    submitted, unmask grants read, bytes written, the session ended). A client read whose
    audit rows must be durable first (strict durability), or that needs the unmask grants read
    again, holds further client reads until that is done, then goes upstream in order. A read
    of pure reads (Step.pure) goes upstream at once under strict durability, and every byte
    for the client from then on is held until its rows are durable (if they are lost, the
    session ends and nothing held is sent). Each side is read only while the other can take
    more (backpressure both ways), and the target not while held bytes pass HELD_BOUND. A
    record that cannot be written ends the session at the next client read (StoreError).
    """

    def __init__(self, core: Core, relay: Relay, client: Client, up: Upstream) -> None:
        self.core, self.relay, self.client, self.up = core, relay, client, up
        self.strict = core.config.audit.durability == "strict"
        self.failure: str | None = None  # set when a posted record could not be written
        self.ended: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()
        self._client_t = cast(asyncio.Transport, client.writer.transport)
        self._up_t = cast(asyncio.Transport, up.writer.transport)
        self._sides = (_ClientSide(self, self._client_t), _UpstreamSide(self, self._up_t))
        self._backlog: list[bytes] = []  # client reads that came while one was held
        self._client_eof = False  # the client closed while a read was held
        self._held = False  # a client read waits for its audit rows (or for grants)
        self._up_full = False  # the target is not taking more: don't read the client
        self._client_paused = False
        self._task: asyncio.Task[None] | None = None
        self._holds: deque[asyncio.Future[Any]] = deque()  # pure reads' records, in order
        self._holds_made = 0  # pure reads whose records were submitted
        self._holds_done = 0  # of those, the first ones whose records are durable
        self._down_held: deque[tuple[int, bytes]] = deque()  # (pure reads it waits for, bytes)
        self._held_size = 0
        self._client_full = False
        self._up_paused = False

    async def run(self) -> Ended:
        """Take over both transports and relay until one side ends."""
        client_first = self.client.frames.take_buffered() + _take_buffered(self.client.reader)
        up_first = self.up.frames.take_buffered() + _take_buffered(self.up.reader)
        for transport, side in ((self._client_t, self._sides[0]), (self._up_t, self._sides[1])):
            transport.set_protocol(side)
            if not transport.is_closing():
                transport.resume_reading()  # a stream may have paused it; from here, _reading()
        if up_first:
            self.from_upstream(up_first)
        if _finished(self.up.reader, self._up_t):
            self.upstream_lost(self.up.reader.exception())
        if client_first:
            self.from_client(client_first)
        if _finished(self.client.reader, self._client_t):
            self.client_eof()
        self._reading()
        return await self.ended

    def close(self) -> None:
        """Stop (a held read is dropped) and give each open transport back to its stream."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for transport, side in ((self._client_t, self._sides[0]), (self._up_t, self._sides[1])):
            if not transport.is_closing() and transport.get_protocol() is side:
                transport.set_protocol(side.original)

    # -- client to target ---------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self.ended.done():
            return
        if self._held:
            self._backlog.append(data)
        else:
            self._process(data)

    def _process(self, data: bytes) -> None:
        try:
            step = self.relay.client_read(data, self.core.clock.now(), time.monotonic_ns())
            if step.refresh:
                self._hold(self._refreshed(data))
                return
            durable = self._record(step.starts) if step.starts else None
            if step.ends:  # statements the server will skip: they end as they start
                self.post_ends(step.ends)
        except Exception as exc:  # run() decides what each error means
            self._end("client", "", exc)
            return
        if self.failure is not None:
            self._end("client", "", StoreError(self.failure))
        elif durable is not None and step.pure:
            self._hold_replies(durable)
            self._send_up(step)
        elif durable is not None:
            self._held = True
            self._reading()
            durable.add_done_callback(lambda done: self._durable(step, done))
        else:
            self._send_up(step)

    def _record(self, starts: Sequence[QueryStart]) -> asyncio.Future[Any] | None:
        """The read's statement records: under strict durability, the future its bytes wait
        for; otherwise posted (nobody waits)."""
        writer = self.core.audit_writer()
        self.core.metrics.statements_started(starts)
        if self.strict:
            return writer.submit_all(starts)
        for record in starts:
            writer.post(record, self._write_lost)
        return None

    def post_ends(self, ends: Sequence[QueryEnd]) -> None:
        """Statements' outcomes: posted, in order; nobody waits for them."""
        writer = self.core.audit_writer()
        self.core.metrics.statements_ended(ends)
        for record in ends:
            writer.post(record, self._write_lost)

    def _write_lost(self) -> None:
        self.failure = WRITE_LOST

    def _send_up(self, step: Step) -> None:
        if self.ended.done():  # the client left while its read was held: it goes nowhere
            return
        if step.up:
            self._up_t.write(step.up)
        if step.down:
            self._to_client(step.down)
        if step.ended:
            self._end("client", "client ended the session")
        elif step.error is not None:
            self._end("client", "", step.error)

    def _hold(self, work: Coroutine[Any, Any, None]) -> None:
        """Read nothing more from the client until `work` is done."""
        self._held = True
        self._reading()
        self._task = spawn(work, name="pg-held-read")

    async def _refreshed(self, data: bytes) -> None:
        relay = self.relay
        try:
            relay.set_grants(await self.core.unmask_grants(relay.user, relay.target))
        except Exception as exc:  # a store error ends the session
            self._end("client", "", exc)
            return
        self._held = False
        self._process(data)
        self._release()

    def _durable(self, step: Step, done: asyncio.Future[Any]) -> None:
        """The held read's audit rows are on disk (or failed: the statements must not run)."""
        if done.cancelled():
            self._end("client", "the audit writer stopped")
            return
        error = done.exception()
        if error is not None:  # run() says what it was
            self._end("client", "", error)
            return
        self._held = False
        self._send_up(step)
        self._release()

    def _release(self) -> None:
        """Take the reads that came while one was held, in order, then read again."""
        while self._backlog and not self._held and not self.ended.done():
            self.from_client(self._backlog.pop(0))
        if self._client_eof and not self._held:
            self.client_eof()
        self._reading()

    def client_eof(self) -> None:
        if self._held:
            self._client_eof = True
            return
        try:
            self._end("client", self.relay.client_eof())
        except Exception as exc:  # a message cut short
            self._end("client", "", exc)

    def client_lost(self, exc: BaseException | None) -> None:
        self._end("client", "client closed the connection", exc)

    def client_full(self, full: bool) -> None:
        """The client is not taking more: stop reading the target until it catches up."""
        self._client_full = full
        self._reading_up()

    def _reading_up(self) -> None:
        """Read the target only while the client takes more and held bytes are in bound."""
        if self.ended.done() or self._up_t.is_closing():
            return
        pause = self._client_full or self._held_size > HELD_BOUND
        if pause == self._up_paused:
            return
        self._up_paused = pause
        if pause:
            self._up_t.pause_reading()
        else:
            self._up_t.resume_reading()

    # -- replies held for pure reads' records -------------------------------------------

    def _hold_replies(self, durable: asyncio.Future[Any]) -> None:
        """A pure read goes upstream before its records are durable: what the client gets
        from now on waits for them (and for every pure read's before)."""
        self._holds.append(durable)
        self._holds_made += 1
        durable.add_done_callback(self._hold_done)

    def _to_client(self, data: bytes | memoryview) -> None:
        if self._holds_done == self._holds_made:
            self.client.send(data)
            return
        self._down_held.append((self._holds_made, bytes(data)))
        self._held_size += len(data)
        self._reading_up()

    def _hold_done(self, done: asyncio.Future[Any]) -> None:
        """A pure read's records were written (or not: the session ends, nothing held sent)."""
        if not done.cancelled():
            done.exception()  # seen here, even when the session ended first
        if self.ended.done():
            return
        while self._holds and self._holds[0].done():
            first = self._holds.popleft()
            error = None if first.cancelled() else first.exception()
            if first.cancelled() or error is not None:
                self._down_held.clear()
                self._held_size = 0
                self._end("client", "", error or StoreError("the audit writer stopped"))
                return
            self._holds_done += 1
        released: list[bytes] = []
        while self._down_held and self._down_held[0][0] <= self._holds_done:
            data = self._down_held.popleft()[1]
            self._held_size -= len(data)
            released.append(data)
        if released:
            self.client.send(b"".join(released))
        self._reading_up()

    # -- target to client ---------------------------------------------------------------

    def from_upstream(self, data: bytes) -> None:
        if self.ended.done():
            return
        try:
            step = self.relay.upstream_read(data, self.core.clock.now(), time.monotonic_ns())
            if step.fatal is not None:  # nothing of this read reaches the client
                self.post_ends(step.ends)  # what it answered before the fault keeps its outcome
                self.client.fatal(step.fatal.sqlstate, step.fatal.told)
                self._end("database", step.fatal.why)
                return
            if step.ends:
                self.post_ends(step.ends)
        except Exception as exc:  # run() decides what each error means
            self._end("database", "", exc)
            return
        if step.up:
            self._up_t.write(step.up)
        if step.down:
            self._to_client(step.down)
        if step.error is not None:
            self._end("database", "", step.error)

    def upstream_lost(self, exc: BaseException | None) -> None:
        self._end("database", "upstream_lost")

    def upstream_full(self, full: bool) -> None:
        self._up_full = full
        self._reading()

    # -- both -----------------------------------------------------------------------------

    def _reading(self) -> None:
        """Read the client only while no read is held and the target takes more."""
        pause = self._held or self._up_full or self.ended.done()
        if pause == self._client_paused or self._client_t.is_closing():
            return
        self._client_paused = pause
        if pause:
            self._client_t.pause_reading()
        else:
            self._client_t.resume_reading()

    def _end(self, side: str, why: str, error: BaseException | None = None) -> None:
        if not self.ended.done():
            self.ended.set_result(Ended(side, why, error))


class _Side(asyncio.Protocol):
    """One transport's callbacks while the pump has it; the stream protocol it replaced still
    hears the connection end, so the stream's writer knows too."""

    def __init__(self, pump: Pump, transport: asyncio.Transport) -> None:
        self.pump = pump
        self.original = transport.get_protocol()
        # Over plain TCP our side stays open after the peer's EOF, so the session's last
        # words (an error) still go out; TLS has no half-close, and asyncio warns if asked.
        self.keep_open: bool | None = (
            True if transport.get_extra_info("sslcontext") is None else None
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost(exc)
        self.original.connection_lost(exc)

    def lost(self, exc: Exception | None) -> None:
        raise NotImplementedError


class _ClientSide(_Side):
    def data_received(self, data: bytes) -> None:
        self.pump.from_client(data)

    def eof_received(self) -> bool | None:
        self.pump.client_eof()
        return self.keep_open

    def lost(self, exc: Exception | None) -> None:
        self.pump.client_lost(exc)

    def pause_writing(self) -> None:
        self.pump.client_full(True)

    def resume_writing(self) -> None:
        self.pump.client_full(False)


class _UpstreamSide(_Side):
    def data_received(self, data: bytes) -> None:
        self.pump.from_upstream(data)

    def eof_received(self) -> bool | None:
        self.pump.upstream_lost(None)
        return self.keep_open

    def lost(self, exc: Exception | None) -> None:
        self.pump.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.pump.upstream_full(True)

    def resume_writing(self) -> None:
        self.pump.upstream_full(False)


def _take_buffered(reader: asyncio.StreamReader) -> bytes:
    """What the stream read ahead and nobody consumed (asyncio has no public call for it)."""
    buffer = getattr(reader, "_buffer", None)
    if not isinstance(buffer, bytearray):  # never guess "empty": those bytes are the client's
        raise RuntimeError("asyncio.StreamReader keeps no _buffer: the relay cannot take over")
    data = bytes(buffer)
    buffer.clear()
    return data


def _finished(reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> bool:
    with contextlib.suppress(Exception):
        if reader.exception() is not None:
            return True
    return reader.at_eof() or transport.is_closing()
