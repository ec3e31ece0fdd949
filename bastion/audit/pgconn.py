"""The store on PostgreSQL: one asyncpg connection, driven synchronously through its own loop.

The store is synchronous and used from whichever thread holds its lock (the store thread, a
report thread, the CLI). Each `PgConn` owns a private event loop and runs every call to
completion on it in the calling thread: a round trip costs about 0.1 ms more than the wire.
A thread that already runs an event loop is refused with a clear error (the store blocks;
nothing on an event loop may wait on it). The coroutine is built inside each call, after
that check, so a refused call leaves nothing un-awaited behind.

Losing the connection: it is reopened on the next call. A read outside a transaction is run
once more, in a READ ONLY transaction (the server refuses it if it writes after all). A
write, a transaction cut in half, or a COMMIT whose outcome is unknown is never run again:
`DbError`, and the transaction stays failed until `rollback()` (fail closed: a blind retry
could append an event twice, or run the rest of a transaction in autocommit).

Errors are `Duplicate` (a unique key refused the row) or `DbError`, with the server's
message and SQLSTATE; never a parameter's value or the password. This module and listen.py
(the LISTEN connection) are the only ones importing asyncpg, lazily, for PostgreSQL stores.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, TypeVar

import asyncpg
from asyncpg import exceptions as pgerr
from asyncpg.exceptions import _base as pgbase

from bastion.audit import dialect
from bastion.audit.dialect import MIGRATION_LOCK, numeric, rowcount
from bastion.audit.sqlconn import DbError, Dialect, Duplicate, RowsResult

T = TypeVar("T")
Work = Callable[[Any], Coroutine[Any, Any, T]]
Replay = Literal["never", "again", "read"]

STATEMENTS_KEPT = 256  # prepared statements kept per connection (least recently used go)
LOST_STATES = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05", "25P03"})
IN_LOOP = (
    "the store was called from a thread that runs an event loop; store calls block, so they"
    " belong in the store's thread, never on the event loop"
)
LOST_IN_TRANSACTION = (
    "the connection to the store was lost in the middle of a transaction; nothing of it was kept"
)
COMMIT_UNKNOWN = (
    "the connection to the store was lost during COMMIT; whether the transaction was kept is"
    " unknown, so it is not retried"
)
WRITE_IN_DOUBT = (
    "the connection to the store was lost during a statement that may write; its outcome is"
    " unknown, so it is not retried"
)
ROLLED_BACK = "the transaction had failed, so COMMIT rolled it back; nothing of it was kept"
BEGIN_UNCHAINED = "BEGIN ISOLATION LEVEL READ COMMITTED"
# The chain lock: a table only the store's own role may lock (migration 0024); an advisory
# key could be held by any role that may connect to the database (red team red18c 1).
LOCK_CHAIN = "LOCK TABLE chain_lock IN EXCLUSIVE MODE"
BEGIN_WRITE = f"{BEGIN_UNCHAINED}; {LOCK_CHAIN}"
BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ"
# Once the store has its migrations table, migrations lock it, for the same reason.
LOCK_MIGRATIONS = "LOCK TABLE schema_migrations IN EXCLUSIVE MODE"
BEGIN_MIGRATION = (
    f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
)
NO_SCHEMA = "SELECT current_schema() IS NULL"
MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (number bigint PRIMARY KEY,"
    ' name text COLLATE "C" NOT NULL, applied_at text COLLATE "C" NOT NULL)'
)
_ARGUMENT = re.compile(r"invalid input for query argument (\$\d+)")


@lru_cache(maxsize=2048)
def _plan(sql: str) -> tuple[str, bool, bool]:
    """The text with $n placeholders; whether it is a read; whether it controls a transaction."""
    return dialect.to_dollar(sql), dialect.is_read(sql), dialect.controls_transaction(sql)


def _flat(params: Iterable[Any]) -> Iterator[Any]:
    """The parameters, with the elements of an array parameter (a list) in its place."""
    for value in params:
        if isinstance(value, (list, tuple)):
            yield from value
        else:
            yield value


def _redacted(text: str, params: Iterable[Any]) -> str:
    """The text without any string parameter's value in it (an array's elements included)."""
    for value in _flat(params):
        shown = isinstance(value, str) and value and value in text
        if shown and (len(value) >= 4 or f'"{value}"' in text or f"'{value}'" in text):
            text = text.replace(value, "<value>")
    return text


def message(exc: BaseException, params: Iterable[Any] = ()) -> str:
    """What went wrong, in the server's words where it said something: no parameter values."""
    if isinstance(exc, pgerr.PostgresError):
        said = f"{getattr(exc, 'message', None) or exc} (SQLSTATE {exc.sqlstate})"
    elif isinstance(exc, pgbase.DataError):  # asyncpg's own: it quotes the value
        found = _ARGUMENT.search(str(exc))
        said = f"invalid input for query argument {found.group(1) if found else '?'}"
        said += f" (a {type_named(exc)} value where the server wants another type)"
    elif isinstance(exc, OSError) and exc.strerror:
        said = exc.strerror
    else:
        said = str(exc) or type(exc).__name__
    return _redacted(said, params)


def type_named(exc: BaseException) -> str:
    found = re.search(r"got type (\w+)|expected \w+, got (\w+)", str(exc))
    return next((g for g in found.groups() if g), "wrong") if found else "wrong"


def _lost(exc: BaseException, conn: Any) -> bool:
    """Whether the connection is gone (rather than the statement refused)."""
    if conn is None or conn.is_closed():
        return True
    if isinstance(exc, (OSError, pgerr.ConnectionDoesNotExistError, asyncio.TimeoutError)):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and (state.startswith("08") or state in LOST_STATES)


def _refuse_in_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise DbError(IN_LOOP)


class PgConn:
    """One connection to a PostgreSQL store; one thread at a time (the store's lock)."""

    def __init__(
        self,
        dsn: str,
        *,
        password: str | None,
        server_settings: Mapping[str, str],
        label: str,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
    ) -> None:
        """`dsn` holds no password (it is passed apart); `label` names the store in messages.
        With a command_timeout, a statement the store does not answer in time fails, and the
        connection is dropped (a partitioned network holds no thread for a quarter hour)."""
        self._dsn = dsn
        self._password = password
        self._settings = dict(server_settings)
        self._timeout = connect_timeout
        self._command_timeout = command_timeout
        self.label = label
        self._loop = asyncio.SelectorEventLoop()  # whatever the policy: measured the quickest here
        self._mutex = threading.Lock()
        self._conn: Any = None
        self._statements: OrderedDict[str, Any] = OrderedDict()
        self._tx_open = self._chained = False
        self._lost_tx: str | None = None
        self._committing = False

    def __repr__(self) -> str:
        return f"PgConn({self.label!r})"

    @classmethod
    def open(cls, dsn: str, **kwargs: Any) -> PgConn:
        """A PgConn connected now (DbError, with nothing left open, if it can't be)."""
        made = cls(dsn, **kwargs)
        try:
            with made._mutex:
                _refuse_in_loop()
                made._live()
        except BaseException:
            made.close()
            raise
        return made

    @property
    def dialect(self) -> Dialect:
        return "postgresql"

    @property
    def in_transaction(self) -> bool:
        return self._tx_open

    # -- the bridge -------------------------------------------------------------------

    async def _connect(self) -> Any:
        conn = await asyncpg.connect(
            self._dsn,
            password=self._password,
            server_settings=self._settings,
            timeout=self._timeout,
            command_timeout=self._command_timeout,
            statement_cache_size=0,  # statements are prepared and kept here
        )
        try:
            await conn.set_type_codec(
                "numeric", encoder=str, decoder=numeric, schema="pg_catalog", format="text"
            )
            if "search_path" in self._settings and await conn.fetchval(NO_SCHEMA):
                raise DbError(
                    f"the store's schema {self._settings['search_path']} does not exist in"
                    " its database; create it first (CREATE SCHEMA ... AUTHORIZATION ...)"
                )
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _live(self) -> Any:
        """The open connection; a lost one is reopened unless a transaction was on it."""
        if self._lost_tx is not None:
            raise DbError(self._lost_tx)
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        if self._tx_open:
            self._lost_tx = LOST_IN_TRANSACTION
            raise DbError(LOST_IN_TRANSACTION)
        self._drop()
        try:
            self._conn = self._loop.run_until_complete(self._connect())
        except DbError:
            raise
        except Exception as exc:
            raise DbError(f"cannot connect to the store {self.label}: {message(exc)}") from None
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._statements.clear()
        if conn is not None and not conn.is_closed():
            conn.terminate()

    def _call(self, work: Work[T], params: Sequence[Any], replay: Replay) -> T:
        """Run work(conn) to completion here. After a lost connection, "again" runs it once
        more on a new one (nothing can have happened: BEGIN), "read" once more in a READ ONLY
        transaction; "never" fails closed."""
        _refuse_in_loop()
        with self._mutex:
            conn = self._live()
            try:
                return self._loop.run_until_complete(work(conn))
            except Exception as exc:
                if not _lost(exc, conn):
                    raise self._refused(exc, params) from None
                self._drop()
                if self._tx_open:
                    self._lost_tx = COMMIT_UNKNOWN if self._committing else LOST_IN_TRANSACTION
                    raise DbError(self._lost_tx) from None
                if isinstance(exc, asyncio.TimeoutError):
                    raise DbError(f"the store did not answer within {self._command_timeout} s;"
                                  " the connection was dropped") from None  # fmt: skip
                if replay == "never":
                    raise DbError(WRITE_IN_DOUBT) from None
            except BaseException:
                self._interrupted()
                raise
            conn = self._live()
            try:
                again = work(conn) if replay == "again" else self._read_only(conn, work)
                return self._loop.run_until_complete(again)
            except Exception as exc:
                if _lost(exc, conn):
                    self._drop()
                raise self._refused(exc, params) from None
            except BaseException:
                self._interrupted()
                raise

    def _interrupted(self) -> None:
        """Interrupted mid-call (Ctrl-C): what the server did is unknown, so the connection
        goes, and a transaction on it stays failed until rolled back."""
        for task in asyncio.all_tasks(self._loop):
            task.cancel()  # it ends quietly on the next call
        self._drop()
        if self._tx_open and self._lost_tx is None:
            self._lost_tx = COMMIT_UNKNOWN if self._committing else LOST_IN_TRANSACTION

    @staticmethod
    async def _read_only(conn: Any, work: Work[T]) -> T:
        async with conn.transaction(readonly=True):
            return await work(conn)

    @staticmethod
    def _refused(exc: BaseException, params: Sequence[Any]) -> DbError:
        said = message(exc, params)
        if isinstance(exc, pgerr.UniqueViolationError):
            return Duplicate(said)
        return DbError(said)

    async def _statement(self, conn: Any, text: str) -> Any:
        stmt = self._statements.get(text)
        if stmt is None:
            stmt = await conn.prepare(text)
            self._statements[text] = stmt
            if len(self._statements) > STATEMENTS_KEPT:
                self._statements.popitem(last=False)
        else:
            self._statements.move_to_end(text)
        return stmt

    async def _fetch(self, conn: Any, text: str, args: tuple[Any, ...]) -> tuple[list[Any], str]:
        stmt = await self._statement(conn, text)
        try:
            rows = await stmt.fetch(*args)
        except pgerr.InvalidCachedStatementError:  # the schema changed under a kept statement
            self._statements.pop(text, None)
            if conn.is_in_transaction():
                raise
            stmt = await self._statement(conn, text)
            rows = await stmt.fetch(*args)
        return rows, stmt.get_statusmsg()

    async def _many(self, conn: Any, text: str, rows: list[tuple[Any, ...]]) -> None:
        stmt = await self._statement(conn, text)
        await stmt.executemany(rows)

    # -- Conn -------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> RowsResult:
        text, read, controls = _plan(sql)
        if controls:
            raise DbError("transactions are begun and ended by begin_write/begin_read/commit")
        args = tuple(params)
        rows, status = self._call(
            lambda conn: self._fetch(conn, text, args), args, "read" if read else "never"
        )
        return RowsResult(rows, rowcount(status))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        text, _, controls = _plan(sql)
        if controls:
            raise DbError("transactions are begun and ended by begin_write/begin_read/commit")
        batch = [tuple(row) for row in rows]
        if batch:
            flat = [value for row in batch[:10_000] for value in row]
            self._call(lambda conn: self._many(conn, text, batch), flat, "never")

    def run(self, work: Work[T]) -> T:
        """work(conn) on the asyncpg connection itself, inside the open transaction, for bulk
        work the Conn calls don't cover (COPY, a cursor, a script): never run again after a
        lost connection; its errors are DbError like every statement's."""
        return self._call(work, (), "never")

    def _simple(self, sql: str, replay: Replay = "never") -> str:
        status: str = self._call(lambda conn: conn.execute(sql), (), replay)
        return status

    def _begin(self, sql: str, chained: bool = False) -> None:
        if self._tx_open:
            raise DbError("a transaction is open already on this store connection")
        try:
            self._simple(sql, "again")
        except DbError:
            self._abandon()
            raise
        self._tx_open, self._chained = True, chained

    def _abandon(self) -> None:
        """Roll back whatever the server holds open (a BEGIN whose lock timed out)."""
        try:
            asyncio.get_running_loop()
            return  # refused before anything was sent
        except RuntimeError:
            pass
        with self._mutex:
            conn = self._conn
            if conn is None or conn.is_closed() or not conn.is_in_transaction():
                return
            try:
                self._loop.run_until_complete(conn.execute("ROLLBACK"))
            except Exception:
                self._drop()

    def begin_write(self, chained: bool = True) -> None:
        self._begin(BEGIN_WRITE if chained else BEGIN_UNCHAINED, chained)

    def lock_chain(self) -> None:
        if not self._tx_open:
            raise DbError("the chain lock is taken inside a write transaction")
        if not self._chained:
            self._simple(LOCK_CHAIN)
            self._chained = True

    def begin_read(self) -> None:
        self._begin(BEGIN_READ)

    def commit(self) -> None:
        if not self._tx_open:
            return
        self._committing = True
        try:
            status = self._simple("COMMIT")
        except DbError:
            conn = self._conn
            if self._lost_tx is None and conn is not None and not conn.is_in_transaction():
                self._tx_open = False  # the server ended it (a deferred check refused it)
            raise
        finally:
            self._committing = False
        self._tx_open = False
        if status.startswith("ROLLBACK"):
            raise DbError(ROLLED_BACK)

    def rollback(self) -> None:
        _refuse_in_loop()
        if not self._tx_open:
            return
        self._tx_open = False
        lost, self._lost_tx = self._lost_tx, None
        if lost is None:
            self._abandon()

    def table_exists(self, name: str) -> bool:
        row = self.execute(
            "SELECT to_regclass(format('%I.%I', current_schema(), ?::text)) IS NOT NULL", [name]
        ).fetchone()
        return bool(row is not None and row[0])

    def apply_migration(self, number: int, name: str, sql: str, applied_at: str) -> bool:
        """One migration in one transaction under the migration lock: the number is read
        again under the lock, so several processes migrating at once apply it exactly once."""
        if dialect.controls_transaction(sql):
            raise DbError(f"migration {name} begins or ends a transaction of its own")
        fresh = not self.table_exists("schema_migrations")
        self._begin(BEGIN_MIGRATION if fresh else BEGIN_UNCHAINED)
        try:
            if fresh:  # no table to lock yet: the advisory key, for the first migration only
                self._simple(MIGRATIONS_TABLE)
            self._simple(LOCK_MIGRATIONS)
            done = "SELECT 1 FROM schema_migrations WHERE number = ?"
            if self.execute(done, [number]).fetchone() is not None:
                self.rollback()
                return False
            self._simple(sql)
            self.execute(
                "INSERT INTO schema_migrations (number, name, applied_at) VALUES (?, ?, ?)",
                [number, name, applied_at],
            )
            self.commit()
        except BaseException:
            self.rollback()
            raise
        finally:
            self._statements.clear()  # kept statements may name what the migration changed
        return True

    def close(self) -> None:
        """Close the connection and the loop (from a thread with a loop: in a helper thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._close()
            return
        helper = threading.Thread(target=self._close, name="pgconn-close")
        helper.start()
        helper.join()

    def _close(self) -> None:
        with self._mutex:
            if self._loop.is_closed():
                return
            conn, self._conn = self._conn, None
            self._statements.clear()
            self._tx_open, self._lost_tx = False, None
            try:
                if conn is not None and not conn.is_closed():
                    self._loop.run_until_complete(self._close_quietly(conn))
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    @staticmethod
    async def _close_quietly(conn: Any) -> None:
        try:
            await asyncio.wait_for(conn.close(), 5)
        except Exception:
            conn.terminate()
        await asyncio.sleep(0)
