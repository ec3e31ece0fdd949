"""`bastion sessions ...`, `bastion replay` and `bastion recordings export`."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from bastion.audit import Event
from bastion.audit.records import SessionRecord
from bastion.commands.app import App, actor_of
from bastion.durations import parse_duration
from bastion.errors import Exit, UsageError
from bastion.recording import (
    Recording,
    RecordingError,
    export_asciicast,
    file_digest,
    read_recording,
    replay,
)


def since_arg(text: str | None, app: App) -> datetime | None:
    """--since as a duration back from now (7d) or an ISO time with a zone."""
    if not text:
        return None
    try:
        return app.clock.now() - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--since {text!r}: give a duration (2h, 7d) or an ISO time") from exc
    if when.tzinfo is None:
        raise UsageError("--since needs a time zone, e.g. 2026-11-23T09:00+00:00")
    return when


def sessions_list(app: App, args: argparse.Namespace) -> int:
    found = app.store.sessions(user=args.user, target=args.target, since=since_arg(args.since, app),
                               open_only=args.open)  # fmt: skip
    rows = [s.public() for s in found]
    app.table(rows, ["id", "user", "target", "protocol", "state", "started_at", "ended_at"],
              "no sessions match")  # fmt: skip
    return 0


def sessions_show(app: App, args: argparse.Namespace) -> int:
    session = app.store.session(args.session_id)
    commands = [{"at": c.at.isoformat(), "command": c.text, "reconstructed": c.reconstructed,
                 "uncertain": c.uncertain} for c in app.store.commands(session.id)]  # fmt: skip
    files = [{"at": f.at.isoformat(), "operation": f.operation, "path": f.path, "path2": f.path2,
              "bytes": f.size, "sha256": f.sha256, "status": f.status}
             for f in app.store.file_ops(session.id)]  # fmt: skip
    lines = [f"{k}: {'-' if v is None else v}" for k, v in session.public().items()]
    for c in commands:
        mark = "~" if c["reconstructed"] else "$"
        note = f"  (uncertain: {c['uncertain']})" if c["uncertain"] else ""
        lines.append(f"{c['at']} {mark} {c['command']}{note}")
    for f in files:
        lines.append(f"{f['at']} {f['operation']} {f['path']} {f['bytes'] or ''} "
                     f"{f['sha256'] or ''} {f['status']}".rstrip())  # fmt: skip
    app.emit({**session.public(), "commands": commands, "file_operations": files},
             "\n".join(lines))  # fmt: skip
    return 0


def sessions_kill(app: App, args: argparse.Namespace) -> int:
    session = app.store.request_kill(args.session_id, actor_of(app, args), args.reason or "")
    app.emit(session.public(), f"asked the bastion to end session {session.id}"
             f" ({session.user} on {session.target}); it ends within a few seconds")  # fmt: skip
    return 0


def _recorded(app: App, session_id: str) -> tuple[SessionRecord, Path]:
    session = app.store.session(session_id)
    if not session.recording_path:
        raise UsageError(f"session {session_id} has no recording ({session.protocol})")
    return session, Path(session.recording_path)


def replay_command(app: App, args: argparse.Namespace) -> int:
    """Play a recording in the terminal; the viewing is audited before the first byte."""
    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    if args.start < 0:
        raise UsageError("--from must be a number of seconds >= 0")
    session, path = _recorded(app, args.session_id)
    recording = read_recording(path, app.box, session.id)
    app.store.append_events([Event("recording.replayed", app.actor, session.user or "", "notice",
                                   session.id, {"target": session.target})])  # fmt: skip
    warnings = _replay_warnings(app, session, path, recording)
    for warning in warnings:  # before the first byte, so nobody takes it for the whole session
        sys.stderr.write(f"bastion: {warning}\n")
    sys.stderr.flush()
    replay(recording, sys.stdout.buffer, speed=args.speed, idle_limit=args.idle_limit,
           start=args.start)  # fmt: skip
    sys.stdout.flush()
    return Exit.TAMPERED if warnings and session.ended_at is not None else Exit.OK


def _replay_warnings(
    app: App, session: SessionRecord, path: Path, recording: Recording
) -> list[str]:
    """What makes this recording less than the whole closed session the chain vouches for."""
    if session.ended_at is None:
        return ["the session is still open: this is the recording so far"]
    out = []
    if not recording.complete:
        out.append(
            "the recording has no final chunk: it was cut short (or its writer never closed"
            " it); what follows is not the whole session"
        )
    chained = app.store.chained_recordings(2**62, session.id)
    if not chained:
        out.append("the audit chain holds no hash for this recording")
    elif file_digest(path) != (
        chained[-1][1]["recording_sha256"],
        chained[-1][1]["recording_size"],
    ):
        out.append("the recording does not match the hash the audit chain holds for it")
    return out


def _create_private(out: Path) -> int:
    """A new file, 0600 from the first byte: a decrypted recording is for the admin who asked,
    not for everyone who can read the directory (never an existing file, even in a race)."""
    try:
        return os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise UsageError(f"{out} exists already; refusing to overwrite it") from exc
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from exc


def recordings_export(app: App, args: argparse.Namespace) -> int:
    """Write plain asciicast v2 (plays in asciinema); audited before the file is written."""
    session, path = _recorded(app, args.session_id)
    out = Path(args.out)
    if out.exists():
        raise UsageError(f"{out} exists already; refusing to overwrite it")
    detail = {"target": session.target, "to": str(out)}
    event = Event("recording.exported", app.actor, session.user or "", "notice", session.id, detail)
    app.store.append_events([event])

    fd = _create_private(out)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            export_asciicast(path, app.box, handle, session.id)
    except (RecordingError, OSError):
        out.unlink(missing_ok=True)
        raise
    app.emit({"session": session.id, "out": str(out)}, f"wrote {out} (asciicast v2)")
    return 0
