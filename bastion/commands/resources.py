"""`bastion target ...`, `grant`, `revoke`, `grants list` and `access check`."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta
from typing import Any

from bastion.audit.records import Target
from bastion.commands.app import App, actor_of, read_secret_line
from bastion.durations import parse_duration
from bastion.errors import Denied, UsageError

TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def _check_target_name(name: str) -> None:
    if not TARGET_NAME.match(name):
        raise UsageError(
            f"bad target name {name!r}: use lower-case letters, digits, '.', '_' and '-'"
        )


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port (1-65535)")


def target_add_ssh(app: App, args: argparse.Namespace) -> int:
    import asyncssh  # noqa: PLC0415 - a heavy import most commands never need

    _check_target_name(args.name)
    _check_port(args.port)
    try:
        key = asyncssh.read_private_key(args.key)
    except asyncssh.KeyImportError as exc:
        raise UsageError(f"{args.key}: not a usable unencrypted private key ({exc})") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {args.key}: {exc.strerror}") from exc
    sealed = app.box.seal(key.export_private_key("openssh"), context=f"target:{args.name}")
    target = app.store.add_target(
        name=args.name,
        kind="ssh",
        host=args.host,
        port=args.port,
        login=args.login,
        database=None,
        secret_sealed=sealed,
        actor=app.actor,
    )
    app.emit(
        target.public(),
        f"added ssh target {target.name} ({args.login}@{args.host}:{args.port});"
        f" the key is sealed, you may delete {args.key}",
    )
    return 0


def target_add_postgres(app: App, args: argparse.Namespace) -> int:
    _check_target_name(args.name)
    _check_port(args.port)
    if not args.password_stdin:
        raise UsageError("give the database password on standard input with --password-stdin")
    password = read_secret_line("password")
    sealed = app.box.seal(password.encode(), context=f"target:{args.name}")
    target = app.store.add_target(
        name=args.name,
        kind="postgres",
        host=args.host,
        port=args.port,
        login=args.user,
        database=args.database,
        secret_sealed=sealed,
        actor=app.actor,
    )
    app.emit(
        target.public(),
        f"added postgres target {target.name}"
        f" ({args.user}@{args.host}:{args.port}/{args.database})",
    )
    return 0


def _with_transport(app: App, target: Target) -> dict[str, Any]:
    """A target's row, with how a database target is reached and what is weak about it."""
    row = target.public()
    if target.kind == "postgres":
        policy = app.config.target_policy(target.name)
        row["tls"], row["upstream_auth"] = policy.tls, list(policy.upstream_auth)
        row["warnings"] = policy.database_warnings()
    return row


def _warn(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        for line in row.get("warnings", ()):
            sys.stderr.write(f"bastion: warning: {line}\n")


def target_list(app: App, args: argparse.Namespace) -> int:
    rows = [_with_transport(app, t) for t in app.store.targets()]
    app.table(
        rows,
        ["name", "kind", "host", "port", "login", "database", "tls"],
        "no targets yet: bastion target add-ssh NAME ... or add-postgres NAME ...",
    )
    _warn(rows)
    return 0


def target_show(app: App, args: argparse.Namespace) -> int:
    """One target, and for a database how the bastion reaches it (TLS, login methods)."""
    row = _with_transport(app, app.store.target(args.name))
    lines = [f"{key}: {value}" for key, value in row.items() if key != "warnings"]
    app.emit(row, "\n".join(lines))
    _warn([row])
    return 0


def target_remove(app: App, args: argparse.Namespace) -> int:
    revoked = app.store.remove_target(args.name, app.actor)
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
    group = args.user.removeprefix("group:") if args.user.startswith("group:") else None
    actor = actor_of(app, args)
    made = app.access.grant(
        user=None if group else args.user,
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
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{flag}: {text!r} is not an ISO date and time") from exc
    if when.tzinfo is None:
        raise UsageError(f"{flag} needs a time zone, e.g. 2026-11-23T09:00Z")
    return when


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

    target = app.store.target(args.name)
    if target.kind != "ssh":
        raise UsageError(f"{args.name} is a {target.kind} target; only SSH targets have host keys")
    key = asyncio.run(fetch_host_key(target.host, target.port))
    fingerprint = key.get_fingerprint("sha256")
    line = key.export_public_key("openssh").decode().strip()
    if args.fingerprint and args.fingerprint != fingerprint:
        raise Denied(f"{target.name} presents {fingerprint}, not {args.fingerprint}; not trusted")
    if not args.fingerprint and not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"{target.name} presents {fingerprint}; confirm with --yes or --fingerprint FP"
            )
        answer = input(f"{target.name} ({target.host}:{target.port}) presents {fingerprint}."
                       " Trust it? [y/N] ")  # fmt: skip
        if answer.strip().lower() not in ("y", "yes"):
            raise Denied("not trusted")
    app.store.set_host_key(target.name, line, fingerprint, app.actor)
    app.emit({"target": target.name, "fingerprint": fingerprint, "host_key": line},
             f"{target.name}: host key {fingerprint} is now pinned")  # fmt: skip
    return 0
