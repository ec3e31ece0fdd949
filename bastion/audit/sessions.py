"""Store queries for sessions and what happened in them: commands and file operations."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bastion.audit.base import StoreBase, where
from bastion.audit.cancelkeys import release_pid
from bastion.audit.chain import Event
from bastion.audit.nul import escape, escape_opt
from bastion.audit.records import OpenSession, SessionRecord, session_from_row
from bastion.audit.sqlconn import Conn
from bastion.clock import iso, parse_iso
from bastion.errors import Conflict, NotFound

# A session's row is written in the same transaction as its session.opened (or .closed) event,
# a moment before it: the row's time is earlier than the event's by at most this.
ROW_SLACK = timedelta(seconds=5)
SESSION_SELECT = (
    "SELECT s.*, u.name AS user, t.name AS target FROM sessions s"
    " LEFT JOIN users u ON u.id = s.user_id LEFT JOIN targets t ON t.id = s.target_id"
)


@dataclass(frozen=True)
class CommandLine:
    """A command as the door saw it: exact for exec, reconstructed for a shell."""

    at: datetime
    channel: int
    text: str
    reconstructed: bool = False
    uncertain: str | None = None


@dataclass(frozen=True)
class FileOp:
    """One SFTP operation: bytes moved, and the hash of a file read or written whole."""

    at: datetime
    operation: str
    path: str
    path2: str | None = None
    size: int | None = None
    sha256: str | None = None
    status: str = "ok"


@dataclass(frozen=True)
class Leftovers:
    """What a closing session still has to store: its last commands and file operations,
    and its database cancel key to release (pid, node)."""

    commands: Sequence[CommandLine] = ()
    ops: Sequence[FileOp] = ()
    cancel: tuple[int, str] | None = None


@dataclass(frozen=True)
class RecordingInfo:
    path: str
    sha256: str
    size: int


class SessionQueries(StoreBase):
    def open_session(
        self,
        *,
        session_id: str,
        user: str,
        target: str,
        grant_id: int | None,
        protocol: str,
        client_addr: str,
        recording_path: str | None = None,
        ticket_id: int | None = None,
        node: str | None = None,
    ) -> None:
        """Record a session as open, held by `node`; the audit event is durable before any byte
        is relayed."""
        user_id = self._id_by_name("users", user)
        target_id = self._id_by_name("targets", target)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sessions (id, user_id, target_id, grant_id, protocol, client_addr,"
                " started_at, recording_path, ticket_id, node) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (session_id, user_id, target_id, grant_id, protocol, client_addr,
                 iso(self.clock.now()), recording_path, ticket_id, node),
            )  # fmt: skip
            detail = {"target": target, "grant": grant_id, "protocol": protocol,
                      "client": client_addr}  # fmt: skip
            if ticket_id is not None:
                detail["ticket"] = ticket_id
            if node is not None:
                detail["node"] = node
            self._append(
                conn, [Event("session.opened", user, target, "notice", session_id, detail)]
            )

    def close_session(
        self,
        session_id: str,
        state: str,
        reason: str,
        recording: RecordingInfo | None = None,
        channels: int = 0,
        *,
        missing: str | None = None,
        last: Leftovers | None = None,
    ) -> None:
        """Close a session once; the recording's hash goes into the row and the chain. What
        it did last and its cancel key's release (`last`) go in the same transaction, kept
        even when the session was closed already (Conflict all the same)."""
        found = self.session(session_id)
        if found.ended_at is not None and last is None:
            raise Conflict(f"session {session_id} is closed already")
        with self._write() as conn:
            if last is not None:
                _insert_activity(conn, session_id, last.commands, last.ops)
                if last.cancel is not None:
                    release_pid(conn, *last.cancel, session_id)
            changed = 0 if found.ended_at is not None else conn.execute(
                "UPDATE sessions SET ended_at = ?, state = ?, end_reason = ?,"
                " recording_sha256 = ?, recording_size = ?, channel_count = ? WHERE id = ?"
                " AND ended_at IS NULL",
                (iso(self.clock.now()), state, escape(reason),  # it may quote a client
                 recording.sha256 if recording else None,
                 recording.size if recording else None, channels, session_id),
            ).rowcount  # fmt: skip
            if changed == 1:
                self._append(conn, [_closed(found, state, reason, recording, missing)])
        if changed != 1:  # closed meanwhile (by another node): once, not twice
            raise Conflict(f"session {session_id} is closed already")

    def session(self, session_id: str) -> SessionRecord:
        rows = self._rows(SESSION_SELECT + " WHERE s.id = ?", [session_id])
        if not rows:
            raise NotFound(f"no session with id {session_id}")
        return session_from_row(rows[0])

    def sessions(
        self,
        *,
        user: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        open_only: bool = False,
        limit: int = 200,
    ) -> list[SessionRecord]:
        clause, params = where([
            ("u.name = ?", user),
            ("t.name = ?", target),
            ("s.started_at >= ?", iso(since) if since else None),
            ("s.ended_at IS NULL", open_only),
        ])  # fmt: skip
        sql = SESSION_SELECT + clause + " ORDER BY s.started_at DESC LIMIT ?"
        return [session_from_row(r) for r in self._rows(sql, [*params, limit])]

    def close_interrupted(
        self,
        actor: str,
        left: Callable[[str], RecordingInfo | None] | None = None,
        *,
        node: str | None = None,
        unowned: bool = True,
    ) -> list[str]:
        """After a crash: the sessions `node` holds that are still open are closed as
        interrupted (every open session when no node is named), and with `unowned` those
        opened before sessions named their node. `left` hashes what remains of a session's
        recording (None: nothing is there), so the chain holds that hash too and a recording
        changed or removed later shows in `audit verify`. A file shorter than its node told
        the store it made durable, or whose prefix hashes otherwise, is closed as missing."""
        stale = self.sessions(open_only=True, limit=100_000)
        if node is not None:
            held = "(node = ? OR node IS NULL)" if unowned else "node = ?"
            rows = self._rows(f"SELECT id FROM sessions WHERE ended_at IS NULL AND {held}", [node])
            mine = {r["id"] for r in rows}
            stale = [s for s in stale if s.id in mine]
        closed = []
        for found in stale:
            path = found.recording_path
            info = left(path) if left is not None and path else None
            if info is not None and short_of(Path(info.path), self.recording_progress(found.id)):
                info = None  # cut or changed since its node wrote it: never chained, for a human
            missing = path if path and info is None else None
            try:
                self.close_session(found.id, "interrupted", f"the bastion stopped ({actor})",
                                   info, missing=missing)  # fmt: skip
            except Conflict:  # another node starting at the same time closed it first
                continue
            closed.append(found.id)
        return closed

    def note_recording_progress(self, session_id: str, node: str, size: int, sha256: str) -> bool:
        """How far `node` got with the session's recording: `size` bytes made durable (sent to
        the object store, or fsynced) and their SHA-256. One conditional UPDATE, not under the
        chain lock: only the session's own node, only while it is open, only growing. False
        when nothing changed."""
        with self._write(chained=False) as conn:
            changed = conn.execute(
                "UPDATE sessions SET recording_progress_bytes = ?, recording_progress_sha256 = ?"
                " WHERE id = ? AND node = ? AND ended_at IS NULL AND (recording_progress_bytes"
                " IS NULL OR recording_progress_bytes < ?)",
                (size, sha256, session_id, node, size),
            ).rowcount
        return bool(changed == 1)

    def recording_progress(self, session_id: str) -> tuple[int, str] | None:
        """The bytes of the session's recording its node made durable and their SHA-256."""
        rows = self._rows(
            "SELECT recording_progress_bytes AS size, recording_progress_sha256 AS sha256"
            " FROM sessions WHERE id = ?",
            [session_id],
        )
        if not rows or rows[0]["size"] is None:
            return None
        return int(rows[0]["size"]), str(rows[0]["sha256"])

    def request_kill(self, session_id: str, actor: str, reason: str) -> SessionRecord:
        """Ask whichever process serves the session to end it (it polls for this)."""
        found = self.session(session_id)
        if found.ended_at is not None:
            raise Conflict(f"session {session_id} has ended already ({found.state})")
        with self._write() as conn:
            conn.execute(
                "UPDATE sessions SET kill_requested_at = ?, kill_requested_by = ?,"
                " kill_reason = ? WHERE id = ?",
                (iso(self.clock.now()), actor, escape(reason), session_id),
            )
            event = Event("session.kill_requested", actor, found.user or "", "warning",
                          session_id, {"reason": reason, "target": found.target})  # fmt: skip
            self._append(conn, [event])
        return self.session(session_id)

    def open_sessions_access(self) -> list[OpenSession]:
        """Every open session with its user, target, grant and whether the user is disabled."""
        rows = self._rows(
            "SELECT s.id, u.name AS user, t.name AS target, s.grant_id, g.mode,"
            " u.disabled_at IS NOT NULL AS disabled,"
            " CASE WHEN k.revoked_at IS NOT NULL THEN k.id END AS ticket_revoked FROM sessions s"
            " JOIN users u ON u.id = s.user_id JOIN targets t ON t.id = s.target_id"
            " LEFT JOIN grants g ON g.id = s.grant_id LEFT JOIN tickets k ON k.id = s.ticket_id"
            " WHERE s.ended_at IS NULL"
        )
        return [OpenSession(r["id"], r["user"], r["target"], r["grant_id"], r["mode"],
                            bool(r["disabled"]), r["ticket_revoked"]) for r in rows]  # fmt: skip

    def pending_kills(self) -> list[tuple[str, str, str]]:
        """Open sessions an admin asked to end: (session id, who asked, why)."""
        rows = self._rows(
            "SELECT id, kill_requested_by, kill_reason FROM sessions"
            " WHERE ended_at IS NULL AND kill_requested_at IS NOT NULL"
        )
        return [(r["id"], r["kill_requested_by"], r["kill_reason"] or "") for r in rows]

    def log_commands(self, session_id: str, commands: Sequence[CommandLine]) -> None:
        """Keep a session's commands (log_activity)."""
        self.log_activity(session_id, commands, ())

    def log_activity(
        self, session_id: str, commands: Sequence[CommandLine], ops: Sequence[FileOp]
    ) -> None:
        """Keep a session's commands and file operations, in one transaction. Plain INSERTs
        that chain nothing and read nothing: not under the chain lock."""
        if commands or ops:
            with self._write(chained=False) as conn:
                _insert_activity(conn, session_id, commands, ops)

    def commands(self, session_id: str) -> list[CommandLine]:
        rows = self._rows("SELECT * FROM commands WHERE session_id = ? ORDER BY id", [session_id])
        return [
            CommandLine(
                parse_iso(r["at"]),
                r["channel"],
                r["command"],
                bool(r["reconstructed"]),
                r["uncertain"],
            )
            for r in rows
        ]

    def log_file_ops(self, session_id: str, ops: Sequence[FileOp]) -> None:
        """Keep a session's file operations (log_activity)."""
        self.log_activity(session_id, (), ops)

    def file_ops(self, session_id: str) -> list[FileOp]:
        rows = self._rows(
            "SELECT * FROM file_transfers WHERE session_id = ? ORDER BY id", [session_id]
        )
        return [
            FileOp(
                parse_iso(r["at"]),
                r["operation"],
                r["path"],
                r["path2"],
                r["bytes"],
                r["sha256"],
                r["status"] or "ok",
            )
            for r in rows
        ]

    def chained_recordings(
        self, up_to: int, session_id: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """(session id, detail) of every session.closed event with a recording (or one found
        missing when a crashed session was closed), up to seq `up_to` (a verified head): the
        hashes the chain holds, not the editable session rows."""
        clause, params = where([("seq <= ?", up_to), ("session_id = ?", session_id)])
        rows = self._rows(
            "SELECT session_id, detail FROM audit_events"
            + clause
            + " AND kind = 'session.closed' ORDER BY seq",
            params,
        )
        out = []
        for row in rows:
            detail = json.loads(row["detail"])
            if isinstance(detail, dict) and (
                "recording_sha256" in detail or "recording_missing" in detail
            ):
                out.append((str(row["session_id"]), detail))
        return out

    def recordings(self) -> list[tuple[str, RecordingInfo]]:
        """Every closed session's recording with the hash the chain holds, for verification."""
        rows = self._rows(
            "SELECT id, recording_path, recording_sha256, recording_size FROM sessions"
            " WHERE recording_sha256 IS NOT NULL ORDER BY started_at"
        )
        return [
            (
                r["id"],
                RecordingInfo(r["recording_path"], r["recording_sha256"], r["recording_size"]),
            )
            for r in rows
        ]


def short_of(path: Path, progress: tuple[int, str] | None) -> str | None:
    """Why the file at path is not all its node wrote of the recording (None: it holds the
    recorded progress as its prefix, or no progress was recorded): shorter, or that prefix
    hashes otherwise (cut or changed since)."""
    if progress is None:
        return None
    size, expected = progress
    digest, got = hashlib.sha256(), 0
    try:
        with path.open("rb") as found:
            while got < size and (block := found.read(min(1 << 20, size - got))):
                digest.update(block)
                got += len(block)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if got < size:
        return f"it holds {got} bytes, its node had made {size} durable: cut"
    if digest.hexdigest() != expected:
        return f"its first {size} bytes are not those its node made durable: changed"
    return None


def _insert_activity(
    conn: Conn, session_id: str, commands: Sequence[CommandLine], ops: Sequence[FileOp]
) -> None:
    """In the caller's transaction: a session's commands and file operations, their text
    stored NUL-escaped (bastion/audit/nul.py) and read back as stored."""
    if commands:
        conn.executemany(
            "INSERT INTO commands (session_id, at, channel, command, reconstructed,"
            " uncertain) VALUES (?,?,?,?,?,?)",
            [(session_id, iso(c.at), c.channel, escape(c.text), int(c.reconstructed),
              escape_opt(c.uncertain)) for c in commands],
        )  # fmt: skip
    if ops:
        conn.executemany(
            "INSERT INTO file_transfers (session_id, at, operation, path, path2, bytes,"
            " sha256, status) VALUES (?,?,?,?,?,?,?,?)",
            [(session_id, iso(o.at), o.operation, escape(o.path), escape_opt(o.path2),
              o.size, o.sha256, escape(o.status)) for o in ops],
        )  # fmt: skip


def _closed(found: SessionRecord, state: str, reason: str, recording: RecordingInfo | None,
            missing: str | None) -> Event:  # fmt: skip
    """The session.closed event: state, reason, and the recording's hash (or its absence)."""
    detail: dict[str, Any] = {"state": state, "reason": reason}
    if recording is not None:
        detail |= {"recording": recording.path, "recording_sha256": recording.sha256,
                   "recording_size": recording.size}  # fmt: skip
    if missing is not None:  # the recording was gone when the session was closed
        detail["recording_missing"] = missing
    severity = "info" if state == "closed" else "warning"
    return Event("session.closed", found.user or "-", found.target or "", severity,
                 found.id, detail)  # fmt: skip
