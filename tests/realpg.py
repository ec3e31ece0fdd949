"""Real PostgreSQL parts for tests: a private 15 cluster, and psql, pgbench, psycopg, asyncpg."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import datetime
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, Self
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import sql as pgsql

from tests.realssh import LOOPBACK, ClosesOnExit, descendants, free_port, kill_pids

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PSQL = str(PG_BIN / "psql")
PGBENCH = str(PG_BIN / "pgbench")
SERVER_USER = "postgres"
"""The OS user the cluster runs as when the tests run as root (initdb refuses root)."""
SUPERUSER = "postgres"
READY_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10
POLL = 0.02

CUSTOMER_ROWS = 2000
ORDER_ROWS = 5000
SERVICE_ROLE = "bastion_svc"

DEFAULT_HBA = ("host all all 127.0.0.1/32 scram-sha-256",)
"""The TCP lines of pg_hba.conf by default; `local all all trust` always comes first."""

_BIND_FAILURES = ("could not bind IPv4 address", "Address already in use")
_LIVE: weakref.WeakSet[PgCluster] = weakref.WeakSet()


# --- small helpers ---------------------------------------------------------------------


def random_password() -> str:
    return secrets.token_urlsafe(18)


def unique_name(prefix: str) -> str:
    """A fresh lower-case SQL identifier, e.g. "t_3f9a0c1b2d4e"."""
    return f"{prefix}_{secrets.token_hex(6)}"


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_conninfo(params: Mapping[str, str | int]) -> str:
    """A libpq keyword/value connection string from params, quoted where needed."""
    return " ".join(f"{key}={_conninfo_value(str(value))}" for key, value in params.items())


def _server_env(home: Path) -> dict[str, str]:
    # No PG* variables from the caller: initdb/pg_ctl must see only what we pass.
    return {
        "PATH": f"{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }


def client_env(
    password: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a libpq client run: the caller's minus every PG* variable, with
    PGPASSWORD (when given), no passfile otherwise, PGCONNECT_TIMEOUT and English messages."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(
        {
            "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            # A path that cannot exist: libpq skips it silently (/dev/null draws a warning).
            "PGPASSFILE": "/dev/null/no-pgpass",
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
        }
    )
    if password is not None:
        env["PGPASSWORD"] = password
    env.update(extra or {})
    return env


def _write_private(path: Path, data: bytes, owner: pwd.struct_passwd | None, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def _server_owner() -> pwd.struct_passwd | None:
    return pwd.getpwnam(SERVER_USER) if os.geteuid() == 0 else None


def _server_run(
    argv: Sequence[str], cwd: Path, *, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a server program (initdb, pg_ctl) as the server's OS user, with a clean env."""
    owner = _server_owner()
    kwargs: dict[str, Any] = {}
    if owner is not None:
        kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=_server_env(cwd),
        umask=0o077,
        timeout=timeout,
        **kwargs,
    )


def _process_tag(pid: int) -> str | None:
    """ "PID STARTTIME" for a live process (a pid alone may be reused), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rpartition(')')[2].split()[19]}"


_reaped = False


def reap_stale_clusters(base_dir: Path | None = None) -> list[Path]:
    """Stop and remove the clusters under base_dir (default: the temp dir) whose creating
    process is gone (a test run that was killed); return their directories."""
    reaped: list[Path] = []
    for path in Path(base_dir or tempfile.gettempdir()).glob("bastion-pg-*"):
        try:
            owner = (path / "owner").read_text().strip()
            pid = int(owner.split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not ours, or still being created
        if _process_tag(pid) == owner:
            continue
        data = path / "data"
        if (data / "postmaster.pid").exists():
            pg_ctl = str(PG_BIN / "pg_ctl")
            with contextlib.suppress(subprocess.TimeoutExpired):
                _server_run(
                    [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"],
                    path,
                    timeout=60,
                )
        shutil.rmtree(path, ignore_errors=True)
        reaped.append(path)
    return reaped


# --- TLS material ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost (PEM)."""

    ca_cert: bytes
    server_cert: bytes
    server_key: bytes


def make_server_tls(common_name: str = "bastion-test-postgres") -> TlsFiles:
    """A fresh P-256 CA and server certificate (SAN: IP 127.0.0.1, DNS localhost), 1 day."""
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsFiles(
        ca_cert=ca_cert.public_bytes(serialization.Encoding.PEM),
        server_cert=cert.public_bytes(serialization.Encoding.PEM),
        server_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


# --- a database a test may use ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PgDatabase:
    """Where and as whom to connect: one database on a cluster, reached over TCP."""

    host: str
    port: int
    database: str
    user: str
    password: str
    cluster: PgCluster | None = dataclasses.field(default=None, repr=False, compare=False)

    def params(self, *, with_password: bool = True) -> dict[str, str | int]:
        """libpq/psycopg keyword parameters (host, port, dbname, user[, password])."""
        found: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
        }
        if with_password:
            found["password"] = self.password
        return found

    @property
    def dsn(self) -> str:
        """A libpq keyword/value string with the password: "host=... port=... dbname=...".
        For psql, psycopg and pgbench (asyncpg wants `url`)."""
        return make_conninfo(self.params())

    @property
    def url(self) -> str:
        """postgresql://user:password@host:port/database (for asyncpg)."""
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )

    def replace(self, **changes: Any) -> PgDatabase:
        """A copy with some fields changed, e.g. db.replace(password="wrong")."""
        return dataclasses.replace(self, **changes)


# --- the cluster -----------------------------------------------------------------------


class _PortTaken(Exception):
    pass


class PgCluster(ClosesOnExit):
    """A private PostgreSQL 15 cluster on 127.0.0.1 and a free port, for tests only.

    initdb runs as the `postgres` OS user (when the tests run as root) into a fresh directory
    under base_dir (default: the system temp dir, which that user must be able to traverse).
    Local (Unix socket) connections are trusted, which is how the superuser helpers connect;
    TCP connections need SCRAM-SHA-256 unless set_hba / set_role_auth say otherwise. Durability
    is switched off (fsync, full_page_writes, synchronous_commit): never keep data here.
    With ssl=True the server also accepts TLS, with a certificate for 127.0.0.1 and localhost
    signed by a test CA at `ca_cert_path` (so sslmode=verify-full works).
    """

    def __init__(
        self,
        *,
        ssl: bool = False,
        base_dir: Path | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.host = LOOPBACK
        self.port = 0
        self.ssl = ssl
        self.extra_config = list(extra_config)
        self.superuser = SUPERUSER
        self.superuser_password = random_password()
        """The superuser's password, for TCP connections (the socket needs none)."""
        self.dir = Path(tempfile.mkdtemp(prefix="bastion-pg-", dir=base_dir))
        self.dir.chmod(0o711)
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.log_path = self.dir / "postgres.log"
        self.ca_cert_path: Path | None = self.dir / "ca.crt" if ssl else None
        self.hba_lines: list[str] = list(DEFAULT_HBA)
        self._role_auth: dict[str, str] = {}
        self._owner = _server_owner()
        (self.dir / "owner").write_text(_process_tag(os.getpid()) or "")
        global _reaped  # noqa: PLW0603 - once per process
        if not _reaped:
            _reaped = True
            reap_stale_clusters(self.dir.parent)
        self._initialized = False
        self._closed = False
        _LIVE.add(self)

    # running server commands

    def _server_run(
        self, argv: Sequence[str], *, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return _server_run(argv, self.dir, timeout=timeout)

    def _server_check(self, argv: Sequence[str], *, timeout: float = 120.0) -> str:
        done = self._server_run(argv, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def _own(self, path: Path, mode: int) -> None:
        path.chmod(mode)
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    # set-up

    def _initdb(self) -> None:
        for path, mode in ((self.data_dir, 0o700), (self.socket_dir, 0o755)):
            path.mkdir()
            self._own(path, mode)
        self.log_path.touch()
        self._own(self.log_path, 0o600)
        pwfile = self.dir / "pwfile"
        _write_private(pwfile, self.superuser_password.encode() + b"\n", self._owner, 0o600)
        try:
            self._server_check(
                [
                    str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                    f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions",
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if self.ssl:
            tls = make_server_tls()
            _write_private(self.data_dir / "server.crt", tls.server_cert, self._owner, 0o644)
            _write_private(self.data_dir / "server.key", tls.server_key, self._owner, 0o600)
            assert self.ca_cert_path is not None
            self.ca_cert_path.write_bytes(tls.ca_cert)
            self.ca_cert_path.chmod(0o644)
        with (self.data_dir / "postgresql.conf").open("a") as handle:
            handle.write("\ninclude 'bastion_test.conf'\n")
        self._write_hba()
        self._initialized = True

    def _config(self, port: int) -> str:
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{self.socket_dir}'",
            "unix_socket_permissions = 0777",
            "password_encryption = 'scram-sha-256'",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "wal_level = minimal",
            "max_wal_senders = 0",
            "max_connections = 300",
            "shared_buffers = 32MB",
            "logging_collector = off",
            "log_destination = 'stderr'",
            "log_line_prefix = '%m [%p] %q%u@%d/%a '",
            "log_connections = on",
            "log_timezone = 'UTC'",
            "timezone = 'UTC'",
            "lc_messages = 'C'",
        ]
        if self.ssl:
            lines += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
        return "\n".join([*lines, *self.extra_config, ""])

    def _hba_text(self) -> str:
        role_lines = [
            f"host all {_hba_name(role)} 127.0.0.1/32 {method}"
            for role, method in self._role_auth.items()
        ]
        return "\n".join(["local all all trust", *role_lines, *self.hba_lines, ""])

    def _write_hba(self) -> None:
        path = self.data_dir / "pg_hba.conf"
        path.write_text(self._hba_text())
        self._own(path, 0o600)

    # lifecycle

    def start(self) -> Self:
        """initdb (the first time), start on a free port (the same one after a stop), and wait
        until the server accepts TCP connections."""
        if self._closed:
            raise RuntimeError("this cluster is closed")
        if not self._initialized:
            self._initdb()
        if self.running:
            return self
        for _attempt in range(5):
            port = self.port or free_port(self.host)
            try:
                self._start_on(port)
            except _PortTaken:
                if self.port:
                    raise RuntimeError(
                        f"port {self.port} was taken while the server was down"
                    ) from None
                continue
            self.port = port
            self._wait_ready()
            return self
        raise RuntimeError("PostgreSQL lost the race for a free port five times")

    def _start_on(self, port: int) -> None:
        _write_private(
            self.data_dir / "bastion_test.conf", self._config(port).encode(), self._owner, 0o600
        )
        log_start = self.log_offset()
        done = self._server_run(
            [
                str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                "-w", "-t", str(int(READY_TIMEOUT)), "-s", "start",
            ]
        )  # fmt: skip
        if done.returncode == 0:
            return
        log = self.log_text(log_start)
        self._kill_leftovers()
        if any(failure in log for failure in _BIND_FAILURES):
            raise _PortTaken
        raise RuntimeError(
            f"pg_ctl start failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{log}"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        argv = [
            str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port),
            "-U", SUPERUSER, "-d", "postgres", "-t", "2",
        ]  # fmt: skip
        while True:
            if subprocess.run(argv, env=client_env(), check=False).returncode == 0:
                return
            if not self.running:
                raise RuntimeError(f"PostgreSQL died while starting:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not ready on {self.host}:{self.port}")
            time.sleep(POLL)

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m MODE (smart, fast or immediate); waits until the server is gone."""
        if not self.running:
            return
        done = self._server_run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60",
             "-s", "stop"]
        )  # fmt: skip
        if done.returncode != 0 and self.running:
            if mode != "immediate":
                self.stop("immediate")
            else:
                self.kill()

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and every backend; the next start recovers.
        Commits of the last moment (synchronous_commit is off) and unlogged tables are lost."""
        pid = self.pid
        if pid is None:
            return
        pids = [pid, *descendants(pid)]
        for each in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGKILL)
        deadline = time.monotonic() + READY_TIMEOUT
        while any(_pid_alive(each) for each in pids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes outlived SIGKILL: {pids}")
            time.sleep(POLL)
        self._remove_lock_files()

    def _remove_lock_files(self) -> None:
        # A killed postmaster may stay a zombie until its new parent reaps it, and a lock file
        # naming a pid that kill(pid, 0) still finds makes the next postmaster refuse to start.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        if self.port:
            (self.socket_dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def _kill_leftovers(self) -> None:
        pid = self.pid
        if pid is not None:
            kill_pids([pid, *descendants(pid)])

    def restart(self, mode: str = "fast") -> Self:
        """Stop (mode as for stop) and start again on the same port."""
        self.stop(mode)
        return self.start()

    def close(self) -> None:
        """Stop the server (fast, then harder) and remove its directory."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop("fast")
        finally:
            self._kill_leftovers()
            shutil.rmtree(self.dir, ignore_errors=True)
            _LIVE.discard(self)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    # facts

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def log_offset(self) -> int:
        """The log's current size, to pass to log_text later for what came after."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, start: int = 0) -> str:
        """The server log (every start appends to it), from byte offset `start`."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(start)
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    # connecting as the superuser

    def superuser_params(self, db: str = "postgres", *, tcp: bool = False) -> dict[str, str | int]:
        """Superuser connection parameters: over the Unix socket (trusted), or over TCP with
        the superuser's password."""
        if tcp:
            return {
                "host": self.host,
                "port": self.port,
                "dbname": db,
                "user": SUPERUSER,
                "password": self.superuser_password,
            }
        return {"host": str(self.socket_dir), "port": self.port, "dbname": db, "user": SUPERUSER}

    def superuser_dsn(self, db: str = "postgres", *, tcp: bool = False) -> str:
        return make_conninfo(self.superuser_params(db, tcp=tcp))

    def superuser_database(self, db: str = "postgres") -> PgDatabase:
        """The superuser over TCP as a PgDatabase."""
        return PgDatabase(self.host, self.port, db, SUPERUSER, self.superuser_password, self)

    def connect(self, db: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit psycopg connection as the superuser, over the Unix socket. Its commits
        are synchronous (the cluster's default is not), so what the helpers create survives
        kill(); other sessions' last commits before a kill() may be lost."""
        return psycopg.connect(
            self.superuser_dsn(db),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            options="-c synchronous_commit=on",
        )

    def sql(
        self,
        statement: str | pgsql.SQL | pgsql.Composed,
        db: str = "postgres",
        *,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement (or, without params, several separated by ;) as the superuser in
        autocommit; return the rows of the last result (empty when it returns none)."""
        with self.connect(db) as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            rows: list[tuple[Any, ...]] = []
            while True:
                if cur.description is not None:
                    rows = cur.fetchall()
                if not cur.nextset():
                    return rows

    # roles, databases, authentication

    def create_role(
        self, name: str, password: str | None, *, login: bool = True, superuser: bool = False
    ) -> None:
        """CREATE ROLE with a SCRAM-SHA-256 password (or none)."""
        options: list[pgsql.Composable] = [pgsql.SQL("LOGIN" if login else "NOLOGIN")]
        options.append(pgsql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"))
        if password is not None:
            options.append(pgsql.SQL("PASSWORD {}").format(pgsql.Literal(password)))
        self.sql(
            pgsql.SQL("CREATE ROLE {} WITH {}").format(
                pgsql.Identifier(name), pgsql.SQL(" ").join(options)
            )
        )

    def set_password(self, role: str, password: str, *, encryption: str = "scram-sha-256") -> None:
        """Store the role's password hashed with `encryption` ("scram-sha-256" or "md5")."""
        with self.connect() as conn:
            conn.execute(
                pgsql.SQL("SET password_encryption = {}").format(pgsql.Literal(encryption))
            )
            conn.execute(
                pgsql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    pgsql.Identifier(role), pgsql.Literal(password)
                )
            )

    def stored_password(self, role: str) -> str | None:
        """The role's stored verifier ("SCRAM-SHA-256$..." or "md5..."), or None."""
        rows = self.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", params=[role])
        return rows[0][0] if rows else None

    def drop_role(self, name: str) -> None:
        """DROP ROLE IF EXISTS (drop its databases first) and forget its set_role_auth override."""
        self.sql(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(name)))
        self._role_auth.pop(name, None)

    def create_database(self, name: str, owner: str) -> None:
        self.sql(
            pgsql.SQL("CREATE DATABASE {} OWNER {}").format(
                pgsql.Identifier(name), pgsql.Identifier(owner)
            )
        )

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS ... WITH (FORCE): connected sessions are terminated."""
        self.sql(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
        )

    def set_hba(self, lines: Sequence[str]) -> None:
        """Replace pg_hba.conf's TCP lines (per-role lines from set_role_auth stay first, and
        `local all all trust` before them) and reload; returns once the server uses them."""
        self.hba_lines = list(lines)
        self.reload_hba()

    def set_role_auth(self, role: str, method: str | None) -> None:
        """Make TCP logins of `role` use `method` (md5, trust, password, scram-sha-256, reject),
        or with None drop that override; reload. For md5 to really run md5, also store an md5
        password: set_password(role, password, encryption="md5")."""
        if method is None:
            self._role_auth.pop(role, None)
        else:
            self._role_auth[role] = method
        self.reload_hba()

    def reload_hba(self) -> None:
        """Write pg_hba.conf and reload; wait until new connections get the new rules."""
        self._write_hba()
        if not self.running:
            return
        with self.connect() as conn:
            errors = conn.execute(
                "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL"
            ).fetchall()
            if errors:
                raise ValueError(f"bad pg_hba.conf lines: {errors}\n{self._hba_text()}")
            before = conn.execute("SELECT pg_conf_load_time()").fetchone()
            conn.execute("SELECT pg_reload_conf()")
        # A new backend inherits the postmaster's load time: once it moves, the reload is done.
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with self.connect() as conn:
                if conn.execute("SELECT pg_conf_load_time()").fetchone() != before:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not reload its configuration")
            time.sleep(POLL)

    # test worlds

    def seed_orders(
        self, db: str = "orders", *, owner: str = SERVICE_ROLE, password: str | None = None
    ) -> PgDatabase:
        """Create `owner` (a login role, SCRAM, random password unless given; its password is
        reset if it exists) and database `db` owned by it, with tables customers and orders
        (CUSTOMER_ROWS and ORDER_ROWS deterministic rows, owned by `owner`)."""
        password = password if password is not None else random_password()
        if self.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", params=[owner]):
            self.set_password(owner, password)
        else:
            self.create_role(owner, password)
        self.create_database(db, owner)
        self.seed_tables(db, owner)
        return PgDatabase(self.host, self.port, db, owner, password, self)

    def seed_tables(self, db: str, owner: str) -> None:
        """Create and fill customers and orders in `db`, owned by `owner`."""
        with self.connect(db) as conn:
            conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(owner)))
            for statement in _SEED_SQL:
                conn.execute(statement)
            conn.execute("RESET ROLE")
            conn.execute("ANALYZE customers, orders")

    def fresh_orders(self, prefix: str = "t") -> PgDatabase:
        """seed_orders with a unique database name and a unique service role."""
        return self.seed_orders(unique_name(f"{prefix}_db"), owner=unique_name(f"{prefix}_svc"))

    def discard(self, db: PgDatabase) -> None:
        """Drop a database made by seed_orders/fresh_orders, and its role."""
        self.drop_database(db.database)
        self.drop_role(db.user)

    def make_big_table(
        self,
        db: str | PgDatabase,
        rows: int,
        *,
        name: str = "big",
        pad: int = 500,
        unlogged: bool = False,
    ) -> None:
        """CREATE TABLE name AS SELECT g AS id, repeat('x', pad) AS pad FROM generate_series(1,
        rows), owned by the database's owner: 1M rows with pad 500 is a 500 MB result and
        521 MB on disk, made in about 2 s (wal_level is minimal, so CTAS writes no WAL)."""
        dbname = db.database if isinstance(db, PgDatabase) else db
        owner = self.sql(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            params=[dbname],
        )[0][0]
        with self.connect(dbname) as conn:
            conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(owner)))
            conn.execute(
                pgsql.SQL(
                    "CREATE {} TABLE {} AS SELECT g AS id, repeat('x', {}) AS pad"
                    " FROM generate_series(1, {}) g"
                ).format(
                    pgsql.SQL("UNLOGGED" if unlogged else ""),
                    pgsql.Identifier(name),
                    pgsql.Literal(pad),
                    pgsql.Literal(rows),
                )
            )
            conn.execute("RESET ROLE")
            conn.execute(pgsql.SQL("ANALYZE {}").format(pgsql.Identifier(name)))


_SEED_SQL = (
    "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL,"
    " ssn text NOT NULL, created_at timestamptz NOT NULL)",
    "CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL,"
    " total numeric(10, 2) NOT NULL, note text)",
    # Row g gets id g: name "Customer g", email "customerg@example.com", ssn "ddd-dd-dddd".
    "INSERT INTO customers (name, email, ssn, created_at)"
    " SELECT 'Customer ' || g, 'customer' || g || '@example.com',"
    " (g % 900 + 100) || '-' || (g % 89 + 10) || '-' || (g * 7 % 9000 + 1000),"
    " timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'"
    f" FROM generate_series(1, {CUSTOMER_ROWS}) g",
    "INSERT INTO orders (customer_id, total, note)"
    f" SELECT g * 7 % {CUSTOMER_ROWS} + 1, (g * 37 % 100000) / 100.0, 'order ' || g"
    f" FROM generate_series(1, {ORDER_ROWS}) g",
)


def _hba_name(role: str) -> str:
    return role if re.fullmatch(r"[a-z_][a-z0-9_]*", role) else '"' + role + '"'


class PgClusterFactory(Protocol):
    """Makes and starts a private cluster that the fixture closes at the end of the test."""

    def __call__(self, *, ssl: bool = False, extra_config: Sequence[str] = ()) -> PgCluster: ...


def _close_live_clusters() -> None:
    for cluster in list(_LIVE):
        with contextlib.suppress(Exception):
            cluster.close()


atexit.register(_close_live_clusters)


# --- clients ---------------------------------------------------------------------------

PgTarget = PgDatabase | Mapping[str, str | int] | str
"""Where a client connects: a PgDatabase, libpq keyword parameters (password included), or a
connection string / postgresql:// URL (used as is; put any password in it)."""


def _split_target(target: PgTarget) -> tuple[str, str | None]:
    """(conninfo without the password, password or None)."""
    if isinstance(target, str):
        return target, None
    params = dict(target.params() if isinstance(target, PgDatabase) else target)
    password = params.pop("password", None)
    return make_conninfo(params), None if password is None else str(password)


def psql_argv(target: PgTarget, *args: str, no_password: bool = True) -> list[str]:
    """psql -X -v ON_ERROR_STOP=1 [-w] -d CONNINFO ARGS... (the password goes in the env)."""
    conninfo, _ = _split_target(target)
    flags = ["-w"] if no_password else []
    return [PSQL, "-X", "-v", "ON_ERROR_STOP=1", *flags, "-d", conninfo, *args]


def psql_env(target: PgTarget, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """client_env with the target's password as PGPASSWORD."""
    return client_env(_split_target(target)[1], env)


def pgbench_argv(target: PgTarget, *args: str) -> list[str]:
    """pgbench ARGS... CONNINFO (pgbench expands a connection string given as the dbname)."""
    conninfo, _ = _split_target(target)
    return [PGBENCH, *args, conninfo]


def _run(
    argv: list[str], input: str | None, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,  # no controlling terminal: never a password prompt
    )
    try:
        out, err = proc.communicate(input, timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


async def _run_async(
    argv: list[str], input: str | None, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = await proc.communicate()
        raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(
        argv, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def run_psql(
    target: PgTarget,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run the real psql (no psqlrc, ON_ERROR_STOP, never prompting) with args, e.g.
    run_psql(db, "-At", "-c", "SELECT 1"); stdin from `input`. Raises TimeoutExpired."""
    return _run(psql_argv(target, *args), input, psql_env(target, env), timeout)


async def run_psql_async(
    target: PgTarget,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """run_psql without blocking the event loop (for servers running in the test's loop)."""
    return await _run_async(psql_argv(target, *args), input, psql_env(target, env), timeout)


def run_pgbench(
    target: PgTarget,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    """Run the real pgbench with args, e.g. run_pgbench(db, "-i", "-s", "1")."""
    return _run(pgbench_argv(target, *args), None, psql_env(target, env), timeout)


async def run_pgbench_async(
    target: PgTarget,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    return await _run_async(pgbench_argv(target, *args), None, psql_env(target, env), timeout)


def pgbench_tps(output: str) -> float:
    """The TPS figure from pgbench's report ("tps = N (without initial connection time)")."""
    found = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", output, re.M)
    if found is None:
        raise ValueError(f"no TPS in pgbench output:\n{output}")
    return float(found.group(1))


def psycopg_connect(target: PgTarget, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """A psycopg 3 connection (connect_timeout 10 s unless given)."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    if isinstance(target, str):
        return psycopg.connect(target, **kwargs)
    params = dict(target.params() if isinstance(target, PgDatabase) else target)
    return psycopg.connect(**{**params, **kwargs})


async def asyncpg_connect(target: PgTarget, **kwargs: Any) -> asyncpg.Connection:
    """An asyncpg connection (timeout 10 s unless given). A string target must be a
    postgresql:// URL; keyword parameters use asyncpg's names (database, not dbname)."""
    kwargs.setdefault("timeout", CONNECT_TIMEOUT)
    if isinstance(target, str):
        return await asyncpg.connect(target, **kwargs)
    params = dict(target.params() if isinstance(target, PgDatabase) else target)
    if "dbname" in params:
        params["database"] = params.pop("dbname")
    return await asyncpg.connect(**{**params, **kwargs})
