"""`bastion store backup` and `bastion store restore`: a consistent copy, and putting one back.

A restore never deletes: the store it replaces is moved aside beside it. The restored copy's
chain is walked before anything changes, the restore is chained as the first event after the
backup's head (naming the furthest event any witness saw, so the loss stays visible), and the
admin who restores proves a TOTP code held in the restored copy.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion import storelock
from bastion.access.restoring import may_restore
from bastion.audit import ChainKey, Event, Store
from bastion.audit.anchors import anchor_key, read_anchors
from bastion.audit.chain import ChainedEvent, read_head_file
from bastion.audit.location import PgLocation
from bastion.audit.restores import UNDONE_SHOWN
from bastion.audit.shapes import sqlite_shape
from bastion.cli_common import Parser, command, json_flag
from bastion.clock import SystemClock
from bastion.commands.app import App
from bastion.commands.audit import anchor_files
from bastion.commands.storecopy import add_copy_command
from bastion.errors import Conflict, Exit, StoreError, UsageError
from bastion.identity.service import Identity
from bastion.reports import pack
from bastion.reports.signing import ReportKeyError, load_private_key
from bastion.text import printable_line

Chained = tuple[ChainedEvent, int, list[dict[str, Any]]]  # the restore event, lost_seq, undone
SIDECARS = ("", "-wal", "-shm", ".head")  # the files an embedded store is made of


def store_create(app: App, args: argparse.Namespace) -> int:
    """Make the configured store: the tables in an empty PostgreSQL schema ([store] url), or
    the SQLite file; refuses one that exists."""
    config = app.config
    where = config.store.where(config.path, config.paths.store)
    store = Store.create(where, app.clock, ChainKey.of(app.box), node=config.cluster.node_name())
    try:
        event = Event("store.created", app.actor, store.where, "notice")
        store.append_events([event])
        version = store.schema_version()
    finally:
        store.close()
    app.emit({"store": store.where, "schema_version": version},
             f"created the store {store.where} (schema {version})")  # fmt: skip
    return Exit.OK


def store_backup(app: App, args: argparse.Namespace) -> int:
    """Copy the store, consistently even while bastions serve from it, and walk the copy."""
    dest: Path = args.to
    if app.config.store.on_postgresql:
        from bastion.commands.store_pg import backup_pg  # noqa: PLC0415

        return backup_pg(app, args)
    app.store.backup_to(dest)
    copy = Store.open(dest, app.clock, ChainKey.of(app.box))
    try:
        verdict = copy.walk()
    finally:
        copy.close()
    for sidecar in SIDECARS[1:]:  # the copy is one file: nothing beside it to lose
        Path(f"{dest}{sidecar}").unlink(missing_ok=True)
    if not verdict.ok:
        dest.unlink()
        raise StoreError(f"the copy's audit chain does not verify ({verdict.problem}); removed")
    data = {"backup": str(dest), "events": verdict.checked, "head_seq": verdict.head_seq,
            "head_mac": verdict.head_hash}  # fmt: skip
    app.emit(data, (
        f"backed up {app.config.paths.store} to {dest}: {verdict.checked} events, head"
        f" {verdict.head_seq} {verdict.head_hash[:16]}. The secrets key"
        f" ({app.config.paths.secrets_key}) is not in it: keep a copy of that apart"))  # fmt: skip
    return Exit.OK


def outside_witnesses(app: App, args: argparse.Namespace, head_file: Path) -> list[dict[str, Any]]:
    """The heads recorded outside the store: its head file, the anchors files and the review
    packs. Read before anything changes."""
    found: list[dict[str, Any]] = []
    head = read_head_file(head_file)
    if head is not None:
        found.append({"where": "its head file", "seq": head[0]})
    key = anchor_key(app.box)
    for path in anchor_files(app, args):
        anchors, _ = read_anchors(path, key)
        if anchors:
            found.append({"where": f"anchors in {path}", "seq": max(a.seq for a in anchors)})
    try:
        public = load_private_key(app.config.paths.report_signing_key).public_key()
        good, _ = pack.signed_heads(app.config.paths.reports, public)
    except ReportKeyError:
        good = []
    for directory, manifest in good:
        found.append({"where": f"review pack {directory.name}", "seq": manifest.chain_end.seq})
    return found


def replaced_head(app: App, where: Path | PgLocation) -> dict[str, Any] | None:
    """The head of the store being replaced, when it can still be read."""
    try:
        old = Store(where, app.clock, ChainKey.of(app.box))
        try:
            return {"where": "the store replaced", "seq": old.chain_head()[0]}
        finally:
            old.close()
    except StoreError:
        return None  # a store too damaged to read witnesses nothing


def undone_by(app: App, where: Path | PgLocation, kept: int) -> list[dict[str, Any]]:
    """The decisions in the replaced store after the backup's head (a restore undoes them),
    or [] when it cannot be read."""
    try:
        old = Store(where, app.clock, ChainKey.of(app.box))
        try:
            return old.undone_after(kept)
        finally:
            old.close()
    except StoreError:
        return []


def _witnesses(app: App, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every head recorded outside the backup: the store being replaced, and the others."""
    store_path = app.config.paths.store
    old = replaced_head(app, store_path) if store_path.is_file() else None
    head_file = store_path.with_name(store_path.name + ".head")
    return ([old] if old else []) + outside_witnesses(app, args, head_file)


def chain_restore(app: App, copy: Store, args: argparse.Namespace, *,
                  witnesses: list[dict[str, Any]], old: Path | PgLocation | None,
                  as_migrated: Callable[[], None]) -> Chained:  # fmt: skip
    """The restored copy walked, its shape checked (`as_migrated`), the restore chained in it
    (with the decisions it undoes, read from the replaced store `old`), and the restorer's
    code proven there."""
    verdict = copy.walk()
    if not verdict.ok:
        raise StoreError(f"the backup's audit chain does not verify: {verdict.problem}")
    as_migrated()
    lost = max((w["seq"] for w in witnesses), default=0)
    undone = undone_by(app, old, verdict.head_seq) if old is not None else []
    extra = {"witnesses": witnesses, "undone": undone[:UNDONE_SHOWN],
             "undone_count": len(undone)}  # fmt: skip
    event = copy.record_restore(args.as_user, args.backup.name, args.reason, lost, extra)
    _prove(app, copy, args.as_user)
    return event, lost, undone


def report_restore(app: App, where: str, args: argparse.Namespace, chained: Chained, *,
                   witnesses: list[dict[str, Any]], aside: str) -> None:  # fmt: skip
    """What a restore says: what the chain keeps, what is lost, which decisions to redo."""
    event, lost, undone = chained
    kept = event.seq - 1
    data = {"restored": where, "from": str(args.backup), "kept_seq": kept,
            "lost_seq": max(lost, kept), "restore_seq": event.seq, "moved_aside": aside,
            "witnesses": witnesses, "undone": undone}  # fmt: skip
    gone = (
        f"events {kept + 1} to {lost} are lost" if lost > kept else "no witness saw a later event"
    )
    lines = [f"restored {where} from {args.backup}: the chain keeps events 1 to {kept};"
             f" {gone}; the restore is event {event.seq}. The replaced store is kept at"
             f" {aside}"]  # fmt: skip
    if undone:
        lines.append(f"{len(undone)} decision(s) made after the backup are undone by this"
                     " restore; redo each of them now:")  # fmt: skip
        lines += [f"  event {u['seq']} at {u['at']}: {u['kind']} {printable_line(u['subject'])}"
                  f" (by {printable_line(u['actor'])})" for u in undone]  # fmt: skip
    app.emit(data, "\n".join(lines))


def _copy_in(backup: Path, dest: Path) -> None:
    """The backup, copied byte for byte into a new private file beside the store."""
    if not backup.is_file():
        raise UsageError(f"{backup} is not a file")
    if Path(f"{backup}-wal").exists():
        raise UsageError(f"{backup} has a write-ahead log beside it: it is an open store, not"
                         " a backup (make one with `bastion store backup --to FILE`)")  # fmt: skip
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError as exc:
        raise Conflict(f"{dest} exists: an earlier restore stopped half-way; remove it") from exc
    with os.fdopen(fd, "wb") as out, backup.open("rb") as source:
        shutil.copyfileobj(source, out)
        out.flush()
        os.fsync(out.fileno())


def _discard(path: Path) -> None:
    for sidecar in SIDECARS:
        Path(f"{path}{sidecar}").unlink(missing_ok=True)


def _swap(store_path: Path, restoring: Path, stamp: str) -> Path:
    """Move the store aside (every file of it) and the restored copy into its place."""
    aside = store_path.with_name(f"{store_path.name}.before-restore-{stamp}")
    if any(os.path.lexists(f"{aside}{sidecar}") for sidecar in SIDECARS):  # never over it
        raise Conflict(f"{aside} exists (a restore in the same second): run this one again")
    for sidecar in SIDECARS:
        if Path(f"{store_path}{sidecar}").exists():
            os.rename(f"{store_path}{sidecar}", f"{aside}{sidecar}")
    for sidecar in SIDECARS:
        if Path(f"{restoring}{sidecar}").exists():
            os.rename(f"{restoring}{sidecar}", f"{store_path}{sidecar}")
    directory = os.open(store_path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return aside


def _as_migrated(backup: Path, copy: Store) -> None:
    """UsageError unless the restored copy's tables, indexes, views and triggers are exactly
    what the store's own migrations make (a fresh store made by them shows it): a backup
    brings rows back, never code (a view that grants more, a trigger or an index left out
    would pass `audit verify`, which checks rows). PostgreSQL: store_pg._as_migrated."""
    with tempfile.TemporaryDirectory(prefix="bastion-ref-") as folder:
        made = Store.create(Path(folder) / "reference.db", SystemClock())
        try:
            wanted = sqlite_shape(made.conn)
        finally:
            made.close()
    refuse_unlike(backup, "the store", sqlite_shape(copy.conn), wanted)


def refuse_unlike(backup: Path, held: str, found: set[Any], wanted: set[Any]) -> None:
    """UsageError naming the first difference between the restored copy's shape (`found`:
    (kind, name, definition) rows) and the one the migrations make (`wanted`), if any."""
    if differ := sorted(found ^ wanted):
        kind, name, _definition = differ[0]
        named = f"the {kind} {printable_line(name, 80)}"
        what = f"{named} is not theirs" if differ[0] in found else f"it lacks {named} as theirs"
        raise UsageError(
            f"{backup} does not hold {held} as the store's migrations make it: {what}"
            f" ({len(differ)} difference(s) in all); nothing was restored"
        )


def _prove(app: App, store: Store, name: str) -> None:
    """The admin restoring proves a code held in the restored copy (their TOTP step is used
    there, after the restore event)."""
    if sys.stdin.isatty():
        code = getpass.getpass(f"{name}'s verification code: ")
    else:
        code = sys.stdin.readline().strip()
    identity = Identity(store, app.box, app.clock, app.config.totp, app.config.lockout)
    may_restore(identity.require_totp(name, code, app.actor))


def store_restore(app: App, args: argparse.Namespace) -> int:
    """Put a backup back in the store's place, with the restore chained; see the module."""
    args.reason = " ".join(args.reason.split())
    if not args.reason:
        raise UsageError("--reason: say why the store is restored")
    if app.config.store.on_postgresql:
        from bastion.commands.store_pg import restore_pg  # noqa: PLC0415

        return restore_pg(app, args)
    store_path: Path = app.config.paths.store
    restoring = store_path.with_name(store_path.name + ".restoring")
    with storelock.alone(store_path, "restoring it"):
        witnesses = _witnesses(app, args)
        _copy_in(args.backup, restoring)
        try:
            copy = Store.open(restoring, app.clock, ChainKey.of(app.box))
            try:
                old = store_path if store_path.is_file() else None
                chained = chain_restore(
                    app,
                    copy,
                    args,
                    witnesses=witnesses,
                    old=old,
                    as_migrated=lambda: _as_migrated(args.backup, copy),
                )
            finally:
                copy.close()
            aside = _swap(store_path, restoring, app.clock.now().strftime("%Y%m%dT%H%M%S"))
        except BaseException:
            _discard(restoring)
            raise
    report_restore(app, str(store_path), args, chained, witnesses=witnesses, aside=str(aside))
    return Exit.OK


def add_store_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("store", help="the store: create it, back it up, restore a backup")
    cmds = group.add_subparsers(dest="store_command", required=True, parser_class=Parser)
    create = command(cmds, "create", store_create, "make the configured store (PostgreSQL)")
    json_flag(create)
    backup = command(cmds, "backup", store_backup, "copy the store consistently, even live")
    backup.add_argument("--to", type=Path, required=True, metavar="FILE")
    json_flag(backup)
    restore = command(cmds, "restore", store_restore, "put a backup back, the loss chained")
    restore.add_argument("backup", type=Path, metavar="FILE")
    restore.add_argument("--as", dest="as_user", metavar="NAME", required=True,
                         help="the admin restoring (their TOTP code is asked)")  # fmt: skip
    restore.add_argument("--reason", required=True, help="why the store is restored")
    restore.add_argument("--anchors", type=Path, nargs="+", metavar="FILE",
                         help="anchors files (default: the file sinks configured)")  # fmt: skip
    json_flag(restore)
    add_copy_command(cmds)
