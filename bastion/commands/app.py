"""The objects a CLI command works with, opened lazily from the configuration."""

from __future__ import annotations

import getpass
import json
import os
import sys
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bastion import storelock
from bastion.access.grants import Access
from bastion.access.tickets import Tickets
from bastion.access.viewing import Viewer
from bastion.audit import ChainKey, Store, pgbackup
from bastion.audit.location import PgLocation
from bastion.clock import Clock, SystemClock
from bastion.config import Config, load_config
from bastion.errors import StoreError, UsageError
from bastion.identity.sealing import SecretBox
from bastion.identity.service import Identity

if TYPE_CHECKING:
    from bastion.recording.fetch import Fetcher

CONFIG_ENV = "BASTION_CONFIG"


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or "bastion.toml")


def cli_actor() -> str:
    """Who is behind a CLI command: the operating-system account running it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


@dataclass
class App:
    config_path: Path
    as_json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    clock: Clock = field(default_factory=SystemClock)

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @cached_property
    def store(self) -> Store:
        config = self.config
        where = config.store.where(config.path, config.paths.store)
        if isinstance(where, Path):  # an embedded store: a restore waits for this command
            held = storelock.using(where)
            if held is not None:
                weakref.finalize(self, os.close, held)
            if problem := storelock.leftovers(where):
                raise StoreError(problem)
            return Store.open(where, self.clock, ChainKey.of(self.box),
                              node=config.cluster.node_name())  # fmt: skip
        return _pg_store(where, self.clock, ChainKey.of(self.box), config.cluster.node_name())

    @cached_property
    def box(self) -> SecretBox:
        return SecretBox.load(self.config.paths.secrets_key)

    @cached_property
    def fetcher(self) -> Fetcher:
        """Recordings from the spool, or from the object store ([recordings] url)."""
        from bastion.recording.fetch import Fetcher  # noqa: PLC0415 - boto3 only when needed

        return Fetcher(self.config)

    @cached_property
    def identity(self) -> Identity:
        return Identity(self.store, self.box, self.clock, self.config.totp, self.config.lockout)

    @cached_property
    def access(self) -> Access:
        return Access(self.store, self.config, self.clock)

    @cached_property
    def tickets(self) -> Tickets:
        return Tickets(self.store, self.config, self.clock, self.access, self.identity)

    @property
    def actor(self) -> str:
        return cli_actor()

    @property
    def viewer(self) -> Viewer:
        """Who reads through the CLI: the host's operator, who sees every session and log."""
        return Viewer.operator(self.actor)

    def emit(self, data: Any, text: str) -> None:
        """Print JSON when --json was given, else the human text."""
        if self.as_json:
            self.out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        elif text:
            self.out.write(text if text.endswith("\n") else text + "\n")

    def table(self, rows: list[dict[str, Any]], columns: list[str], empty: str) -> None:
        """A listing: JSON array with --json, else aligned columns."""
        if self.as_json:
            self.emit(rows, "")
            return
        if not rows:
            self.out.write(empty + "\n")
            return
        cells = [[_cell(r.get(c)) for c in columns] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        self.out.write(
            "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
            + "\n"
        )
        for row in cells:
            self.out.write(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
            )


def _pg_store(where: PgLocation, clock: Clock, key: ChainKey, node: str) -> Store:
    """The store on PostgreSQL, refused while a restore that stopped half-way left its
    replaced schema (`<schema>_restoring_*`) beside it."""
    try:
        store = Store.open(where, clock, key, node=node)
    except StoreError:
        probe = Store(pgbackup.admin_location(where), clock, key, node)
        try:
            left = pgbackup.restoring_schemas(probe.conn, where.schema)
        finally:
            probe.close()
        if left:
            raise StoreError(_half_restored(where, left[0])) from None
        raise
    left = pgbackup.restoring_schemas(store.conn, where.schema)
    if left:
        store.close()
        raise StoreError(_half_restored(where, left[0]))
    return store


def _half_restored(where: PgLocation, left: str) -> str:
    return (
        f"schema {left} is there: a `bastion store restore` is running, or stopped half-way"
        f" (then {left} is the store it replaced: drop schema {where.schema}, rename {left}"
        f" back to {where.schema}, or drop it if it is empty, then restore again)"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def read_secret_line(what: str) -> str:
    """One line from standard input, for --password-stdin; never echoed, never logged."""
    line = sys.stdin.readline()
    value = line.rstrip("\r\n")
    if not value:
        raise UsageError(f"--password-stdin: no {what} on standard input")
    return value


def proven(app: App, name: str | None, role: str = "decides") -> str:
    """The bastion user behind a decision or a filing, proven by their TOTP code (asked for on
    the terminal, or read as one line from standard input); never the OS account alone."""
    if not name:
        raise UsageError(f"say who {role} with --as NAME; their TOTP code is asked for")
    if sys.stdin.isatty():
        code = getpass.getpass(f"{name}'s verification code: ")
    else:
        code = sys.stdin.readline().strip()
    app.identity.require_totp(name, code, app.actor)
    return name


def actor_of(app: App, args: Any) -> str:
    """Who a one-person decision is recorded as: the person proven with --as NAME when given
    (their TOTP code is asked for), else the OS account running the command."""
    name = getattr(args, "as_user", None)
    return proven(app, name) if name else app.actor
