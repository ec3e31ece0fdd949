"""`bastion sessions ...`, `bastion replay` and `bastion recordings export`."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from bastion.audit import SessionFilter
from bastion.commands.app import App, actor_of
from bastion.durations import parse_duration
from bastion.errors import Exit, UsageError
from bastion.live import kill_asked
from bastion.recording import RecordingError, replay
from bastion.reviewing.recordings import open_recording
from bastion.reviewing.sessions import command_index, offset_of, search_sessions


def since_arg(text: str | None, app: App, flag: str = "--since") -> datetime | None:
    """--since (or --until) as a duration back from now (7d) or an ISO time with a zone."""
    if not text:
        return None
    try:
        return app.clock.now() - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: give a duration (2h, 7d) or an ISO time") from exc
    if when.tzinfo is None:
        raise UsageError(f"{flag} needs a time zone, e.g. 2026-11-23T09:00+00:00")
    return when


def more_note(following: str | None, what: str) -> None:
    """Say on stderr how to ask for the next page (stdout keeps the listing alone)."""
    if following:
        sys.stderr.write(f"bastion: more {what} match: add --cursor {following}\n")


def sessions_list(app: App, args: argparse.Namespace) -> int:
    """Sessions by person, target, date range and text in their commands or statements."""
    wanted = SessionFilter(user=args.user, target=args.target,
                           since=since_arg(args.since, app),
                           until=since_arg(args.until, app, "--until"), text=args.text,
                           protocol=args.protocol, open_only=args.open)  # fmt: skip
    page = search_sessions(app.store, app.viewer, wanted, cursor=args.cursor, limit=args.limit)
    app.table(page.items, ["id", "user", "target", "protocol", "node", "state", "started_at",
                           "ended_at"], "no sessions match")  # fmt: skip
    more_note(page.next, "sessions")
    return 0


def sessions_index(app: App, args: argparse.Namespace) -> int:
    """A session's commands or statements, each with its offset into the recording."""
    found = command_index(app.store, app.viewer, args.session_id, cursor=args.cursor,
                          limit=args.limit)  # fmt: skip
    lines = [f"{e['offset']:>10.3f}s  {e['at']}  {e['text']}" for e in found["entries"]]
    app.emit(found, "\n".join(lines) or "no commands or statements in this session")
    if not app.as_json:
        more_note(found["next"], "entries")
    return 0


def sessions_show(app: App, args: argparse.Namespace) -> int:
    session = app.store.session(args.session_id)
    commands = [{"at": c.at.isoformat(), "offset": offset_of(c.at, session.started_at),
                 "command": c.text, "reconstructed": c.reconstructed, "uncertain": c.uncertain}
                for c in app.store.commands(session.id)]  # fmt: skip
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
    """Ask, through the store, whichever node holds the session to end it; say so plainly
    when that node's presence has run out (it ended its sessions when it lost the store, or
    it stopped: the row closes as interrupted when it starts again)."""
    session = app.store.request_kill(args.session_id, actor_of(app, args), args.reason or "")
    text, alive = kill_asked(session, app.store.live_nodes())  # the console's words too
    app.emit({**session.public(), "node_alive": alive}, text)
    return 0


def replay_command(app: App, args: argparse.Namespace) -> int:
    """Play a recording in the terminal; the viewing is audited before the first byte."""
    if args.speed <= 0:
        raise UsageError("--speed must be positive")
    if args.start < 0:
        raise UsageError("--from must be a number of seconds >= 0")
    opened = open_recording(app.store, app.box, app.viewer, args.session_id,
                            locate=app.fetcher.local)  # fmt: skip
    recording = opened.read()
    for warning in opened.warnings:  # before the first byte: not taken for the whole session
        sys.stderr.write(f"bastion: {warning}\n")
    sys.stderr.flush()
    replay(recording, sys.stdout.buffer, speed=args.speed, idle_limit=args.idle_limit,
           start=args.start)  # fmt: skip
    sys.stdout.flush()
    return Exit.TAMPERED if opened.tampered else Exit.OK  # a crash's cut the chain records: 0


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
    out = Path(args.out)
    if out.exists():
        raise UsageError(f"{out} exists already; refusing to overwrite it")
    opened = open_recording(app.store, app.box, app.viewer, args.session_id,
                            kind="recording.exported", detail={"to": str(out)},
                            locate=app.fetcher.local)  # fmt: skip
    for warning in opened.warnings:
        sys.stderr.write(f"bastion: {warning}\n")
    fd = _create_private(out)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            opened.write_asciicast(handle)
    except (RecordingError, OSError):
        out.unlink(missing_ok=True)
        raise
    app.emit({"session": opened.session.id, "out": str(out), "warnings": list(opened.warnings)},
             f"wrote {out} (asciicast v2)")  # fmt: skip
    return 0
