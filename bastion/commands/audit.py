"""`bastion audit verify` and `bastion audit tail [--follow]`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bastion.audit.chain import ChainedEvent
from bastion.commands.app import App
from bastion.errors import Exit
from bastion.recording import file_digest


def changed_recordings(app: App) -> list[str]:
    """Recordings whose file no longer hashes to what the audit chain recorded."""
    problems = []
    for session_id, info in app.store.recordings():
        try:
            digest, size = file_digest(Path(info.path))
        except OSError as exc:
            problems.append(f"recording of session {session_id} is unreadable: {exc.strerror}")
            continue
        if (digest, size) != (info.sha256, info.size):
            problems.append(f"recording of session {session_id} changed since it was closed")
    return problems


def audit_verify(app: App, args: argparse.Namespace) -> int:
    """Walk the chain, compare its head with the anchor, re-hash every closed recording."""
    verdict = app.store.verify_chain()
    anchored = app.store.read_anchor() is not None
    recordings = changed_recordings(app)
    data = {
        "ok": verdict.ok and not recordings,
        "checked": verdict.checked,
        "head_seq": verdict.head_seq,
        "head_hash": verdict.head_hash,
        "problem": verdict.problem or None,
        "bad_seq": verdict.bad_seq,
        "anchor_checked": anchored,
        "recording_problems": recordings,
    }
    if not verdict.ok:
        app.emit(data, f"AUDIT CHAIN BROKEN: {verdict.problem}")
        return Exit.TAMPERED
    if recordings:
        app.emit(data, "RECORDINGS CHANGED: " + "; ".join(recordings))
        return Exit.TAMPERED
    text = (
        f"audit chain intact: {verdict.checked} events, head {verdict.head_seq}"
        f" {verdict.head_hash[:16]}; {len(app.store.recordings())} recordings match"
    )
    if not anchored:
        text += " (no head file beside the store: deletions at the very end cannot be seen)"
    app.emit(data, text)
    return Exit.OK


def _line(event: ChainedEvent) -> str:
    detail = json.loads(event.detail)
    extra = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(detail.items()))
    subject = f" {event.subject}" if event.subject else ""
    head = f"{event.seq:>7} {event.at} {event.severity:<7} {event.kind} by {event.actor}"
    return f"{head}{subject} {extra}".rstrip()


def _print(app: App, events: list[ChainedEvent]) -> None:
    for event in events:
        if app.as_json:
            app.out.write(json.dumps(event.as_dict(), sort_keys=True) + "\n")
        else:
            app.out.write(_line(event) + "\n")
    app.out.flush()


def audit_tail(app: App, args: argparse.Namespace) -> int:
    """The last N events; with --follow, keep printing new ones (JSON lines with --json)."""
    events = app.store.last_events(args.lines)
    _print(app, events)
    if not args.follow:
        return Exit.OK
    last = events[-1].seq if events else 0
    try:
        while True:
            fresh = app.store.events(after=last, limit=1000)
            if fresh:
                _print(app, fresh)
                last = fresh[-1].seq
            else:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return Exit.OK
