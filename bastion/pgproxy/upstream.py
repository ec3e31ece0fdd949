"""Logging in to the target database as its service role, over TLS where the target has it,
with only the authentication methods the target allows (SCRAM-SHA-256 unless told otherwise)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from bastion import pgwire
from bastion.audit import catalog as catalog_sql
from bastion.config import TargetPolicy
from bastion.masking.catalog import METADATA_RELATIONS, Catalog
from bastion.pgproxy.upstream_auth import DEFAULT_METHODS, UpstreamAuth, UpstreamError
from bastion.sqlparse import lexing
from bastion.sqlparse.names import GuardCatalog

__all__ = ["Upstream", "UpstreamError", "connect", "send_cancel", "tls_context"]

CONNECT_TIMEOUT = 15.0


@dataclass
class Upstream:
    """A logged-in backend connection, with what it told us at start-up."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: pgwire.FrameReader
    host: str
    port: int
    pid: int = 0
    key: bytes = b""
    parameters: list[bytes] = field(default_factory=list)  # raw ParameterStatus messages
    ready: bytes = b""  # the raw ReadyForQuery that ended start-up

    async def next_frame(self) -> pgwire.Frame | None:
        """The next whole message, or None at EOF."""
        while True:
            frame = self.frames.next_frame()
            if frame is not None:
                return frame
            data = await self.reader.read(256 * 1024)
            if not data:
                return None
            self.frames.feed(data)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


def tls_context(policy: TargetPolicy) -> ssl.SSLContext | None:
    """The TLS settings a target's policy asks for: None (off), encrypt only, or verify-full."""
    if policy.tls == "off":
        return None
    if policy.tls == "require":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        try:
            context = ssl.create_default_context(cafile=policy.tls_ca)
        except OSError as exc:
            raise UpstreamError(f"cannot read the CA for TLS to {policy.name} ({policy.tls_ca})",
                                str(exc)) from exc  # fmt: skip
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def connect(
    host: str,
    port: int,
    *,
    user: str,
    password: str,
    database: str,
    params: Mapping[str, str],
    tls: ssl.SSLContext | None = None,
    auth: Collection[str] = DEFAULT_METHODS,
) -> Upstream:
    """Open a connection (TLS first when `tls` is set) and log in with one of the `auth`
    methods; UpstreamError says why not, without the password."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                CONNECT_TIMEOUT)  # fmt: skip
    except (OSError, TimeoutError) as exc:
        raise UpstreamError(f"cannot reach the database ({host}:{port})", str(exc)) from exc
    up = Upstream(reader, writer, pgwire.FrameReader(), host, port)
    try:
        if tls is not None:
            await asyncio.wait_for(_start_tls(up, tls), CONNECT_TIMEOUT)
        startup = {"user": user, "database": database, **params}
        writer.write(pgwire.startup_message(startup))
        exchange = UpstreamAuth(user, password, auth)
        await asyncio.wait_for(_login(up, exchange), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:  # reset, or silent: the session row must close
        up.close()
        what = "did not answer in time" if isinstance(exc, TimeoutError) else "dropped it"
        raise UpstreamError(f"the database {what} during login ({host}:{port})",
                            str(exc) or type(exc).__name__) from exc  # fmt: skip
    except BaseException:
        up.close()
        raise
    return up


async def _start_tls(up: Upstream, tls: ssl.SSLContext) -> None:
    up.writer.write(pgwire.ssl_request())
    try:
        answer = await up.reader.readexactly(1)
    except asyncio.IncompleteReadError as exc:
        raise UpstreamError("the database closed the connection when asked for TLS") from exc
    if answer != b"S":
        raise UpstreamError("the database does not accept TLS, which this target requires")
    try:
        await up.writer.start_tls(tls, server_hostname=up.host)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise UpstreamError(f"TLS to the database failed ({reason})", str(exc)) from exc


async def _login(up: Upstream, exchange: UpstreamAuth) -> None:
    while True:
        frame = await up.next_frame()
        if frame is None:
            raise UpstreamError("the database closed the connection during login")
        message = pgwire.decode_backend(frame)
        if isinstance(message, pgwire.ErrorResponse):
            raise UpstreamError("the database refused the bastion's service role",
                                f"{message.sqlstate}: {message.message}")  # fmt: skip
        if isinstance(message, pgwire.Authentication):
            reply = exchange.answer(message)
            if reply:
                up.writer.write(reply)
        elif not exchange.finished and frame.type in (b"K", b"S", b"Z"):
            raise UpstreamError("the database sent start-up data before authenticating; refused",
                                f"message {frame.type!r}")  # fmt: skip
        elif isinstance(message, pgwire.BackendKeyData):
            up.pid, up.key = message.pid, message.key
        elif isinstance(message, pgwire.ParameterStatus):
            why = lexing.refusal(message.name, message.value)
            if why is not None:  # a role's or database's own default, say
                raise UpstreamError("the database reads SQL otherwise than the bastion", why)
            up.parameters.append(frame.raw)
        elif isinstance(message, pgwire.ReadyForQuery):
            up.ready = frame.raw
            return


async def send_cancel(host: str, port: int, pid: int, key: bytes) -> None:
    """Ask the server to cancel what backend `pid` is running (a new connection, as always)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError):
        return
    writer.write(pgwire.cancel_request(pid, key))
    try:
        await writer.drain()
    finally:
        writer.close()


async def simple_rows(up: Upstream, sql: str) -> list[dict[str, str | None]]:
    """Run one statement with the simple protocol on a connection the relay is not using yet
    (before the session starts), and return its rows as text; UpstreamError on an error."""
    up.writer.write(pgwire.query(sql))
    await up.writer.drain()
    names: list[str] = []
    rows: list[dict[str, str | None]] = []
    failure: str | None = None
    while True:
        frame = await up.next_frame()
        if frame is None:
            raise UpstreamError("the database closed the connection")
        if frame.type == b"D":
            values = pgwire.data_row_values(frame.raw[5:])
            row = zip(names, values, strict=True)
            rows.append({n: None if v is None else v.decode() for n, v in row})
            continue
        message = pgwire.decode_backend(frame)
        if isinstance(message, pgwire.RowDescription):
            names = [f.name for f in message.fields]
        elif isinstance(message, pgwire.ErrorResponse):
            failure = message.fields.get("M", "error")
        elif isinstance(message, pgwire.ReadyForQuery):
            if failure is not None:
                raise UpstreamError("the database refused a catalog query", failure)
            return rows


async def read_catalog(up: Upstream) -> Catalog:
    """The target's catalog as the session's own role sees it, read before relaying starts,
    with the system relations a masked session may read."""
    columns = await simple_rows(up, catalog_sql.COLUMNS)
    columns += await simple_rows(up, catalog_sql.metadata_columns(METADATA_RELATIONS))
    names = [str(r["name"]) for r in await simple_rows(up, catalog_sql.SYSTEM_NAMES)]
    return Catalog.from_rows(columns, await simple_rows(up, catalog_sql.INHERITS),
                             await simple_rows(up, catalog_sql.VIEWS), names)  # fmt: skip


async def read_guard_catalog(up: Upstream) -> GuardCatalog:
    """What a read grant's guard needs to know of the target's names (columns, composite
    fields, its own functions, operators and casts), read before relaying starts."""
    columns = await simple_rows(up, catalog_sql.GUARD_COLUMNS)
    functions = await simple_rows(up, catalog_sql.GUARD_FUNCTIONS)

    async def names(sql: str) -> list[str]:
        return [str(r["name"]) for r in await simple_rows(up, sql)]

    own_types = await simple_rows(up, catalog_sql.GUARD_OWN_CAST_TYPES)
    return GuardCatalog.from_rows(
        columns, functions, await names(catalog_sql.GUARD_OWN_FUNCTIONS),
        await names(catalog_sql.GUARD_OWN_OPERATORS),
        [str(r["name"]) for r in own_types], own_type_oids=[int(r["oid"] or 0) for r in own_types],
    )  # fmt: skip
