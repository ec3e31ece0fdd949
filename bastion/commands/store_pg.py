"""`bastion store backup` and `restore` for a store on PostgreSQL: pg_dump and pg_restore
driven for the store's schema, the restore chained as on SQLite.

A restore refuses while any bastion is connected to the database (pg_stat_activity names
every store and listening connection a node or a command holds) or any node's presence
lease has not expired. It never drops the store it replaces: that schema is renamed aside
(`<schema>_before_restore_<stamp>`), a new schema of the store's name made by the store's own
migrations (those the archive's store had), the archive's rows loaded into it as COPY data
(bastion/audit/pgload.py: nothing the archive defines runs), the later migrations applied,
the chain walked, the restore chained in it and the restorer's code proven there; any
failure drops the new schema and renames the old one back.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from bastion.audit import ChainKey, Store, pgbackup, pgload
from bastion.audit.cluster import node_lease
from bastion.audit.location import PgLocation
from bastion.commands.app import App
from bastion.commands.store import (
    Chained,
    chain_restore,
    outside_witnesses,
    refuse_unlike,
    replaced_head,
    report_restore,
)
from bastion.errors import Conflict, Exit, StoreError, UsageError
from bastion.text import printable_line

SETTLE_S = 3.0  # a command that just ended may still be listed by the server this long


def backup_pg(app: App, args: argparse.Namespace) -> int:
    """The live chain walked, then the store's schema dumped by pg_dump (custom format)."""
    where = app.config.store.location(app.config.path)
    verdict = app.store.walk()
    if not verdict.ok:
        raise StoreError(f"the store's audit chain does not verify ({verdict.problem}): not"
                         " backed up; run `bastion audit verify`")  # fmt: skip
    pgbackup.dump(where, args.to)
    data = {"backup": str(args.to), "events": verdict.checked, "head_seq": verdict.head_seq,
            "head_mac": verdict.head_hash, "format": "pg_dump custom"}  # fmt: skip
    app.emit(data, (
        f"backed up {where} to {args.to} (pg_dump): events 1 to at least {verdict.head_seq},"
        f" head {verdict.head_seq} {verdict.head_hash[:16]} when the dump began. The secrets"
        f" key ({app.config.paths.secrets_key}) is not in it: keep a copy of that"
        " apart"))  # fmt: skip
    return Exit.OK


def _alone(app: App, probe: Store, where: PgLocation) -> None:
    """Conflict while a bastion is connected to the database or a node's lease is live."""
    deadline = time.monotonic() + SETTLE_S
    while others := pgbackup.others_connected(probe.conn):
        if time.monotonic() >= deadline:
            named = printable_line(", ".join(sorted(set(others))), 200)  # names clients chose
            raise Conflict(
                f"a bastion is connected to {where} ({named}): stop"
                " every `bastion serve` (and wait for running commands) before restoring it"
            )
        time.sleep(0.1)  # a command that has just ended is gone in a moment
    try:
        store = Store(where, app.clock, ChainKey.of(app.box))
    except StoreError:
        return  # no schema: no node serves from it
    try:
        live = store.live_nodes()
        lease = store.lease(node_lease(live[0])) if live else None
    except StoreError:
        return  # no lease table: no node serves from it
    finally:
        store.close()
    if live:
        until = lease.expires_at.isoformat() if lease else "its lease ends"
        raise Conflict(
            f"node {live[0]} holds its presence on {where} until {until}: stop every"
            " `bastion serve` (a node killed without stopping counts until its lease ends)"
        )


def _aside_names(schema: str, stamp: str) -> tuple[str, str]:
    """The replaced store's schema while the restore runs, and once it is done."""
    names = (f"{pgbackup.restoring_prefix(schema)}{stamp}", f"{schema}_before_restore_{stamp}")
    if len(names[1]) > 63:
        raise UsageError(f"[store] schema {schema!r} is too long to keep a replaced copy beside")
    return names


def restore_pg(app: App, args: argparse.Namespace) -> int:
    """Put a pg_dump archive back as the store's schema, the restore chained; see the module."""
    if not args.backup.is_file():
        raise UsageError(f"{args.backup} is not a file")
    where = app.config.store.location(app.config.path)
    during, aside = _aside_names(where.schema, app.clock.now().strftime("%Y%m%dt%H%M%S"))
    probe = Store(pgbackup.admin_location(where), app.clock, ChainKey.of(app.box))
    try:
        _alone(app, probe, where)
        if left := pgbackup.restoring_schemas(probe.conn, where.schema):
            raise Conflict(f"schema {left[0]} is left by a restore that stopped half-way: drop"
                           f" schema {where.schema}, rename {left[0]} back to {where.schema},"
                           " then restore again")  # fmt: skip
        if pgbackup.schema_exists(probe.conn, aside):
            raise Conflict(f"schema {aside} exists (a restore in the same second): run it again")
        old = replaced_head(app, where)
        witnesses = ([old] if old else []) + outside_witnesses(app, args, _head_file(where))
        moved = pgbackup.schema_exists(probe.conn, where.schema)
        if moved:  # the replaced store, under a name every command refuses to start beside
            pgbackup.rename_schema(probe.conn, where.schema, during)
        else:  # no store to keep: the same name, empty, still keeps every command out
            pgbackup.create_schema(probe.conn, during)
        try:
            pgbackup.create_schema(probe.conn, where.schema)
            chained = _restore_into(app, args, where, witnesses, during if old else None)
        except BaseException:
            pgbackup.drop_schema(probe.conn, where.schema)
            _settle(probe, during, where.schema if moved else None)
            raise
        _settle(probe, during, aside if moved else None)
    finally:
        probe.close()
    kept_at = f"schema {aside}" if moved else "nowhere (there was no schema)"
    report_restore(app, str(where), args, chained, witnesses=witnesses, aside=kept_at)
    return Exit.OK


def _settle(probe: Store, during: str, to: str | None) -> None:
    """The replaced store's schema renamed `to` its lasting name, or the empty marker dropped."""
    if to is None:
        pgbackup.drop_schema(probe.conn, during)
    else:
        pgbackup.rename_schema(probe.conn, during, to)


def _head_file(where: PgLocation) -> Path:
    if where.head_file is None:
        raise StoreError(f"the store at {where} needs a head file ([store] head_file)")
    return where.head_file


def _restore_into(app: App, args: argparse.Namespace, where: PgLocation,
                  witnesses: list[dict[str, Any]], aside: str | None) -> Chained:  # fmt: skip
    """The archive's rows loaded into the new, empty schema of the store's name (made by the
    migrations it had), brought up to date by the later ones, walked, chained and proven."""
    pgload.load(where, args.backup, node="restore")
    old = None if aside is None else _located(where, aside)
    copy = Store.open(where, app.clock, ChainKey.of(app.box))  # the later migrations
    try:
        return chain_restore(
            app,
            copy,
            args,
            witnesses=witnesses,
            old=old,
            as_migrated=lambda: _as_migrated(app, args.backup, where, copy),
        )
    finally:
        copy.close()


def _as_migrated(app: App, backup: Path, where: PgLocation, copy: Store) -> None:
    """UsageError unless the restored schema's shape and code (functions, triggers, views,
    constraints, indexes, columns) are exactly what the store's own migrations make, as a
    scratch schema made by them beside it shows: an archive brings rows back, never code
    (a view that grants more, a trigger left out or added, a function that notifies no
    decision would pass `audit verify`, which checks rows)."""
    url, password, _schema, _head = where.handoff()
    scratch = f"bastion_reference_{secrets.token_hex(6)}"
    pgbackup.create_schema(copy.conn, scratch)
    try:
        with tempfile.TemporaryDirectory(prefix="bastion-ref-") as folder:  # never written
            at = PgLocation.handed(url, password, schema=scratch, head_file=Path(folder) / "h")
            made = Store.create(at, app.clock)
            try:
                wanted = pgbackup.shape(made.conn, scratch)
            finally:
                made.close()
    finally:
        pgbackup.drop_schema(copy.conn, scratch)
    refuse_unlike(backup, "the store's schema", pgbackup.shape(copy.conn, where.schema), wanted)


def _located(where: PgLocation, schema: str) -> PgLocation:
    """The same database, another schema (the replaced store, renamed aside); no head file
    of its own (it is only read)."""
    url, password, _schema, head = where.handoff()
    return PgLocation.handed(url, password, schema=schema, head_file=head)
