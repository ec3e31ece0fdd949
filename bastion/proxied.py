"""A listener behind load balancers: accept, read the PROXY header from trusted ones, hand over."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import structlog

from bastion.proxyproto import HeaderError, HeaderReader
from bastion.tasks import spawn

log = structlog.get_logger("bastion.proxied")

HEADER_WAIT = 5.0  # seconds a balancer has to send its header (it sends it at once)
BACKLOG = 511

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handoff = Callable[[socket.socket, str], Awaitable[None]]


class Trusted:
    """The balancers' addresses: only their connections are read for a header."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: str) -> bool:
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.networks)


async def read_header(sock: socket.socket, wait: float = HEADER_WAIT) -> str | None:
    """The client address a PROXY header names (None: the balancer's own connection), read
    to its last byte and no further, within `wait` seconds; HeaderError, TimeoutError or
    ConnectionError otherwise."""
    loop = asyncio.get_running_loop()
    reader = HeaderReader()
    async with asyncio.timeout(wait):
        while reader.header is None:
            data = await loop.sock_recv(sock, reader.wanted())
            if not data:
                raise ConnectionError("closed before its PROXY header ended")
            reader.feed(data)
    return reader.header.source


class ProxiedListener:
    """Accepts on the door's address; a connection from a trusted balancer is handed to the
    door with the client's address from its header (or closed, with one line, when it has
    none), any other with its own peer address, unread."""

    def __init__(self, door: str, address: str, port: int, trusted: Trusted,
                 handoff: Handoff, *, header_wait: float = HEADER_WAIT) -> None:  # fmt: skip
        self.door = door
        self.address = address
        self.port = port
        self.trusted = trusted
        self.handoff = handoff
        self.header_wait = header_wait
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Bind and listen (OSError when the address is taken); the port bound."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.address or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, where in infos:
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(where)
                sock.listen(BACKLOG)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        for sock in self._sockets:
            self._track(spawn(self._accept(sock), name=f"{self.door}-accept"))
        balancers = [str(network) for network in self.trusted.networks]
        log.info("proxied.listening", door=self.door, proxy_from=balancers)
        return int(self._sockets[0].getsockname()[1]) if self._sockets else self.port

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listening)
            except OSError as exc:  # out of descriptors, a reset before accept: go on
                log.warning("proxied.accept_failed", door=self.door, error=str(exc))
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(spawn(self._admit(sock, str(peer[0])), name=f"{self.door}-conn"))

    async def _admit(self, sock: socket.socket, peer: str) -> None:
        source = peer
        if peer in self.trusted:
            try:
                source = await read_header(sock, self.header_wait) or peer
            except (HeaderError, TimeoutError, ConnectionError) as exc:
                why = str(exc) or type(exc).__name__
                log.warning("proxied.no_header", door=self.door, balancer=peer, why=why)
                sock.close()
                return
        task = asyncio.current_task()
        if task is not None:  # from here on the door's: close() leaves it to the door's stop
            self._tasks.discard(task)
        try:
            await self.handoff(sock, source)
        except Exception as exc:  # the door ends its own connections; never the listener
            log.warning("proxied.handoff_failed", door=self.door, source=source, error=str(exc))
            sock.close()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    async def close(self) -> None:
        """Stop accepting; connections still in their header are dropped, handed-over ones
        are the door's to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        self._close_sockets()


async def open_streams(
    sock: socket.socket, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over a handed-over socket, as asyncio.start_server gives its handler (the
    writer's start_tls then knows it is the server's side)."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    opened = loop.create_future()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.set_result((reader, writer))

    protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=limit), connected)
    await loop.connect_accepted_socket(lambda: protocol, sock)
    return await opened


class SourcedProtocol(asyncio.Protocol):
    """Passes a protocol's callbacks through, noting its transport's client address in
    `sources` while it is connected (for a server that asks its transport for the peer)."""

    def __init__(self, inner: asyncio.Protocol, source: str,
                 sources: dict[asyncio.BaseTransport, str]) -> None:  # fmt: skip
        self.inner = inner
        self.source = source
        self.sources = sources
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self.sources[transport] = self.source
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self.sources.pop(self._transport, None)
        self.inner.connection_lost(exc)
