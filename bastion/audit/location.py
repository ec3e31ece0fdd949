"""Where a PostgreSQL store is: its URL (never a password), password file, schema and head file.

Refused, one line each: a scheme other than postgresql:// or postgres://; a password in the
URL (it goes in a file of mode 0600, so it is never in the config, argv or a log line); a
password file others can read; a host that is not loopback (or a Unix socket) without
sslmode=verify-full; a URL parameter not on the short list below (asyncpg would pass an
unknown one to the server as a setting, e.g. synchronous_commit=off). A PgLocation's repr and
str show the URL, schema and files, never the password (as ChainKey's never shows the key).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion.audit.pgconn import PgConn

SCHEMES = ("postgresql", "postgres")
URL_PARAMETERS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "target_session_attrs"}
)
SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_NODE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
LOCK_TIMEOUT_S = 15.0  # a write waits this long for the chain lock, then fails
# The server ends a session that sits this long in a transaction: a node frozen (or cut off)
# while it holds the chain lock is cut off well before another node's wait for the lock gives
# up, and well within the default store_grace, so it never stops every node's writes. A store
# transaction's statements follow each other within milliseconds.
IDLE_IN_TRANSACTION_S = 5.0


def _hosts(netloc: str) -> list[str]:
    """The host names of a netloc (several, comma-separated, for failover), unquoted."""
    found = []
    for spec in netloc.rpartition("@")[2].split(","):
        if spec.startswith("["):
            found.append(spec[1 : spec.find("]")])
        else:
            found.append(unquote(spec.rsplit(":", 1)[0] if ":" in spec else spec))
    return found


def is_local(host: str) -> bool:
    """Loopback, or a Unix socket directory (or no host: the local socket)."""
    if host in ("", "localhost") or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:
        return False


def check_url(url: str, key: str = "store.url", source: str = "config") -> dict[str, str]:
    """The URL's parameters, once it passes every rule; ConfigError (one line) otherwise."""

    def refuse(problem: str) -> ConfigError:
        return ConfigError(source, key, problem)

    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme.lower() not in SCHEMES:
        raise refuse("the store URL must start with postgresql:// (or postgres://)")
    parts = urlsplit(url)
    if ":" in parts.netloc.rpartition("@")[0]:
        raise refuse("the store URL holds a password; put it in [store] password_file instead")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs):
        raise refuse("a parameter is given twice in the store URL")
    if "password" in params:
        raise refuse("the store URL holds a password; put it in [store] password_file instead")
    unknown = sorted(set(params) - URL_PARAMETERS)
    if unknown:
        allowed = ", ".join(sorted(URL_PARAMETERS))
        raise refuse(f"the store URL parameter {unknown[0]!r} is not one of {allowed}")
    if parts.fragment:
        raise refuse("the store URL has a #fragment; remove it")
    remote = [h for h in _hosts(parts.netloc) if not is_local(h)]
    if remote and params.get("sslmode") != "verify-full":
        raise refuse(
            f"the store at {remote[0]} is not on this host: add sslmode=verify-full (and"
            " sslrootcert) to the URL, so the store is reached over TLS and proves who it is"
        )
    return params


def read_password_file(path: Path, key: str = "store.password_file", source: str = "config") -> str:
    """The first line of a password file that only its owner can read."""
    try:  # O_NONBLOCK: a FIFO put in its place must not hang the start
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(source, key, f"{path} is not a regular file")
            if mode & 0o077:
                raise ConfigError(
                    source, key,
                    f"{path} can be read by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it",
                )  # fmt: skip
            data = handle.read(4096)
    except OSError as exc:
        raise ConfigError(source, key, f"cannot read {path}: {exc.strerror}") from None
    password = data.decode("utf-8", "replace").split("\n", 1)[0].rstrip("\r")
    if not password:
        raise ConfigError(source, key, f"{path} holds no password")
    return password


class PgLocation:
    """A PostgreSQL store's place: URL without password, schema, head file (and the password)."""

    __slots__ = ("_password", "head_file", "password_file", "schema", "url")

    def __init__(
        self,
        url: str,
        *,
        password_file: Path | None = None,
        schema: str = "public",
        head_file: Path | None = None,
        source: str = "config",
    ) -> None:
        check_url(url, source=source)
        if not SCHEMA.fullmatch(schema):
            raise ConfigError(source, "store.schema", f"{schema!r} is not a plain schema name")
        self.url = url
        self.schema = schema
        self.head_file = head_file
        self.password_file = password_file
        self._password = (
            read_password_file(password_file, source=source) if password_file is not None else None
        )

    @classmethod
    def handed(
        cls, url: str, password: str | None, schema: str = "public", head_file: Path | None = None
    ) -> PgLocation:
        """A location handed over with its password (to the scribe, over its socket pair)."""
        made = cls(url, schema=schema, head_file=head_file, source="handed over")
        made._password = password
        return made

    def handoff(self) -> tuple[str, str | None, str, Path | None]:
        """(url, password, schema, head_file): what `handed` takes, for a socket pair only."""
        return self.url, self._password, self.schema, self.head_file

    def __repr__(self) -> str:
        return (
            f"PgLocation(url={self.url!r}, schema={self.schema!r},"
            f" password_file={self.password_file!r}, head_file={self.head_file!r})"
        )

    def __str__(self) -> str:
        return self.url if self.schema == "public" else f"{self.url} (schema {self.schema})"

    def __reduce__(self) -> tuple[Any, ...]:  # the password is never pickled into a frame
        raise TypeError("a PgLocation is handed over with handoff(), on purpose, never pickled")

    def server_settings(
        self,
        node: str,
        *,
        lock_timeout: float = LOCK_TIMEOUT_S,
        idle_in_transaction: float = IDLE_IN_TRANSACTION_S,
    ) -> dict[str, str]:
        """The session settings every store connection starts with."""
        name = _NODE_CHARS.sub("_", node)[:48] or "node"
        return {
            "application_name": f"bastion-store/{name}",
            "synchronous_commit": "on",  # an event is durable before the action it records
            "lock_timeout": f"{int(lock_timeout * 1000)}ms",
            "idle_in_transaction_session_timeout": f"{int(idle_in_transaction * 1000)}ms",
            "search_path": f'"{self.schema}"',
            "tcp_keepalives_idle": "30",  # a node gone while it holds the chain lock is cut off
            "tcp_keepalives_interval": "10",
            "tcp_keepalives_count": "3",
        }

    def connect(
        self,
        node: str | None = None,
        *,
        lock_timeout: float = LOCK_TIMEOUT_S,
        idle_in_transaction: float = IDLE_IN_TRANSACTION_S,
        command_timeout: float | None = None,
    ) -> PgConn:
        """A PgConn on this store, connected now (DbError if it can't be)."""
        from bastion.audit.pgconn import PgConn  # noqa: PLC0415 - asyncpg only when on PostgreSQL

        settings = self.server_settings(
            node or socket.gethostname(),
            lock_timeout=lock_timeout,
            idle_in_transaction=idle_in_transaction,
        )
        return PgConn.open(
            self.url,
            password=self._password,
            server_settings=settings,
            label=str(self),
            command_timeout=command_timeout,
        )
