"""`bastion unmask request|list|approve|deny|revoke`: consent-gated unmasking on the CLI."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from bastion.access.unmask import Unmasking
from bastion.commands.app import App, actor_of, proven
from bastion.commands.requests import duration_arg
from bastion.commands.sessions import more_note
from bastion.errors import UsageError
from bastion.reviewing.logs import consent_ledger

COLUMNS = ["id", "user", "target", "columns", "subject", "state", "starts_at", "ends_at",
           "consent_ref", "requested_by", "decided_by", "reason"]  # fmt: skip


def _rules(app: App) -> Unmasking:
    return Unmasking(app.store, app.config, app.clock)


def _digest(path: str | None) -> str | None:
    """SHA-256 of the consent document; the document itself is not stored."""
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _line(data: dict[str, object]) -> str:
    columns = ",".join(str(c) for c in data["columns"])  # type: ignore[attr-defined]
    return (f"unmask {data['id']}: {data['user']} on {data['target']}, {columns}"
            f" for {data['subject']}: {data['state']}")  # fmt: skip


def unmask_request(app: App, args: argparse.Namespace) -> int:
    """A proven person files the request; someone else confirms the consent."""
    filer = proven(app, args.as_user, "files it")
    made = _rules(app).request(
        user=args.user, target=args.target, columns=args.columns.split(","),
        subject=args.subject, reason=args.reason, consent_ref=args.consent,
        consent_sha256=_digest(args.consent_file), requested_by=filer,
        duration=duration_arg("--for", args.duration))  # fmt: skip
    data = made.public(app.clock.now())
    app.emit(data, _line(data))
    return 0


def unmask_list(app: App, args: argparse.Namespace) -> int:
    """The consent ledger, newest first: each grant with its consent and rows shown."""
    page = consent_ledger(app.store, app.viewer, app.clock.now(), user=args.user,
                          target=args.target, state=args.state, cursor=args.cursor,
                          limit=args.limit)  # fmt: skip
    rows = page.items
    if not app.as_json:
        for row in rows:
            row["columns"] = ",".join(row["columns"])
    app.table(rows, [*COLUMNS, "rows_shown"], "no unmask grants match")
    more_note(page.next, "unmask grants")
    return 0


def unmask_approve(app: App, args: argparse.Namespace) -> int:
    approver = proven(app, args.as_user)
    done = _rules(app).approve(args.grant_id, approver, consent_confirmed=args.consent_confirmed,
                               duration=duration_arg("--for", args.duration))  # fmt: skip
    data = done.public(app.clock.now())
    app.emit(data, _line(data))
    return 0


def unmask_deny(app: App, args: argparse.Namespace) -> int:
    actor = proven(app, args.as_user)
    data = _rules(app).deny(args.grant_id, actor, args.reason).public(app.clock.now())
    app.emit(data, _line(data))
    return 0


def unmask_revoke(app: App, args: argparse.Namespace) -> int:
    data = app.store.revoke_unmask(args.grant_id, actor_of(app, args)).public(app.clock.now())
    app.emit(data, _line(data))
    return 0
