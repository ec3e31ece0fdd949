"""The store's connection: opening, migrations, write transactions and the audit chain."""

from __future__ import annotations

import os
import socket
import string
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import structlog

from bastion.audit import chain, nul
from bastion.audit.chain import ChainedEvent, ChainKey, Event, Verdict
from bastion.audit.chainwalk import CHUNK, walk_store
from bastion.audit.dialect import fragment
from bastion.audit.location import PgLocation
from bastion.audit.sqlconn import Conn, DbError, Dialect, SqliteConn, one
from bastion.clock import Clock, iso
from bastion.errors import NotFound, StoreError

log = structlog.get_logger("bastion.audit")

KEYED_SCHEMA = 11  # the migration from which the chain is keyed
MOVED_KIND = "store.moved"  # the last event of a SQLite store copied elsewhere (store copy)
PROGRESS_EVERY = CHUNK  # verify_chain's progress callback: once per this many events walked


def where(conditions: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """A WHERE clause from (clause, value) pairs whose value is not None; a tuple value fills
    several placeholders, and True stands for a clause without one."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in conditions:
        if value is None or value is False:
            continue
        clauses.append(clause)
        if isinstance(value, tuple):
            params.extend(value)
        elif value is not True:
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


# `column` holds `needle` as a substring, ASCII case ignored: lower() lowers ASCII letters only
# on SQLite and on PostgreSQL under COLLATE "C" alike, and the parameter is contains(needle).
CONTAINS = "lower({column}) LIKE ? ESCAPE '\\'"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def contains(needle: str) -> str:
    """The LIKE pattern CONTAINS takes for `needle`: ASCII-lowered, its `\\`, `%` and `_`
    escaped (matched as themselves), between two `%`."""
    low = needle.translate(_ASCII_LOWER)
    return "%" + low.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


MIGRATIONS_TABLE_SQLITE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations"
    " (number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)
"""The table a SQLite store records its applied migrations in (PostgreSQL's makes its own)."""
SQLITE_TRIGGERS = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
"""Each trigger of a SQLite database with the CREATE text SQLite keeps for it."""


def migrations(dialect: Dialect = "sqlite") -> list[tuple[int, str, str]]:
    """The numbered migrations shipped with the package for one engine, in order: (number,
    name, sql). SQLite's are in migrations/, PostgreSQL's twins in migrations/postgresql/."""
    found: list[tuple[int, str, str]] = []
    folder = resources.files("bastion.audit").joinpath("migrations")
    if dialect == "postgresql":
        folder = folder.joinpath("postgresql")
    if not folder.is_dir():
        return found
    for item in folder.iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, item.read_text(encoding="utf-8")))
    return sorted(found)


_EVENT_COLUMNS = (
    "seq, at, kind, severity, actor, subject, session_id, detail, prev_hash, row_hash, alg"
)
_INSERT_EVENT = f"INSERT INTO audit_events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
# On PostgreSQL a batch of events is one statement over one array per column: one execution
# and one round trip, where executemany executes the INSERT once per event.
_INSERT_EVENTS_PG = (
    f"INSERT INTO audit_events ({_EVENT_COLUMNS}) SELECT * FROM unnest(?::bigint[]"
    + ", ?::text[]" * 10
    + ")"
)


def _insert_events(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """The chained rows, in the caller's transaction. On PostgreSQL every row must be taken
    (a trigger that drops rows makes it StoreError and the transaction is rolled back: an
    event is never acknowledged that the store does not hold)."""
    if conn.dialect != "postgresql":
        conn.executemany(_INSERT_EVENT, rows)
        return
    columns = [list(column) for column in zip(*rows, strict=True)]
    inserted = conn.execute(_INSERT_EVENTS_PG, columns).rowcount
    if inserted != len(rows):
        raise StoreError(f"the store took {inserted} of a batch of {len(rows)} audit events")


def _nul_free(event: Event) -> Event:
    """The event with a NUL a client put in its actor or subject escaped (bastion/audit/nul.py;
    the detail is JSON, which escapes it anyway), so every engine holds and chains it alike."""
    actor, subject = nul.escape(event.actor), nul.escape(event.subject)
    if actor == event.actor and subject == event.subject:
        return event
    return replace(event, actor=actor, subject=subject)


class StoreBase:
    """The store (one SQLite file, or a PostgreSQL database, through a `Conn`); every write
    is a transaction that holds the store's one writer lock (on PostgreSQL, one that chains
    nothing may go without: Conn.begin_write) and also chains its events.

    `key` MACs the chain. Every process of a running bastion and every CLI command opens the
    store with it; without it (tests, tools) the store can only extend a chain that is not
    keyed yet, and refuses to write to one that is.
    """

    def __init__(
        self,
        where: Path | PgLocation,
        clock: Clock,
        key: ChainKey | None = None,
        node: str | None = None,
    ) -> None:
        self.clock = clock
        self.chain_key = key
        self._lock = threading.RLock()
        self.node = node
        self.path: Path | None = None
        self.location: PgLocation | None = None
        try:
            if isinstance(where, PgLocation):
                if where.head_file is None:
                    raise StoreError(f"the store at {where} needs a head file ([store] head_file)")
                self.location, self.anchor_path = where, where.head_file
                self.where = str(where)
                self.conn: Conn = where.connect(node)
            else:
                self.path = Path(where)
                self.where = str(self.path)
                self.anchor_path = self.path.with_name(self.path.name + ".head")
                self.conn = SqliteConn.open(self.path)
        except DbError as exc:
            raise StoreError(f"cannot open the store {self.where}: {exc}") from exc
        self._pending_head: tuple[int, str] | None = None
        self._anchor_fd: int | None = None

    @classmethod
    def create(
        cls, where: Path | PgLocation, clock: Clock, key: ChainKey | None = None,
        node: str | None = None,
    ) -> StoreBase:  # fmt: skip
        """Make a new store (a new file; on PostgreSQL, the tables in an empty schema);
        refuses to touch one that exists. With a key, the chain is keyed from its start."""
        if isinstance(where, PgLocation):
            store = cls(where, clock, key, node)
            if store._has_tables():
                store.close()
                raise StoreError(
                    f"the store at {where} exists already (it has schema_migrations);"
                    " refusing to create it again"
                )
            store.migrate()
            return store
        try:
            os.close(os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError as exc:
            raise StoreError(f"the store {where} exists already; refusing to overwrite it") from exc
        except OSError as exc:
            raise StoreError(f"cannot create the store {where}: {exc.strerror}") from exc
        store = cls(where, clock, key, node)
        store.migrate()
        return store

    @classmethod
    def open(
        cls, where: Path | PgLocation, clock: Clock, key: ChainKey | None = None,
        node: str | None = None,
    ) -> StoreBase:  # fmt: skip
        """Open an existing store and bring its schema up to date.

        An unkeyed chain (from before 0011) is keyed when 0011 is applied with the key."""
        if isinstance(where, PgLocation):
            store = cls(where, clock, key, node)
            if not store._has_tables():
                store.close()
                raise StoreError(
                    f"the store at {where} has no tables (no schema_migrations): create it"
                    " with `bastion store create`"
                )
        else:
            if not Path(where).exists():
                raise StoreError(f"the store {where} does not exist; run `bastion init` first")
            store = cls(where, clock, key, node)
        store.migrate()
        return store

    @property
    def file(self) -> Path:
        """The SQLite store's file; StoreError on PostgreSQL (no file: use the store)."""
        if self.path is None:
            raise StoreError(f"the store at {self.where} is on PostgreSQL, not in a file")
        return self.path

    def _has_tables(self) -> bool:
        with self._reading() as conn:
            return conn.table_exists("schema_migrations")

    def reader(self) -> Conn:
        """A read-only connection of its own to the store, usable from another thread (the
        review's checks run beside the build); the caller closes it."""
        try:
            if self.location is not None:
                return self.location.connect(f"{self.node or socket.gethostname()}-reader")
            assert self.path is not None
            return SqliteConn.reader(self.path)
        except DbError as exc:
            raise StoreError(f"cannot read the store {self.where}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self.conn.close()
            if self._anchor_fd is not None:
                os.close(self._anchor_fd)
                self._anchor_fd = None

    # -- schema -----------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._reading() as conn:
            if not conn.table_exists("schema_migrations"):
                return 0
            row = one(conn.execute("SELECT max(number) FROM schema_migrations"))
        return int(row[0] or 0)

    def migrate(self) -> list[str]:
        """Apply every migration newer than the store, each in its own transaction."""
        applied = []
        with self._lock:
            try:  # PostgreSQL's apply_migration makes its own, under the migration lock
                if self.conn.dialect == "sqlite":
                    self.conn.execute(MIGRATIONS_TABLE_SQLITE)
            except DbError as exc:
                raise StoreError(f"cannot use the store {self.where}: {exc}") from exc
            current = self.schema_version()
            for number, name, sql in migrations(self.conn.dialect):
                if number <= current:
                    continue
                if self._apply_migration(number, name, sql):
                    applied.append(name)
            if current < KEYED_SCHEMA <= self.schema_version() and self.chain_key is not None:
                with self._write() as conn:  # the upgrade: key the chain, once, right now
                    self._append(conn, [], upgrade=True)
        return applied

    def _apply_migration(self, number: int, name: str, sql: str) -> bool:
        """One migration in one transaction (False: another process applied it first)."""
        try:
            return self.conn.apply_migration(number, name, sql, iso(self.clock.now()))
        except DbError as exc:
            raise StoreError(f"migration {name} failed on {self.where}: {exc}") from exc

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def _write(self, chained: bool = True) -> Iterator[Conn]:
        """A write transaction, kept whole or not at all (`chained`: see Conn.begin_write)."""
        with self._lock:
            try:
                self.conn.begin_write(chained)
            except DbError as exc:
                raise StoreError(f"cannot write to the store {self.where}: {exc}") from exc
            try:
                if self.path is not None:
                    self._refuse_if_moved(self.conn)
                yield self.conn
                self.conn.commit()
            except BaseException as exc:
                if self.conn.in_transaction:
                    self.conn.rollback()
                if isinstance(exc, DbError):
                    raise StoreError(f"store write failed on {self.where}: {exc}") from exc
                raise
            self._write_anchor()

    def _refuse_if_moved(self, conn: Conn) -> None:
        """A SQLite store whose last event is MOVED_KIND (`bastion store copy`) takes no more
        writes: a node left on the old config fails instead of writing a trail nobody reads."""
        moved = conn.execute(
            "SELECT subject, at FROM audit_events WHERE kind = ?"
            " AND seq = (SELECT max(seq) FROM audit_events)",
            [MOVED_KIND],
        ).fetchone()
        if moved is not None:
            raise StoreError(
                f"the store {self.where} was copied to {moved[0]} at {moved[1]} (bastion store"
                " copy) and takes no more writes: point [store] url at the copy"
            )

    @contextmanager
    def _reading(self) -> Iterator[Conn]:
        """The connection for a few reads in a row, outside any transaction (each read sees
        the store as it is then); the engine's errors come out as StoreError."""
        with self._lock:
            try:
                yield self.conn
            except DbError as exc:
                raise StoreError(f"cannot read the store {self.where}: {exc}") from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]

    def _id_by_name(self, table: str, name: str) -> int:
        """The id of a user, or of a target that is not removed; NotFound otherwise."""
        live = " AND removed_at IS NULL" if table == "targets" else ""
        rows = self._rows(f"SELECT id FROM {table} WHERE name = ?{live}", [name])
        if not rows:
            raise NotFound(f"no {table[:-1]} named {name!r}")
        return int(rows[0]["id"])

    # -- the audit chain --------------------------------------------------------------

    def _append(
        self, conn: Conn, events: Sequence[Event], upgrade: bool = False
    ) -> list[ChainedEvent]:
        """Chain events after the current head, inside the caller's transaction.

        A keyed store finds an unkeyed head only when migration 0011 has just been applied
        (upgrade): it then writes the keying event, which binds that head under the key. At
        any other time an unkeyed head means the chain was rewritten without the key, and
        nothing more is written to it."""
        conn.lock_chain()  # a write begun without it: the head is only ever read under it
        head = conn.execute(
            "SELECT seq, row_hash, alg FROM audit_events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (head[0], head[1]) if head else (0, chain.GENESIS)
        key = self.chain_key
        secret = None if key is None else key.secret
        keyed_head = head is not None and head[2] == chain.KEYED
        if key is None and keyed_head:
            raise StoreError(
                "the audit chain is keyed: this program opened the store without the key"
            )
        at = iso(self.clock.now())
        out, wanted = [], len(events)
        if key is not None and head is not None and not keyed_head:
            if not upgrade:
                raise StoreError(
                    "the audit chain's last event is not keyed: it was written without the key"
                    " (see `bastion audit verify`); refusing to extend it"
                )
            detail = {"key_id": key.key_id, "unkeyed_head_seq": seq, "unkeyed_head": prev}
            events = [Event(chain.KEYED_KIND, "bastion", "", "notice", None, detail), *events]
        for event in events:
            seq += 1
            row = chain.link(_nul_free(event), seq, at, prev, secret)
            prev = row.row_hash
            out.append(row)
        if not out:
            return out
        _insert_events(conn, [
            (r.seq, r.at, r.kind, r.severity, r.actor, r.subject, r.session_id, r.detail,
             r.prev_hash, r.row_hash, r.alg)
            for r in out
        ])  # fmt: skip
        self._pending_head = (seq, prev)
        return out[len(out) - wanted :]

    def append_events(self, events: Sequence[Event]) -> list[ChainedEvent]:
        """Write events durably in one transaction; returns them as chained."""
        with self._write() as conn:
            return self._append(conn, events)

    def _write_anchor(self) -> None:
        """Record the chain head outside the store, so deleting its last rows shows.

        One fixed-width record rewritten in place (a single small write, no rename), after
        the commit: the file may lag the store after a crash, but never runs ahead of it.
        """
        head = self._pending_head
        if head is None:
            return
        self._pending_head = None
        record = f"{head[0]:020d} {head[1]}\n".encode("ascii")
        try:
            if self._anchor_fd is None:
                flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK  # the file itself
                self._anchor_fd = os.open(self.anchor_path, flags, 0o600)
            os.pwrite(self._anchor_fd, record, 0)
        except OSError as exc:
            log.warning("audit.anchor_write_failed", path=str(self.anchor_path), error=str(exc))

    def read_anchor(self) -> tuple[int, str] | None:
        return chain.read_head_file(self.anchor_path)

    def events(self, after: int = 0, limit: int | None = None) -> list[ChainedEvent]:
        sql = "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq"
        params: list[Any] = [after]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [ChainedEvent(**row) for row in self._rows(sql, params)]

    def last_events(self, count: int) -> list[ChainedEvent]:
        rows = self._rows("SELECT * FROM audit_events ORDER BY seq DESC LIMIT ?", [count])
        return [ChainedEvent(**row) for row in reversed(rows)]

    def verify_chain(self, progress: Callable[[int], None] | None = None) -> Verdict:
        """Walk the whole chain (MACs checked with the key), then compare its head with the
        head file beside the store; a missing head file is a failure, not a pass. `progress`,
        if given, is called with the number of events walked every PROGRESS_EVERY events.

        The head file is read first: it is written after each commit, so every event it names
        is in the store by then, however busy a running bastion is meanwhile.
        """
        anchor = self.read_anchor()
        key = None if self.chain_key is None else self.chain_key.secret
        start, problem = self._chain_start()
        verdict = walk_store(self.events, self.path, key, progress, start)
        if not verdict.ok or problem:
            return verdict if not verdict.ok else replace(verdict, ok=False, problem=problem)
        problem = self._table_problem(verdict)
        if problem:
            return replace(verdict, ok=False, problem=problem, bad_seq=verdict.head_seq)
        if anchor is None:
            if verdict.checked == 0 and key is None:
                return verdict
            problem = (
                f"the head file {self.anchor_path} is missing or unreadable: deletions at the"
                " end of the chain could not be seen"
            )
            return replace(verdict, ok=False, problem=problem, bad_seq=verdict.head_seq)
        problem = self._anchor_problem(verdict, anchor[0], anchor[1])
        if problem:
            return replace(verdict, ok=False, problem=problem, bad_seq=anchor[0])
        return verdict

    def _chain_start(self) -> tuple[tuple[int, str] | None, str]:
        """Where the walk starts (a retention checkpoint's seq and MAC, None: at event 1) and
        '' or why that checkpoint is not one the chain itself holds (bastion/retention.py)."""
        return None, ""

    def _table_problem(self, verdict: Verdict) -> str:
        """'' when the walk saw every row: seq is still the table's own key (no repeated or
        missing seq a rebuilt table could hide beside the walk), and the table holds no row
        up to the head that the walk did not check."""
        key = self._rows(fragment(self.conn.dialect, "seq_is_key"))
        if not key or not key[0]["ok"]:
            return "the audit_events table was rebuilt: seq is no longer its INTEGER PRIMARY KEY"
        held = self._rows(
            "SELECT COUNT(*) AS n FROM audit_events WHERE seq IS NULL OR seq <= ?",
            [verdict.head_seq],
        )[0]["n"]
        if int(held) != verdict.checked:
            return (
                f"the store holds {held} events up to event {verdict.head_seq}, the chain"
                f" {verdict.checked} (rows beside the chain)"
            )
        return ""

    def _anchor_problem(self, verdict: Verdict, seq: int, mac: str) -> str:
        """'' when the chain holds event seq with this MAC, and reaches it; else what is wrong."""
        return chain.check_anchor(verdict, seq, mac, self.mac_at(seq))

    def chain_head(self) -> tuple[int, str]:
        """The last event's seq and MAC, as the store holds them now ((0, GENESIS) if none)."""
        rows = self._rows("SELECT seq, row_hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        return (rows[0]["seq"], rows[0]["row_hash"]) if rows else (0, chain.GENESIS)

    def mac_at(self, seq: int) -> str | None:
        """The MAC of event seq, or None if there is no such event."""
        rows = self._rows("SELECT row_hash FROM audit_events WHERE seq = ?", [seq])
        return str(rows[0]["row_hash"]) if rows else None
