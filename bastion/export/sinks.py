"""The export sinks' I/O: syslog over TCP with TLS, a JSON-lines file that rotates, a webhook.

`deliver(events)` returns once the sink has taken every one (syslog: written, flushed, and
acknowledged by the receiver's TCP; file: fsynced; webhook: a 2xx answer), or raises
SinkError with the kind of failure in a few words: never an address, a URL or a path.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import socket
import ssl
import stat
import struct
import termios
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bastion.audit.chain import ChainedEvent
from bastion.config_export import ExportSink
from bastion.export.formats import json_line, octet_frame, syslog_message, webhook_body
from bastion.privatefiles import write_all

TCP_ESTABLISHED = 1
ACK_POLL = 0.005  # seconds between looks at the socket's unacknowledged bytes
# What a receiver's kernel may have acknowledged and the receiver not read (Linux buffers
# grow to 6 MiB by default): after a failure the events in the last this-many bytes sent
# are sent again, whatever `replay` says.
UNREAD_BYTES = 16 << 20


class SinkError(Exception):
    """A delivery failed; the message is the kind of failure, safe to show anyone."""


class SinkConfigError(Exception):
    """A sink's files cannot be used: `export.NAME.KEY: problem`, one line."""

    def __init__(self, sink: str, key: str, problem: str) -> None:
        super().__init__(f"export.{sink}.{key}: {problem}")


def _unreadable(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read it ({exc.strerror})"
    return "not a usable PEM certificate (and key)"


def reason(exc: BaseException) -> str:  # noqa: PLR0911 - one answer per kind of failure
    """The kind of a network failure, in a few words."""
    if isinstance(exc, SinkError):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS: the receiver's certificate is not trusted"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"network error ({errno.errorcode.get(exc.errno, exc.errno)})"
    return type(exc).__name__


class SyslogSink:
    """RFC 5424 messages in RFC 5425 frames over one TLS connection, kept open."""

    kind = "syslog"

    def __init__(self, sink: ExportSink, hostname: str) -> None:
        self.sink, self.hostname = sink, hostname
        try:
            self.context = ssl.create_default_context(cafile=sink.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise SinkConfigError(sink.name, "tls_ca", _unreadable(exc)) from None
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if sink.tls_cert is not None and sink.tls_key is not None:
            try:
                self.context.load_cert_chain(sink.tls_cert, sink.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise SinkConfigError(sink.name, "tls_cert", _unreadable(exc)) from None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sent: deque[tuple[int, int]] = deque()  # (seq, bytes) of the last frames sent
        self._sent_bytes = 0

    async def deliver(self, events: Sequence[ChainedEvent]) -> None:
        frames = [octet_frame(syslog_message(e, self.hostname, self.sink.facility))
                  for e in events]  # fmt: skip
        try:
            async with asyncio.timeout(self.sink.timeout.total_seconds()):
                reader, writer = await self._connection()
                if reader.at_eof():
                    raise SinkError("the receiver closed the connection")
                writer.write(b"".join(frames))
                await writer.drain()
                await self._acknowledged(writer)
        except (OSError, ssl.SSLError, TimeoutError, SinkError, EOFError) as exc:
            await self.close()
            raise SinkError(reason(exc)) from None
        for event, frame in zip(events, frames, strict=True):
            self._sent.append((event.seq, len(frame)))
            self._sent_bytes += len(frame)
        while self._sent_bytes > UNREAD_BYTES and len(self._sent) > 1:
            self._sent_bytes -= self._sent.popleft()[1]

    @property
    def unread_from(self) -> int | None:
        """The lowest seq of the last UNREAD_BYTES sent, on whichever connection: a
        receiver's kernel acknowledges what fits in its buffers whether or not the receiver
        ever reads it, so after a failure all of it is sent again (a failure while sending
        it again keeps it: none of it has to have been read). None: nothing sent yet."""
        return min(seq for seq, _ in self._sent) if self._sent else None

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            host, port = self.sink.host_port
            self._reader, self._writer = await asyncio.open_connection(
                host, port, ssl=self.context, server_hostname=self.sink.server_name or host
            )
        return self._reader, self._writer

    async def _acknowledged(self, writer: asyncio.StreamWriter) -> None:
        """Wait until every byte left this process and the receiver's TCP acknowledged it,
        the connection still established (a reset empties the queue too: not an ack)."""
        sock = writer.get_extra_info("socket")
        while True:
            if writer.transport.is_closing():
                raise SinkError("the receiver closed the connection")
            if writer.transport.get_write_buffer_size() == 0:
                try:
                    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
                    queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                except OSError:
                    raise SinkError("the receiver closed the connection") from None
                if state != TCP_ESTABLISHED:
                    raise SinkError("the receiver closed the connection")
                if struct.unpack("i", queued)[0] == 0:
                    return
            await asyncio.sleep(ACK_POLL)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.transport.abort()


class FileSink:
    """JSON lines appended and fsynced; rotated by size, `keep` old files kept (NAME.1 the
    newest). A line is never split across files, and a rename never loses one."""

    kind = "file"

    def __init__(self, sink: ExportSink) -> None:
        assert sink.path is not None
        self.path, self.max_bytes, self.keep = sink.path, sink.max_bytes, sink.keep

    async def deliver(self, events: Sequence[ChainedEvent]) -> None:
        try:
            await asyncio.to_thread(self.write, [json_line(e) for e in events])
        except OSError as exc:
            raise SinkError(
                f"cannot write the file ({exc.strerror or type(exc).__name__})"
            ) from None

    async def close(self) -> None:
        return None

    def write(self, lines: Sequence[bytes]) -> None:
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            pending: list[bytes] = []
            for line in lines:
                if size and size + len(line) > self.max_bytes:
                    write_all(fd, b"".join(pending))
                    os.fsync(fd)
                    os.close(fd)
                    fd, size, pending = -1, 0, []
                    self._rotate()
                    fd = self._open()
                pending.append(line)
                size += len(line)
            write_all(fd, b"".join(pending))
            os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)

    def _open(self) -> int:
        """The current file, opened to append; a line a crash cut short is cut off (its
        event is after the cursor: it comes again)."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        found = os.fstat(fd)
        problem = ""
        if not stat.S_ISREG(found.st_mode):  # a FIFO, a device
            problem = "not a regular file"
        elif found.st_uid != os.geteuid():
            problem = "owned by another user"
        if problem:  # planted: whoever owns it could read, edit or cut what is shipped
            os.close(fd)
            raise OSError(errno.EPERM, problem)
        if found.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # made before the sink, open to others: private from now on
        size = found.st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            os.ftruncate(fd, size - len(tail) + tail.rfind(b"\n") + 1)
        return fd

    def _rotate(self) -> None:
        """NAME.keep dropped, each NAME.i becomes NAME.i+1, NAME becomes NAME.1: each step
        a rename, the directory fsynced after."""
        old = self._numbered(self.keep)
        if old.exists():
            old.unlink()
        for n in range(self.keep - 1, 0, -1):
            if self._numbered(n).exists():
                os.rename(self._numbered(n), self._numbered(n + 1))
        os.rename(self.path, self._numbered(1))
        folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def _numbered(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def last_written(self) -> tuple[int, str] | None:
        """The seq and MAC of the last whole line written (the current file, else the newest
        old one; None: none): after a crash between the fsync and the cursor, the worker
        skips up to it once the chain holds that seq with that MAC. Only regular files are
        read, never through a symlink (a FIFO would hang the read)."""
        for path in (self.path, self._numbered(1)):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            except OSError:
                return None
            with os.fdopen(fd, "rb") as file:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - (1 << 20)))
                lines = [x for x in file.read().split(b"\n")[:-1] if x.strip()]
            if lines:
                last = json.loads(lines[-1])
                seq, mac = last["seq"], last["mac"]
                ok = type(seq) is int and 0 < seq < 1 << 62 and isinstance(mac, str)
                return (seq, mac) if ok else None
        return None


class WebhookSink:
    """A POST of a JSON batch per delivery (the notify webhook's conventions: JSON, no
    redirects followed, the URL never shown: it may carry a token)."""

    kind = "webhook"

    def __init__(self, sink: ExportSink, node: str) -> None:
        self.sink, self.node = sink, node
        self._http: aiohttp.ClientSession | None = None

    async def deliver(self, events: Sequence[ChainedEvent]) -> None:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.sink.timeout.total_seconds())
            self._http = aiohttp.ClientSession(timeout=timeout)
        headers = {"Content-Type": "application/json", "User-Agent": "bastion-export"}
        body = webhook_body(self.sink.name, self.node, events)
        try:
            async with self._http.post(self.sink.url, data=body, headers=headers,
                                       allow_redirects=False) as response:  # fmt: skip
                if not 200 <= response.status < 300:
                    raise SinkError(f"HTTP {response.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            cause = exc.__cause__ if isinstance(exc, aiohttp.ClientConnectorError) else exc
            raise SinkError(reason(cause or exc)) from None

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()
