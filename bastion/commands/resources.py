"""`bastion target ...`, `grant`, `revoke`, `grants list` and `access check`."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bastion.access.grants import holder
from bastion.access.targets import Targets, check_port, check_target_name, ssh_private_key
from bastion.commands.app import App, actor_of, read_secret_line
from bastion.durations import parse_duration, parse_when
from bastion.errors import Denied, UsageError


def _targets(app: App) -> Targets:
    return Targets(app.store, app.config, app.box)


def target_add_ssh(app: App, args: argparse.Namespace) -> int:
    check_target_name(args.name)
    check_port(args.port)
    try:
        text = Path(args.key).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {args.key}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        text = ""
    try:
        key = ssh_private_key(text)
    except UsageError as exc:
        raise UsageError(f"{args.key}: {exc.message}") from exc
    target = _targets(app).add_ssh(name=args.name, host=args.host, port=args.port,
                                   login=args.login, private_key=key, actor=app.actor)  # fmt: skip
    app.emit(
        target.public(),
        f"added ssh target {target.name} ({args.login}@{args.host}:{args.port});"
        f" the key is sealed, you may delete {args.key}",
    )
    return 0


def target_add_postgres(app: App, args: argparse.Namespace) -> int:
    check_target_name(args.name)
    check_port(args.port)
    if not args.password_stdin:
        raise UsageError("give the database password on standard input with --password-stdin")
    password = read_secret_line("password")
    target = _targets(app).add_postgres(name=args.name, host=args.host, port=args.port,
                                        user=args.user, database=args.database,
                                        password=password, actor=app.actor)  # fmt: skip
    app.emit(
        target.public(),
        f"added postgres target {target.name}"
        f" ({args.user}@{args.host}:{args.port}/{args.database})",
    )
    return 0


def _warn(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        for line in row.get("warnings", ()):
            sys.stderr.write(f"bastion: warning: {line}\n")


def target_list(app: App, args: argparse.Namespace) -> int:
    rows = _targets(app).listed()
    app.table(
        rows,
        ["name", "kind", "host", "port", "login", "database", "tls"],
        "no targets yet: bastion target add-ssh NAME ... or add-postgres NAME ...",
    )
    _warn(rows)
    return 0


def target_show(app: App, args: argparse.Namespace) -> int:
    """One target, and for a database how the bastion reaches it (TLS, login methods)."""
    row = _targets(app).row(app.store.target(args.name))
    lines = [f"{key}: {value}" for key, value in row.items() if key != "warnings"]
    app.emit(row, "\n".join(lines))
    _warn([row])
    return 0


def target_remove(app: App, args: argparse.Namespace) -> int:
    revoked = _targets(app).remove(args.name, app.actor)
    app.emit(
        {"target": args.name, "removed": True, "grants_revoked": revoked},
        f"target {args.name} removed; {revoked} grant(s) revoked",
    )
    return 0


def grant(app: App, args: argparse.Namespace) -> int:
    starts = _when("--from", args.start) if args.start else None
    if args.until:
        until = _when("--until", args.until)
        duration = until - (starts or app.clock.now())
        if duration <= timedelta(0):
            raise UsageError("--until must be after the start of the grant")
    else:
        try:
            duration = parse_duration(args.duration)
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from exc
    user, group = holder(args.user)
    actor = actor_of(app, args)
    made = app.access.grant(
        user=user,
        group=group,
        target=args.target,
        duration=duration,
        reason=args.reason,
        actor=actor,
        mode=args.mode,
        starts_at=starts,
        ticket_ref=args.ticket,
    )
    app.emit(
        made.public(app.clock.now()),
        f"grant {made.id}: {made.holder} may reach {made.target} ({made.mode})"
        f" from {made.starts_at:%Y-%m-%d %H:%M} until {made.ends_at:%Y-%m-%d %H:%M} UTC",
    )
    return 0


def _when(flag: str, text: str) -> datetime:
    """An ISO date and time with its zone ('Z' accepted), for --from and --until."""
    try:
        return parse_when(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def revoke(app: App, args: argparse.Namespace) -> int:
    done = app.access.revoke(args.grant_id, actor_of(app, args))
    app.emit(
        done.public(app.clock.now()), f"grant {done.id} revoked ({done.user} on {done.target})"
    )
    return 0


def grants_list(app: App, args: argparse.Namespace) -> int:
    """Grants as given; with --user, as they apply to that person (their groups' included)."""
    now = app.clock.now()
    live = now if args.active else None
    if args.user:
        found = app.store.grants(user=args.user, target=args.target, live_at=live)
    else:
        found = app.store.grant_rows(target=args.target, group=args.group, live_at=live)
    rows = [g.public(now) for g in found]
    app.table(
        rows,
        [
            "id",
            "holder",
            "target",
            "mode",
            "state",
            "starts_at",
            "ends_at",
            "granted_by",
            "ticket_ref",
            "break_glass",
            "reason",
        ],
        "no grants match",
    )
    return 0


def access_check(app: App, args: argparse.Namespace) -> int:
    decision = app.access.decide(args.user, args.target)
    app.emit(
        {
            "allowed": decision.allowed,
            "reason": decision.reason,
            "grant": decision.grant.id if decision.grant else None,
        },
        ("allowed: " if decision.allowed else "refused: ") + decision.reason,
    )
    return 0 if decision.allowed else 6


def target_trust(app: App, args: argparse.Namespace) -> int:
    """Fetch the target's host key, show its fingerprint, and pin it once confirmed."""
    import asyncio  # noqa: PLC0415 - only this command needs an event loop

    from bastion.ssh.upstream import fetch_host_key  # noqa: PLC0415 - pulls in asyncssh

    target = _targets(app).ssh_target(args.name)
    key = asyncio.run(fetch_host_key(target.host, target.port))
    fingerprint = key.get_fingerprint("sha256")
    line = key.export_public_key("openssh").decode().strip()
    if not args.fingerprint and not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"{target.name} presents {fingerprint}; confirm with --yes or --fingerprint FP"
            )
        answer = input(f"{target.name} ({target.host}:{target.port}) presents {fingerprint}."
                       " Trust it? [y/N] ")  # fmt: skip
        if answer.strip().lower() not in ("y", "yes"):
            raise Denied("not trusted")
    confirmed = args.fingerprint or fingerprint  # --yes, or answered yes to what it showed
    _targets(app).trust(target.name, (line, fingerprint), confirmed, app.actor)
    app.emit({"target": target.name, "fingerprint": fingerprint, "host_key": line},
             f"{target.name}: host key {fingerprint} is now pinned")  # fmt: skip
    return 0
