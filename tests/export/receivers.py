"""Real receivers for the export tests: a syslog server over TLS that reads RFC 5425 frames
strictly, taken down and brought back on the same port, served from a thread of its own."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bastion.audit.chain import ChainedEvent, canonical_json
from bastion.export.formats import SD_ID, FrameError, FrameReader
from bastion.pki import make_tls
from tests.realssh import free_port

SD = re.compile(
    r"\[" + re.escape(SD_ID) + r' seq="(\d+)" mac="([0-9a-f]{64})"'
    r' prev="([0-9a-f]{64})" alg="([a-z0-9-]+)"\] '
)
HEADER = re.compile(r"<(\d+)>1 (\S+) (\S+) bastion - (\S+) ")


@dataclass
class Message:
    """One syslog message as received: its header fields, structured data and record."""

    pri: int
    msgid: str
    seq: int
    mac: str
    record: dict[str, Any]

    def event(self) -> ChainedEvent:
        """The chained event the record says, rebuilt as the receiver's MAC check needs it."""
        r = self.record
        return ChainedEvent(r["seq"], r["at"], r["kind"], r["severity"], r["actor"],
                            r["subject"], r["session_id"], canonical_json(r["detail"]),
                            r["prev"], r["mac"], r["alg"])  # fmt: skip


def parse_message(frame: bytes) -> Message:
    text = frame.decode("ascii")
    header = HEADER.match(text)
    assert header is not None, text[:100]
    sd = SD.match(text, header.end())
    assert sd is not None, text[:200]
    record = json.loads(text[sd.end() :])
    assert record["seq"] == int(sd.group(1)) and record["mac"] == sd.group(2)
    return Message(int(header.group(1)), header.group(4), int(sd.group(1)), sd.group(2), record)


@dataclass
class SyslogReceiver:
    """An RFC 5425 receiver: every connection's messages, in the order they came."""

    cert: Path
    key: Path
    port: int
    connections: list[list[Message]] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.cert, self.key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._lock = threading.Lock()

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def start(self) -> None:
        async def up() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                      ssl=self.context)  # fmt: skip

        self._call(up)

    def stop(self) -> None:
        """Down at once: the listener closed, every connection cut."""

        async def down() -> None:
            assert self._server is not None
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            self._writers.clear()
            await self._server.wait_closed()

        self._call(down)

    def close(self) -> None:
        if self._server is not None and self._server.is_serving():
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        frames, mine = FrameReader(), list[Message]()
        with self._lock:
            self.connections.append(mine)
        try:
            while data := await reader.read(65536):
                with self._lock:
                    self.raw += data
                    mine += [parse_message(f) for f in frames.feed(data)]
        except FrameError as exc:
            self.errors.append(str(exc))
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()

    @property
    def thread_id(self) -> int | None:
        """The native id of the thread it serves from (for CPU readings)."""
        return self._thread.native_id

    def seqs(self) -> list[int]:
        with self._lock:
            return [m.seq for c in self.connections for m in c]

    def highest(self) -> int:
        return max(self.seqs(), default=0)

    def deduped(self) -> list[Message]:
        """Each seq once, as a receiver that dedupes on the chain position keeps it."""
        seen: dict[int, Message] = {}
        with self._lock:
            for connection in self.connections:
                for message in connection:
                    seen.setdefault(message.seq, message)
        return [seen[s] for s in sorted(seen)]


TOKEN = "s3cret-token-in-the-url"


class Hook:
    """An aiohttp server on its own loop: answers 503 while `down`, else takes the batch."""

    def __init__(self) -> None:
        self.port, self.down = free_port(), False
        self.batches: list[dict[str, Any]] = []
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self._runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _post(self, request: web.Request) -> web.Response:
        assert request.query.get("token") == TOKEN
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        self.batches.append(json.loads(await request.read()))
        return web.Response(status=204)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def seqs(self) -> list[int]:
        return [e["seq"] for batch in self.batches for e in batch["events"]]


@contextmanager
def tls_receiver(folder: Path) -> Iterator[SyslogReceiver]:
    """A SyslogReceiver up on a free loopback port, its certificate from a CA of its own in
    `folder` (bastion-ca.pem); closed at the end."""
    tls = make_tls(folder)
    server = SyslogReceiver(tls.server_cert, tls.server_key, free_port())
    server.start()
    try:
        yield server
    finally:
        server.close()
