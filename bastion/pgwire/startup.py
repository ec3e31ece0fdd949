"""Startup-phase packets: SSLRequest, GSSENCRequest, CancelRequest and StartupMessage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from bastion.pgwire.errors import ProtocolError
from bastion.pgwire.wire import INT32, Cursor, cstr

PROTOCOL_3_0 = 196608  # 3 << 16 | 0
PROTOCOL_3_2 = 196610  # 3 << 16 | 2
SSL_REQUEST_CODE = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678
# bastion's own: a CancelRequest one bastion node forwards to the node holding the session.
# The node it reaches cancels or drops it, and never forwards it again: no loops.
FORWARDED_CANCEL_CODE = 80877124  # 1234 << 16 | 5700
MIN_CANCEL_KEY = 4  # protocol 3.0 keys are exactly 4 bytes; 3.2 allows 4..256
MAX_CANCEL_KEY = 256


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """The client asks to switch to TLS before the StartupMessage."""


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    """The client asks for GSSAPI encryption (the proxy answers 'N')."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A new connection asking to cancel the query of backend (pid, key); `forwarded` when
    another bastion node passed it on (FORWARDED_CANCEL_CODE)."""

    pid: int
    key: bytes
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """The protocol version and session parameters (user, database, options, ...)."""

    protocol: int
    params: dict[str, str]

    @property
    def user(self) -> str:
        """The ``user`` parameter (always present once parsed)."""
        return self.params["user"]

    @property
    def database(self) -> str:
        """The ``database`` parameter, defaulting to the user name as PostgreSQL does."""
        return self.params.get("database") or self.params["user"]


StartupPacket: TypeAlias = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def parse_startup(body: bytes) -> StartupPacket:
    """Parse a startup-phase packet body (everything after its Int32 length)."""
    cur = Cursor(bytes(body), 0, "startup")
    code = cur.int32()
    if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
        if cur.left:
            raise ProtocolError("trailing bytes in SSL or GSSENC request")
        return SSLRequest() if code == SSL_REQUEST_CODE else GSSENCRequest()
    if code in (CANCEL_REQUEST_CODE, FORWARDED_CANCEL_CODE):
        pid = cur.int32()
        if not MIN_CANCEL_KEY <= cur.left <= MAX_CANCEL_KEY:
            raise ProtocolError(f"cancel request key of {cur.left} bytes (want 4 to 256)")
        return CancelRequest(pid, cur.rest(), code == FORWARDED_CANCEL_CODE)
    major, minor = code >> 16 & 0xFFFF, code & 0xFFFF
    if major == 1234:
        raise ProtocolError(f"unknown startup request code 1234.{minor}")
    if major != 3:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{minor}: only protocol 3 is supported"
        )
    return StartupMessage(code, _parse_params(cur))


def _parse_params(cur: Cursor) -> dict[str, str]:
    """Name/value pairs up to the empty-name terminator, which must end the packet."""
    params: dict[str, str] = {}
    while True:
        if not cur.left:
            raise ProtocolError("startup packet has no terminator")
        name = cur.cstr()
        if not name:
            break
        if not cur.left:
            raise ProtocolError(f"startup parameter {name!r} has no value")
        value = cur.cstr()
        if name in params:
            raise ProtocolError(f"startup parameter {name!r} given twice")
        params[name] = value
    if cur.left:
        raise ProtocolError("trailing bytes after the startup packet terminator")
    if not params.get("user"):
        raise ProtocolError("no user name in the startup packet")
    return params


def _packet(*parts: bytes) -> bytes:
    """An untyped startup-phase packet: Int32 length (counting itself) + body."""
    body = b"".join(parts)
    return INT32.pack(len(body) + 4) + body


def startup_message(params: Mapping[str, str], protocol: int = PROTOCOL_3_0) -> bytes:
    """A StartupMessage with ``params`` in their given order."""
    pairs = b"".join(cstr(name) + cstr(value) for name, value in params.items())
    return _packet(INT32.pack(protocol), pairs, b"\0")


def ssl_request() -> bytes:
    """An SSLRequest packet."""
    return _packet(INT32.pack(SSL_REQUEST_CODE))


def gssenc_request() -> bytes:
    """A GSSENCRequest packet."""
    return _packet(INT32.pack(GSSENC_REQUEST_CODE))


def cancel_request(pid: int, key: bytes, *, forwarded: bool = False) -> bytes:
    """A CancelRequest for backend ``pid`` with its secret ``key`` (4 to 256 bytes); with
    ``forwarded``, the bastion nodes' own code for one passed on to the owner."""
    if not MIN_CANCEL_KEY <= len(key) <= MAX_CANCEL_KEY:
        raise ValueError(f"cancel key of {len(key)} bytes (want 4 to 256)")
    code = FORWARDED_CANCEL_CODE if forwarded else CANCEL_REQUEST_CODE
    return _packet(INT32.pack(code), INT32.pack(pid), key)
