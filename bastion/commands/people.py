"""`bastion user ...`: add, list, show, disable, unlock, reset TOTP, add keys."""

from __future__ import annotations

import argparse
from pathlib import Path

from bastion.access.offboarding import offboard
from bastion.audit.records import User
from bastion.commands.app import App, actor_of, read_secret_line
from bastion.errors import UsageError
from bastion.identity.enrolment import Enrolment
from bastion.identity.service import user_state


def _read_key_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read SSH key file {path}: {exc.strerror}") from exc
    keys = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not keys:
        raise UsageError(f"{path} holds no public key")
    return keys


def _show_enrolment(app: App, args: argparse.Namespace, enrolment: Enrolment, user: User) -> None:
    written = []
    for path in (args.qr_png, args.qr_svg):
        if path:
            enrolment.save(Path(path))
            written.append(path)
    text = [f"{user.name} ({user.role}): scan this QR code with an authenticator app"]
    if not args.no_qr:
        text.append(enrolment.qr_text())
    text.append(f"or enter this URI: {enrolment.uri}")
    text += [f"QR code written to {p}" for p in written]
    app.emit(
        {"user": user.public(), "otpauth_uri": enrolment.uri, "qr_files": written}, "\n".join(text)
    )


def _check_qr_paths(args: argparse.Namespace) -> None:
    """Refuse bad QR file names before anything is created, so no seed goes unseen."""
    for flag, path, suffix in (
        ("--qr-png", args.qr_png, ".png"),
        ("--qr-svg", args.qr_svg, ".svg"),
    ):
        if not path:
            continue
        target = Path(path)
        if target.suffix.lower() != suffix:
            raise UsageError(f"{flag} {path}: the file name must end in {suffix}")
        if not target.parent.resolve().is_dir():
            raise UsageError(f"{flag} {path}: the folder {target.parent} does not exist")


def user_add(app: App, args: argparse.Namespace) -> int:
    _check_qr_paths(args)
    keys = [k for f in args.ssh_key or [] for k in _read_key_file(f)]
    password = read_secret_line("password") if args.password_stdin else None
    enrolment = app.identity.enrol(args.name, args.role, password, app.actor, ssh_keys=keys)
    _show_enrolment(app, args, enrolment, app.store.user(args.name))
    return 0


def user_reset_totp(app: App, args: argparse.Namespace) -> int:
    _check_qr_paths(args)
    enrolment = app.identity.reset_totp(args.name, app.actor)
    _show_enrolment(app, args, enrolment, app.store.user(args.name))
    return 0


def _user_row(app: App, user: User) -> dict[str, object]:
    row = user.public()
    now = app.clock.now()
    row["state"] = user_state(user, now)
    return row


def user_list(app: App, args: argparse.Namespace) -> int:
    rows = [_user_row(app, u) for u in app.store.users()]
    app.table(
        rows,
        ["name", "role", "state", "has_password", "key_count", "created_at"],
        "no users yet: bastion user add NAME --role engineer",
    )
    return 0


def user_show(app: App, args: argparse.Namespace) -> int:
    user = app.store.user(args.name)
    row = _user_row(app, user)
    keys = [k.public() for k in app.store.ssh_keys(args.name)]
    grants = [g.public(app.clock.now()) for g in app.store.grants(user=args.name)]
    lines = [f"{k}: {'-' if v is None else v}" for k, v in row.items()]
    lines += [f"key: {k['algorithm']} {k['fingerprint']} {k['comment']}".rstrip() for k in keys]
    lines += [
        f"grant {g['id']}: {g['target']} {g['mode']} {g['state']} until {g['ends_at']}"
        for g in grants
    ]
    app.emit({**row, "ssh_keys": keys, "grants": grants}, "\n".join(lines))
    return 0


def user_add_key(app: App, args: argparse.Namespace) -> int:
    added = app.identity.add_ssh_keys(args.name, _read_key_file(args.file), app.actor)
    app.emit(
        [k.public() for k in added],
        "\n".join(f"added {k.algorithm} {k.fingerprint} to {args.name}" for k in added),
    )
    return 0


def user_set_password(app: App, args: argparse.Namespace) -> int:
    if not args.password_stdin:
        raise UsageError("give the password on standard input with --password-stdin")
    app.identity.set_password(args.name, read_secret_line("password"), app.actor)
    app.emit({"user": args.name, "password": "set"}, f"password set for {args.name}")
    return 0


def user_disable(app: App, args: argparse.Namespace) -> int:
    counts = offboard(app.store, args.name, actor_of(app, args), args.reason or "")
    app.emit(
        {"user": args.name, "disabled": True, **counts},
        f"{args.name} disabled; {counts['grants_revoked']} grant(s) revoked,"
        f" {counts['requests_cancelled']} pending request(s) cancelled,"
        f" {counts['unmask_revoked']} unmask grant(s) revoked,"
        f" {counts['groups_left']} group(s) left; live sessions end within seconds",
    )
    return 0


def user_unlock(app: App, args: argparse.Namespace) -> int:
    app.store.unlock_user(args.name, app.actor)
    app.emit({"user": args.name, "unlocked": True}, f"{args.name} unlocked")
    return 0
