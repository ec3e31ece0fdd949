"""`bastion store copy --to postgresql://...`: the SQLite store moved to PostgreSQL, chain intact.

The SQLite store is held alone (no `serve`, no other command meanwhile) and checked first as
`audit verify` checks it: a chain, head file, anchor, review pack or query log that
disagrees stops the copy before anything is written (a tampered store is not carried into
a new home where it would look clean). The copy goes into an empty schema, all or nothing
(bastion/audit/copying.py); then each side chains what happened (`store.moved` in the
SQLite store, `store.copied_from` in the new one, which writes its head file), and the
summary says what to change in the config.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bastion import storelock
from bastion.audit import ChainKey, Event, Store
from bastion.audit.base import MOVED_KIND
from bastion.audit.chain import Verdict
from bastion.audit.location import PgLocation
from bastion.audit.restores import restore_problems
from bastion.cli_common import Parser, command, json_flag
from bastion.commands.app import App
from bastion.commands.audit import anchor_files, anchor_problems, pack_problems, query_log_problems
from bastion.commands.audit_retention import checkpoint_problems
from bastion.errors import BastionError, Exit, StoreError, UsageError
from bastion.progress import quiet, terminal_progress


class SourceTampered(BastionError):
    """The store to copy does not verify: nothing is copied."""

    exit_code = Exit.TAMPERED


def _verified(app: App, args: argparse.Namespace) -> Verdict:
    """The source's chain verdict, once every check `audit verify` makes on the store passes
    (recordings aside: they stay where they are)."""
    store = app.store
    verdict = store.verify_chain()
    if not verdict.ok:
        raise SourceTampered(f"the store to copy does not verify, nothing was copied:"
                             f" {verdict.problem}")  # fmt: skip
    restores = store.restores(verdict.head_seq)
    files = anchor_files(app, args)
    point, point_bad = checkpoint_problems(app)  # retention: the chain starts after it
    since = point.seq if point else 0
    _, anchor_bad = anchor_problems(app, files, verdict.head_seq, restores, since)
    if app.config.audit.anchors and not files:  # as verify: unseen anchors are no pass
        anchor_bad.append("[audit] anchors has no file this command can read: pass --anchors")
    _, pack_bad = pack_problems(app, verdict.head_seq, restores, since)
    problems = point_bad + restore_problems(restores, store.mac_at) + pack_bad + anchor_bad
    problems += query_log_problems(app)
    if index_bad := store.index_problem():
        problems.append(index_bad)
    if problems:
        raise SourceTampered(f"the store to copy does not verify, nothing was copied:"
                             f" {'; '.join(problems)}")  # fmt: skip
    return verdict


def _target(app: App, args: argparse.Namespace) -> PgLocation:
    config = app.config
    if config.store.on_postgresql:
        raise UsageError("the store is on PostgreSQL already ([store] url); `store copy` moves"
                         " the SQLite store (paths.store) there")  # fmt: skip
    head_file = args.head_file or config.path.parent / Path(config.store.head_file).expanduser()
    return PgLocation(args.to, password_file=args.password_file, schema=args.schema,
                      head_file=head_file, source="--to")  # fmt: skip


def store_copy(app: App, args: argparse.Namespace) -> int:
    """Copy the SQLite store into an empty PostgreSQL schema; see the module."""
    target = _target(app, args)
    config = app.config
    node = config.cluster.node_name()
    key = ChainKey.of(app.box)
    progress = quiet if app.as_json else terminal_progress()
    with storelock.alone(config.paths.store, "copying it"):
        source = Store.open(config.paths.store, app.clock, key, node=node)
        app.__dict__["store"] = source  # held alone here; App's own shared lock would refuse
        try:
            verdict = _verified(app, args)
            from bastion.audit.copying import copy_store  # noqa: PLC0415 - asyncpg, PostgreSQL only

            head = (verdict.head_seq, verdict.head_hash)
            copied = copy_store(source, target, key, head, node=node, progress=progress)
            detail: dict[str, Any] = {"head_seq": copied.head_seq, "head_mac": copied.head_mac,
                                      "rows": copied.tables}  # fmt: skip
            _chain_both(app, source, target, detail)
        finally:
            source.close()
    data = {"from": str(config.paths.store), "to": str(target), "tables": copied.tables,
            "rows": sum(copied.tables.values()), "head_seq": copied.head_seq,
            "head_mac": copied.head_mac, "schema_version": copied.schema_version,
            "nul_escaped": copied.escaped, "head_file": str(target.head_file)}  # fmt: skip
    app.emit(data, _summary(app, args, target, copied))
    return Exit.OK


def _chain_both(app: App, source: Store, target: PgLocation, detail: dict[str, Any]) -> None:
    """`store.copied_from` as the new store's next event (its head file is written), then
    `store.moved` in the SQLite store, which then takes no more writes."""
    node = app.config.cluster.node_name()
    try:
        copy = Store.open(target, app.clock, ChainKey.of(app.box), node=node)
        try:
            origin = str(app.config.paths.store)
            copy.append_events([Event("store.copied_from", app.actor, origin, "notice", None,
                                      detail)])  # fmt: skip
        finally:
            copy.close()
    except StoreError as exc:
        raise StoreError(
            f"the copy to {target} is committed (head {detail['head_seq']}), but chaining it"
            f" there failed ({exc.message}); its head file {target.head_file} may be missing:"
            " the next write there writes it, then `bastion audit verify`"
        ) from exc
    try:
        source.append_events([Event(MOVED_KIND, app.actor, str(target), "notice", None,
                                    detail)])  # fmt: skip
    except StoreError as exc:  # the copy is made; the old store only lacks the note
        app.out.write(f"note: the SQLite store did not record the copy: {exc.message}\n")


def _summary(app: App, args: argparse.Namespace, target: PgLocation, copied: Any) -> str:
    rows = ", ".join(f"{name} {count}" for name, count in copied.tables.items() if count)
    config_dir = app.config.path.parent
    password = (
        f'password_file = "{os.path.relpath(args.password_file, config_dir)}"\n'
        if args.password_file
        else ""
    )
    schema = f'schema = "{target.schema}"\n' if target.schema != "public" else ""
    lines = [
        f"copied {app.config.paths.store} to {target}: {sum(copied.tables.values())} rows in"
        f" {len(copied.tables)} tables (schema {copied.schema_version}); chain head"
        f" {copied.head_seq} {copied.head_mac[:16]}, then store.copied_from chained there",
        f"rows: {rows}",
        *([f"{copied.escaped} value(s) with a raw NUL stored escaped"] if copied.escaped else []),
        f"head file: {target.head_file}",
        f"next: put this in {app.config.path}, then run `bastion audit verify`:",
        f'[store]\nurl = "{target.url}"\n{password}{schema}'
        f'head_file = "{os.path.relpath(target.head_file or "", config_dir)}"',
        "and add a file or syslog sink to [audit] anchors (serve needs one on PostgreSQL).",
        f"The SQLite store {app.config.paths.store} records the move and takes no more writes;"
        " keep it (read-only) until the copy serves.",
    ]
    return "\n".join(lines)


def add_copy_command(cmds: argparse._SubParsersAction[Parser]) -> None:
    copy = command(cmds, "copy", store_copy, "copy the SQLite store to PostgreSQL, chain intact")
    copy.add_argument("--to", required=True, metavar="URL",
                      help="postgresql://ROLE@HOST/DB: an empty schema, no password")  # fmt: skip
    copy.add_argument("--password-file", type=Path, metavar="FILE",
                      help="the role's password, first line, mode 0600")  # fmt: skip
    copy.add_argument("--schema", default="public", help="the empty schema (default public)")
    copy.add_argument("--head-file", type=Path, metavar="FILE",
                      help="the new store's head file (default: [store] head_file)")  # fmt: skip
    copy.add_argument("--anchors", type=Path, nargs="+", metavar="FILE",
                      help="anchors checked first (default: the file sinks)")  # fmt: skip
    json_flag(copy)
