"""A read-only look at the store for `bastion doctor`: its schema version, its targets'
addresses and its clock, without migrating, creating or writing anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bastion.audit import guards
from bastion.audit.base import SQLITE_TRIGGERS, migrations
from bastion.audit.location import PgLocation
from bastion.audit.sqlconn import Conn, DbError, SqliteConn, one
from bastion.audit.storetime import NOW_SQL
from bastion.clock import parse_iso
from bastion.errors import StoreError

_TRIGGERS_SQL = (
    "SELECT c.relname, t.tgname, t.tgenabled::text FROM pg_trigger t JOIN pg_class c"
    " ON c.oid = t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace"
    " AND NOT t.tgisinternal"
)
_FUNCTIONS_SQL = (
    "SELECT proname, prosrc, proconfig FROM pg_proc"
    " WHERE pronamespace = current_schema()::regnamespace"
    " UNION ALL SELECT 'operator ' || oprname, '', NULL FROM pg_operator"
    " WHERE oprnamespace = current_schema()::regnamespace"
)


@dataclass(frozen=True)
class TargetAddress:
    """Where a target listens, as the store has it (no credential)."""

    name: str
    kind: str
    host: str
    port: int


class Peek:
    """One read-only connection to the store (SQLite opened `mode=ro`, never created, and
    with no -wal and -shm files made beside a store no connection has open)."""

    def __init__(self, where: Path | PgLocation, node: str) -> None:
        self.where = str(where)
        try:
            if isinstance(where, PgLocation):
                self.conn: Conn = where.connect(f"{node}-doctor", command_timeout=10)
            else:
                if not where.is_file():
                    raise StoreError(f"the store {where} does not exist")
                self.conn = SqliteConn.reader(where, untouched=True)  # run as root: no root files
        except DbError as exc:
            raise StoreError(f"cannot open the store {self.where}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    @property
    def on_postgresql(self) -> bool:
        return self.conn.dialect == "postgresql"

    def versions(self) -> tuple[int, int]:
        """(the store's schema version, the newest migration this bastion ships)."""
        shipped = max((number for number, _, _ in migrations(self.conn.dialect)), default=0)
        try:
            if not self.conn.table_exists("schema_migrations"):
                return 0, shipped
            row = one(self.conn.execute("SELECT max(number) FROM schema_migrations"))
        except DbError as exc:
            raise StoreError(f"cannot read the store {self.where}: {exc}") from exc
        return int(row[0] or 0), shipped

    def targets(self) -> list[TargetAddress]:
        """Every target not removed, by name."""
        sql = "SELECT name, kind, host, port FROM targets WHERE removed_at IS NULL ORDER BY name"
        try:
            rows = self.conn.execute(sql).fetchall()
        except DbError as exc:
            raise StoreError(f"cannot read the store's targets: {exc}") from exc
        return [TargetAddress(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def database_time(self) -> datetime | None:
        """The PostgreSQL server's clock now; None on SQLite (it is this host's own)."""
        if not self.on_postgresql:
            return None
        try:
            return parse_iso(str(one(self.conn.execute(f"SELECT {NOW_SQL} AS now"))[0]))
        except DbError as exc:
            raise StoreError(f"cannot read the store's clock: {exc}") from exc

    def guard_problems(self) -> list[str]:
        """How the store's append-only guards differ from what the migrations make: a trigger
        dropped, disabled or replaced, a function replaced or unpinned, one added (on SQLite,
        its triggers)."""
        try:
            if not self.on_postgresql:
                rows = self.conn.execute(SQLITE_TRIGGERS).fetchall()
                return guards.sqlite_problems((str(r[0]), str(r[1])) for r in rows)
            schema = str(one(self.conn.execute("SELECT current_schema()"))[0])
            triggers = [(str(r[0]), str(r[1]), str(r[2]))
                        for r in self.conn.execute(_TRIGGERS_SQL).fetchall()]  # fmt: skip
            functions = [(str(r[0]), str(r[1]), list(r[2]) if r[2] is not None else None)
                         for r in self.conn.execute(_FUNCTIONS_SQL).fetchall()]  # fmt: skip
        except DbError as exc:
            raise StoreError(f"cannot read the store's guards: {exc}") from exc
        return guards.problems(schema, triggers, functions)
