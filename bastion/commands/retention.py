"""`bastion retention run [--dry-run]` and `bastion hold add|release|list`."""

from __future__ import annotations

import argparse
import os
from datetime import timedelta

from bastion.cli_common import Parser, command, json_flag, optional_decider
from bastion.commands.app import App, actor_of
from bastion.errors import Exit, UsageError
from bastion.retention import LEASE, Outcome, Runner
from bastion.text import printable_line

LEASE_TTL = timedelta(hours=6)  # a run longer than this lets another node start one


def runner(app: App) -> Runner:
    """A retention run on this node, with the configured object store (if any)."""
    config = app.config
    objects = app.fetcher.store if config.recordings.url else None
    return Runner(app.store, app.box, config.retention, config.cluster.node_name(), app.actor,
                  objects)  # fmt: skip


def outcome_text(done: Outcome) -> str:
    """What a run removed, or would remove, in a few lines."""
    found = done.plan
    verb = "would delete" if done.dry_run else "deleted"
    if done.dry_run:
        counts = (len(found.recordings), found.queries, found.cut_to - found.cut_from)
    else:
        counts = (done.recordings_deleted, done.queries_deleted, done.events_deleted)
    lines = [f"retention {verb}: {counts[0]} recordings, {counts[1]} query-log rows,"
             f" {counts[2]} audit events"]  # fmt: skip
    if found.cut_to > found.cut_from:
        lines.append(f"chain cut: events {found.cut_from + 1}-{found.cut_to}"
                     f" (written before {found.events_before})")  # fmt: skip
    if done.archive is not None:
        lines.append(f"archived in {done.archive}")
    lines += [f"held back by {why}" for why in found.stopped_by]
    lines += [f"warning: {warning}" for warning in done.warnings]
    return "\n".join(lines)


def retention_run(app: App, args: argparse.Namespace) -> int:
    """One retention run now; on a shared store only the node holding the lease prunes."""
    policy = app.config.retention
    if not policy.enabled:
        app.emit({"enabled": False}, "retention is off ([retention] sets no period): nothing"
                 " is deleted")  # fmt: skip
        return Exit.OK
    # This run's own holder: not the node's name, which `bastion serve` here holds it by.
    node = f"{app.config.cluster.node_name()}:cli:{os.getpid()}"
    if not args.dry_run and app.store.take_lease(LEASE, node, LEASE_TTL) is None:
        raise UsageError(
            "another run (another node, or bastion serve here) is running retention"
            " now (its lease holds); try later"
        )
    try:
        done = runner(app).run(dry_run=args.dry_run)
    finally:
        if not args.dry_run:
            app.store.release_lease(LEASE, node)
    app.emit(done.public(), outcome_text(done))
    return Exit.OK


def hold_add(app: App, args: argparse.Namespace) -> int:
    scopes = [(s, getattr(args, s)) for s in ("user", "target", "session") if getattr(args, s)]
    if len(scopes) != 1:
        raise UsageError("a hold is on exactly one of --user, --target or --session")
    hold = app.store.add_hold(*scopes[0], args.reason, actor_of(app, args))
    app.emit(hold.public(), printable_line(f"hold {hold.id} on {hold.scope} {hold.value} by"
                                           f" {hold.added_by}"))  # fmt: skip
    return Exit.OK


def hold_release(app: App, args: argparse.Namespace) -> int:
    hold = app.store.release_hold(args.hold_id, args.reason, actor_of(app, args))
    app.emit(hold.public(), f"hold {hold.id} on {hold.scope} {hold.value} released")
    return Exit.OK


def hold_list(app: App, args: argparse.Namespace) -> int:
    holds = app.store.holds(active_only=not args.all)
    lines = [printable_line(
        f"{h.id:>4} {h.scope:<7} {h.value} since {h.added_at} by {h.added_by}: {h.reason}"
        + (f" (released {h.released_at} by {h.released_by}: {h.release_reason})"
           if h.released_at else ""), 1000) for h in holds]  # fmt: skip
    app.emit([h.public() for h in holds], "\n".join(lines) or "no holds")
    return Exit.OK


def add_retention_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("retention", help="prune evidence past [retention] periods")
    cmds = group.add_subparsers(dest="retention_command", required=True, parser_class=Parser)
    run = command(cmds, "run", retention_run, "prune now (archived first; holds kept)")
    run.add_argument("--dry-run", action="store_true", help="say what would be deleted")
    json_flag(run)
    holds = sub.add_parser("hold", help="legal holds: evidence retention never deletes")
    cmds = holds.add_subparsers(dest="hold_command", required=True, parser_class=Parser)
    add = command(cmds, "add", hold_add, "hold a user's, a target's or a session's evidence")
    add.add_argument("--user")
    add.add_argument("--target")
    add.add_argument("--session")
    add.add_argument("--reason", required=True)
    optional_decider(add)
    json_flag(add)
    release = command(cmds, "release", hold_release, "release a hold (with a reason)")
    release.add_argument("hold_id", type=int)
    release.add_argument("--reason", required=True)
    optional_decider(release)
    json_flag(release)
    listing = command(cmds, "list", hold_list, "list holds (active ones; --all for every)")
    listing.add_argument("--all", action="store_true")
    json_flag(listing)
