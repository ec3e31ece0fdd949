"""A standalone SQLite file of plain typed tables (a report's evidence), written once, whole.

Not the store: a new file for people to open in Datasette or sqlite3. It is written to a
temporary name beside the target (no journal, synced once when whole) and renamed over it,
so a reader never sees half a file and an old file at the path is replaced, not appended
to. Tables are created with their types, primary keys and foreign keys declared (Datasette
links rows through them), then filled in the order given; the file has no -wal or
-journal beside it to carry along, and is vacuumed so the same tables give the same bytes.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

Value = str | int | float | bool | None

_TYPES = {"text": str, "integer": int, "number": float, "boolean": bool}


@dataclass(frozen=True)
class PlainTable:
    """One table: its name, (column, type) pairs, rows, and the keys Datasette follows.

    Types are "text", "integer", "number" or "boolean"; foreign keys are
    (column, other table, other column), and the other table comes earlier in the file.
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    rows: Sequence[Sequence[Value]]
    pk: str | None = None
    foreign_keys: tuple[tuple[str, str, str], ...] = ()


def write_tables(path: Path, tables: Sequence[PlainTable]) -> None:
    """Write `tables` as a new SQLite file at `path`, replacing any file there."""
    path = Path(path)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(scratch)) as conn:
            # A scratch file: no journal and no syncing while it is built, one sync at the end.
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            db = _sqlite_utils().Database(conn)
            for table in tables:
                _create(db, table)
            conn.commit()
            conn.execute("VACUUM")
        _sync(scratch)
        os.replace(scratch, path)
        _sync(path.parent)
    finally:
        scratch.unlink(missing_ok=True)


def _sqlite_utils() -> ModuleType:
    """sqlite_utils, imported without pandas and numpy: it imports them when installed, for
    DataFrame and array values never handed to it, at a third of a second's cost. `import
    pandas` and `import numpy` fail for that import only; later importers get them as usual."""
    if "sqlite_utils" not in sys.modules:
        blocked = [name for name in ("pandas", "numpy") if name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]  # import fails: ImportError
        try:
            import sqlite_utils  # noqa: F401, PLC0415
        finally:
            for name in blocked:
                del sys.modules[name]
    return sys.modules["sqlite_utils"]


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _bindable(value: Value) -> Value:
    """A value SQLite can store: text UTF-8 cannot encode (lone surrogates) as its escapes."""
    if isinstance(value, str) and not value.isascii():
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create(db: sqlite_utils.Database, table: PlainTable) -> None:
    """Create the table with sqlite-utils (types, keys); fill it in one executemany."""
    names = [name for name, _ in table.columns]
    db[table.name].create(  # type: ignore[union-attr]
        {name: _TYPES[kind] for name, kind in table.columns},
        pk=table.pk,
        foreign_keys=list(table.foreign_keys),
        column_order=names,
    )
    marks = ", ".join("?" for _ in names)
    columns = ", ".join(_quote(name) for name in names)
    db.conn.executemany(
        f"INSERT INTO {_quote(table.name)} ({columns}) VALUES ({marks})",
        (tuple(_bindable(value) for value in row) for row in table.rows),
    )
