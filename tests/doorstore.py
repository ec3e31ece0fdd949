"""Where a door or CLI test's bastion keeps its store: the SQLite file, or a fresh PostgreSQL one.

A test module marked `pytestmark = pytest.mark.both_stores` runs each of its tests twice,
`[sqlite]` and `[postgresql]` (conftest parametrises the autouse `door_store` fixture); every
bastion home made during a `[postgresql]` run (tests/harness.py, the console's `running`, the
CLI's `bst`) puts its store in a database of its own cloned from the worker's template
(tests/storeat.py), names it in its bastion.toml's [store] section (so `bastion` commands run
by the test use it too) and, as `serve` on PostgreSQL requires, an anchor file. Every other
module keeps the SQLite file, as before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bastion.audit.location import PgLocation
from tests.storeat import StoreTemplate

MARK = "both_stores"


class StorePlaces:
    """Gives each new bastion home its store's place and the config lines naming it."""

    def __init__(self, template: StoreTemplate | None = None) -> None:
        self._template = template
        self._databases: list[str] = []

    @property
    def backend(self) -> str:
        return "sqlite" if self._template is None else "postgresql"

    def place(self, home: Path, sqlite_file: Path) -> Path | PgLocation:
        """The SQLite file as configured, or a fresh database whose password file and head
        file are in `home` (a bastion's own directory)."""
        if self._template is None:
            return sqlite_file
        database = self._template.fresh()
        self._databases.append(database)
        return self._template.location(database, home)

    @staticmethod
    def configure(text: str, where: Path | PgLocation, home: Path) -> str:
        """bastion.toml's `text` with the store at `where` named in it (unchanged for the
        SQLite file): a [store] section, and an anchor file in [audit] (its own or one added)."""
        if not isinstance(where, PgLocation):
            return text
        anchors = f'anchors = ["file:{home / "anchors.log"}"]\n'
        if "\n[audit]\n" in f"\n{text}":
            text = f"\n{text}".replace("\n[audit]\n", f"\n[audit]\n{anchors}", 1)[1:]
        else:
            text += f"\n[audit]\n{anchors}"
        return text + (
            f'\n[store]\nurl = "{where.url}"\npassword_file = "{where.password_file}"\n'
            f'head_file = "{where.head_file}"\n'
        )

    def close(self) -> None:
        """Drop every database handed out (connections still open to one are ended)."""
        if self._template is not None:
            for database in self._databases:
                self._template.cluster.drop_database(database)
        self._databases.clear()


SQLITE = StorePlaces()
_current = SQLITE


def current() -> StorePlaces:
    """Where the running test's new bastions keep their stores."""
    return _current


def use(places: StorePlaces) -> None:
    global _current  # noqa: PLW0603 - one test at a time per process
    _current = places


class OffLoop:
    """A store whose every call runs on a thread of its own, waited for: a test's async code
    calls it as before (the PostgreSQL adapter refuses a call from a thread running an event
    loop, as the product's code never makes one; the test's waiting blocks its loop briefly)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="test-store")

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._pool.submit(found, *args, **kwargs).result()

        return call

    def shutdown(self) -> None:
        self._pool.shutdown()
