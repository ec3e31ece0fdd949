"""The audit writer's own process: batches in over a socket pair, committed, answered back."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from bastion.audit.chain import ChainedEvent, ChainKey
from bastion.audit.location import PgLocation
from bastion.audit.queries import QueryQueries, QueryStart, Record
from bastion.errors import StoreError
from bastion.sqlparse import command_kind, log_text

log = structlog.get_logger("bastion.audit")

_HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 30
STOP_WAIT = 30.0  # seconds the scribe may take to finish its last commit and exit
LOST = "the audit writer process ended"


def encode(value: Any) -> bytes:
    """One frame: a length, then the pickled value (both ends are this program)."""
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_FRAME:
        raise StoreError(f"an audit batch of {len(body)} bytes is too large to write")
    return _HEADER.pack(len(body)) + body


class Frames:
    """Values out of a byte stream of frames, however it is cut (sans-I/O)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        buffer += data
        out = []
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if size > MAX_FRAME:
                raise ValueError(f"an audit frame of {size} bytes is too large")
            end = _HEADER.size + size
            if len(buffer) < end:
                break
            # Both ends are this program, over a socket pair no one else holds.
            out.append(pickle.loads(buffer[_HEADER.size : end]))  # noqa: S301
            del buffer[:end]
        return out

    @property
    def pending(self) -> int:
        return len(self._buffer)


class Scribe:
    """The parent's handle on the writer process: one batch in flight at a time.

    If the process dies, the batch in flight fails (its waiters hear StoreError) and the next
    batch starts a new process: a crash loses no record that was reported written.
    """

    def __init__(
        self, where: Path | PgLocation, key: ChainKey | None = None, node: str | None = None
    ) -> None:
        self.where = where
        self._key = key
        self._node = node
        self._process: asyncio.subprocess.Process | None = None
        self._transport: asyncio.Transport | None = None
        self._link: _Link | None = None
        self.started = 0  # processes started, for tests and logs

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        parent, child = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bastion.audit.scribe", str(child.fileno()),
                pass_fds=(child.fileno(),),
            )  # fmt: skip
        except OSError as exc:
            parent.close()
            raise StoreError(f"cannot start the audit writer process: {exc}") from exc
        finally:
            child.close()
        loop = asyncio.get_running_loop()
        self._transport, self._link = await loop.create_connection(_Link, sock=parent)
        # The chain key and where the store is (with its password, on PostgreSQL) go over the
        # pair, first: never on a command line or in an environment.
        secret = None if self._key is None else self._key.secret
        self._transport.write(encode((secret, _where(self.where), self._node)))
        try:  # the process says it opened the store, or why it could not
            problem, _ = await asyncio.wait_for(self._link.expect(), STOP_WAIT)
        except (StoreError, TimeoutError):
            problem = "it ended or did not answer"
        if problem is not None:
            await self._forget()
            raise StoreError(f"the audit writer process could not start: {problem}")
        self.started += 1

    async def commit(
        self, at: datetime, records: Sequence[Record], wanted: Sequence[int]
    ) -> list[ChainedEvent]:
        """Write one batch durably; the chained rows of the records at `wanted` indexes."""
        if self._link is None or self._link.lost:
            if self._process is not None:
                log.warning("audit.writer_restarted", reason=LOST)
            await self._forget()
            await self.start()
        assert self._transport is not None and self._link is not None
        reply = self._link.expect()
        self._transport.write(encode((at, list(records), list(wanted))))
        error, rows = await reply
        if error is not None:
            raise StoreError(error)
        return list(rows)

    async def stop(self) -> None:
        """Close the pair: the process ends after its last commit (killed if it hangs)."""
        await self._forget()

    async def _forget(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport, self._link = None, None
        process, self._process = self._process, None
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), STOP_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class _Link(asyncio.Protocol):
    """The parent's end of the pair: each reply settles the request waiting for it."""

    def __init__(self) -> None:
        self.frames = Frames()
        self.lost = False
        self._early: deque[Any] = deque()  # replies that came before anyone asked
        self._waiting: asyncio.Future[Any] | None = None

    def expect(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._early:
            future.set_result(self._early.popleft())
        elif self.lost:
            future.set_exception(StoreError(LOST))
        else:
            self._waiting = future
        return future

    def data_received(self, data: bytes) -> None:
        for reply in self.frames.feed(data):
            waiting, self._waiting = self._waiting, None
            if waiting is not None and not waiting.done():
                waiting.set_result(reply)
            else:
                self._early.append(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_exception(StoreError(LOST))


# -- the process itself -----------------------------------------------------------------


class _BatchClock:
    """The time the parent sent with the batch: events carry the parent's clock."""

    def __init__(self) -> None:
        self.at = datetime.now()

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return time.monotonic()


def _redacted(record: Record) -> Record:
    """A statement the door passed on unparsed: its literals replaced (its code kept, or the
    whole text with the reason), its kind derived."""
    if isinstance(record, QueryStart) and record.raw:
        sql = record.sql
        text, kept_whole = log_text(sql)
        return record._replace(sql=text, kind=command_kind(sql), raw=False, kept_whole=kept_whole)
    return record


def _write(store: QueryQueries, records: Sequence[Record], wanted: Sequence[int]) -> Any:
    try:
        rows = store.write_batch([_redacted(record) for record in records])
    except StoreError as exc:
        return str(exc), []
    except Exception as exc:  # the parent fails every waiter with this line
        return f"audit write failed: {type(exc).__name__}: {exc}", []
    return None, [rows[i] for i in wanted]


def _where(where: Path | PgLocation) -> tuple[Any, ...]:
    """Where the store is, as the first frame carries it (the password included)."""
    if isinstance(where, PgLocation):
        url, password, schema, head_file = where.handoff()
        return ("postgresql", url, password, schema, None if head_file is None else str(head_file))
    return ("sqlite", str(where))


def _place(sent: tuple[Any, ...]) -> Path | PgLocation:
    if sent[0] == "postgresql":
        _, url, password, schema, head_file = sent
        return PgLocation.handed(
            url, password, schema, None if head_file is None else Path(head_file)
        )
    return Path(sent[1])


def _receive_first(
    sock: socket.socket, frames: Frames
) -> tuple[ChainKey | None, Path | PgLocation, str | None]:
    """The first frame the parent sends: the chain key's bytes (or None: an unkeyed store),
    where the store is, and the node's name."""
    while True:
        data = sock.recv(4096)
        if not data:
            raise StoreError("the parent closed the pair before sending the audit key")
        got = frames.feed(data)
        if got:
            secret, sent, node = got[0]
            return (None if secret is None else ChainKey(secret)), _place(sent), node


def _open(
    where: Path | PgLocation, clock: _BatchClock, key: ChainKey | None, node: str | None
) -> QueryQueries:
    """The store, which must exist: never an empty one made in its place."""
    if isinstance(where, Path):
        if not where.exists():  # never let SQLite make an empty store in its place
            raise StoreError(f"the store {where} does not exist")
        return QueryQueries(where, clock, key, node)
    store = QueryQueries(where, clock, key, node)
    if not store._has_tables():
        store.close()
        raise StoreError(f"the store at {where} has no tables (no schema_migrations)")
    return store


def serve(sock: socket.socket) -> None:
    """Commit each batch in order and answer it, until the parent closes its end.

    Signals meant for the whole process group (Ctrl-C, a service manager's stop) are left to
    the parent, which flushes what is queued and then closes the pair.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    clock = _BatchClock()
    frames = Frames()
    try:
        key, where, node = _receive_first(sock, frames)
        store = _open(where, clock, key, node)
    except (StoreError, ValueError, TypeError) as exc:
        sock.sendall(encode((str(exc), [])))
        return
    sock.sendall(encode((None, [])))  # ready
    while data := sock.recv(1 << 20):
        for at, records, wanted in frames.feed(data):
            clock.at = at
            sock.sendall(encode(_write(store, records, wanted)))
    store.close()


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
