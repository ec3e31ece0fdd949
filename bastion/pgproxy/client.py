"""The engineer's side of a database connection: start-up, TLS, and the password + TOTP login."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass

from bastion import pgwire
from bastion.errors import BastionError
from bastion.sqlparse import lexing

# Start-up parameters passed on to the target; anything else that could change the
# session's identity or search path (options, replication, role ...) is refused.
PASSED_PARAMS = frozenset({
    "client_encoding", "DateStyle", "TimeZone", "extra_float_digits", "IntervalStyle",
    "datestyle", "timezone", "intervalstyle", "standard_conforming_strings", "search_path",
    "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
})  # fmt: skip
IGNORED_PARAMS = frozenset({"user", "database", "application_name", "fallback_application_name"})


CANNOT_CONNECT_NOW = "57P03"  # what PostgreSQL says to a new connection while it shuts down


class ClientRefused(BastionError):
    """Refuse the client: FATAL with this SQLSTATE and message, then close."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: pgwire.FrameReader
    address: str
    tls: bool = False
    proxied: bool = False  # a balancer made this connection (whatever address it named)

    async def _fill(self) -> bool:
        data = await self.reader.read(256 * 1024)
        if not data:
            return False
        self.frames.feed(data)
        return True

    async def next_frame(self) -> pgwire.Frame | None:
        while True:
            frame = self.frames.next_frame()
            if frame is not None:
                return frame
            if not await self._fill():
                return None

    async def next_startup(self) -> pgwire.StartupPacket | None:
        while True:
            packet = self.frames.next_startup()
            if packet is not None:
                return packet
            if not await self._fill():
                return None

    def send(self, data: bytes | memoryview) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def fatal(self, sqlstate: str, message: str) -> None:
        self.send(pgwire.error_response("FATAL", sqlstate, message))

    def finish(self) -> None:
        """Say no more: over plain TCP the client sees the end at once (a half-close, so
        bytes it is still sending don't turn our last words into a reset); over TLS, which
        has no half-close, the connection closes when the session is wound down."""
        if not self.writer.is_closing() and self.writer.can_write_eof():
            self.writer.write_eof()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    @property
    def loopback(self) -> bool:
        """On this machine, so plain TCP never crosses a network: never said of a client a
        balancer speaks for (the balancer's hop to the bastion is a network's)."""
        if self.proxied:
            return False
        try:
            return ipaddress.ip_address(self.address.split("%")[0]).is_loopback
        except ValueError:
            return False

    async def start(
        self, tls: ssl.SSLContext | None
    ) -> pgwire.StartupMessage | pgwire.CancelRequest | None:
        """Answer SSLRequest / GSSENCRequest until the real start-up packet arrives."""
        while True:
            packet = await self.next_startup()
            if packet is None or isinstance(packet, pgwire.StartupMessage | pgwire.CancelRequest):
                return packet
            if isinstance(packet, pgwire.GSSENCRequest) or tls is None or self.tls:
                self.send(b"N")
                continue
            if self.frames.buffered:
                # Bytes sent before the handshake would be trusted as if encrypted.
                raise ClientRefused("08P01", "unexpected data after SSLRequest")
            self.send(b"S")
            await self.writer.drain()
            await self.writer.start_tls(tls)
            self.tls = True


def check_startup(client: Client, startup: pgwire.StartupMessage) -> dict[str, str]:
    """The start-up parameters to pass upstream; refuses what the bastion does not allow."""
    if not client.tls and not client.loopback:
        raise ClientRefused("28000", "the bastion requires TLS (sslmode=require or stronger)")
    passed: dict[str, str] = {}
    for name, value in startup.params.items():
        if name in PASSED_PARAMS:
            why = lexing.refusal(name, value)
            if why is not None:
                raise ClientRefused("22023", why)
            passed[name] = value
        elif name not in IGNORED_PARAMS:
            raise ClientRefused("08P01", f"start-up parameter {name!r} is not allowed through"
                                " the bastion")  # fmt: skip
    return passed


def split_password(secret: str) -> tuple[str, str]:
    """'password123456' -> ('password', '123456'): the code is the last six characters."""
    if len(secret) < 7 or not secret[-6:].isdigit():
        raise ClientRefused("28P01", "send your password immediately followed by your current"
                            " 6-digit verification code, or a ticket")  # fmt: skip
    return secret[:-6], secret[-6:]
