"""A real store (keyed chain) with real encrypted recordings: what the reviewer's reads read.

Sessions of two engineers on two SSH hosts and a database, written the way the doors write
them: the recording is created first, the session row opened, commands or statements logged
as they happen, the recording sealed and its hash chained when the session closes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bastion.audit import (
    ChainKey,
    CommandLine,
    NewUnmask,
    QueryEnd,
    QueryStart,
    RecordingInfo,
    Store,
)
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.identity.sealing import SecretBox
from bastion.recording import RecordingWriter

DAY1 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def day(n: int, hour: int, minute: int = 0) -> datetime:
    """A moment on the n-th day of the test week (day 1 is Monday 16 November 2026)."""
    return DAY1.replace(hour=hour, minute=minute) + timedelta(days=n - 1)


class Monotonic:
    """The recording's own clock, moved by the test with the store's clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    home: Path
    box: SecretBox = field(default_factory=lambda: SecretBox(os.urandom(32)))
    clock: FakeClock = field(default_factory=lambda: FakeClock(day(1, 8)))
    store_path: Path | None = None  # an existing store (made by `bastion init`), else a new one
    recordings: Path | None = None
    new_at: PgLocation | None = None  # a new store on PostgreSQL, else a file in home

    def __post_init__(self) -> None:
        key = ChainKey.of(self.box)
        if self.store_path is None:
            self.store = Store.create(self.new_at or self.home / "bastion.db", self.clock, key)
        else:
            self.store = Store.open(self.store_path, self.clock, key)
        self.recording_root = self.recordings or self.home / "recordings"
        for name, role in [("alice", "engineer"), ("bob", "engineer"), ("rita", "reviewer"),
                           ("carol", "admin")]:  # fmt: skip
            self.store.add_user(name, role, None, os.urandom(16), "test")
        for name, kind in [("web-1", "ssh"), ("web-2", "ssh"), ("db-1", "postgres")]:
            self.store.add_target(name=name, kind=kind, host="127.0.0.1", port=22, login="x",
                                  database=None, secret_sealed=b"x", actor="test")  # fmt: skip

    def at(self, when: datetime) -> None:
        self.clock.set(when)

    def ssh(self, sid: str, user: str, target: str, start: datetime,
            steps: list[tuple[float, str, str]], *, minutes: int = 30,
            close: bool = True) -> Path:  # fmt: skip
        """An SSH session with a recording; `steps` are (seconds in, command typed, output).
        Each command is typed, logged as the door logs it, then its output recorded."""
        self.at(start)
        end = start + timedelta(minutes=minutes) if close else None
        return ssh_session(self.store, self.clock, self.box, self.recording_root, sid,
                           user=user, target=target, steps=steps, end=end)  # fmt: skip

    def psql(self, sid: str, user: str, start: datetime, statements: list[tuple[float, str]],
             *, minutes: int = 30, masking: str | None = None) -> None:  # fmt: skip
        """A database session (no recording); `statements` are (seconds in, SQL)."""
        self.at(start)
        self.store.open_session(session_id=sid, user=user, target="db-1", grant_id=None,
                                protocol="postgres", client_addr="10.0.0.5:50001")  # fmt: skip
        for n, (offset, sql) in enumerate(statements):
            when = start + timedelta(seconds=offset)
            self.at(when)
            key = f"{sid}-{n}"
            tag = sql.split()[0].upper()
            self.store.write_batch([
                QueryStart(key, sid, user, "db-1", when, "simple", sql, kind=tag),
                QueryEnd(key, sid, user, "db-1", when, 1, f"{tag} 1", None, 100, masking),
            ])  # fmt: skip
        self.at(start + timedelta(minutes=minutes))
        self.store.close_session(sid, "closed", "client closed")

    def unmask(self, user: str, subject: str, *, approve: bool = True) -> int:
        new = NewUnmask(user=user, target="db-1", columns=("customers.email",),
                        subject_key="customers.id", subject_value=subject,
                        reason="GDPR access request from the customer",
                        consent_ref=f"DSR-{subject}", consent_sha256="ab" * 32,
                        duration=timedelta(hours=1), requested_by="rita")  # fmt: skip
        grant = self.store.add_unmask(new)
        if approve:
            self.store.decide_unmask(grant.id, "carol", "approved")
        return grant.id


def build(home: Path, **where: Any) -> World:
    """Three days: alice and bob on web-1, web-2 and db-1; one session still open."""
    w = World(home, **where)
    w.ssh("s-a1", "alice", "web-1", day(1, 9),
          [(300.0, "ls /srv", "backups  www"),
           (600.0, "sudo systemctl restart nginx", "")])  # fmt: skip
    w.ssh("s-b1", "bob", "web-2", day(2, 10), [(60.0, "cat /etc/shadow", "Permission denied")],
          minutes=20)  # fmt: skip
    w.psql(
        "s-a2",
        "alice",
        day(2, 23, 30),
        [(10.0, "SELECT * FROM customers"), (1895.5, "DELETE FROM invoices WHERE id = $1")],
        minutes=60,
    )  # fmt: skip  (the DELETE runs after midnight, on day 3)
    w.psql("s-b2", "bob", day(3, 11), [(5.0, "select 1")])
    w.ssh("s-a3", "alice", "web-2", day(3, 14), [(30.0, "echo 100%_done", "100%_done")],
          minutes=5)  # fmt: skip
    w.ssh("s-open", "alice", "web-1", day(3, 16), [(12.0, "tail -f /var/log/syslog", "...")],
          close=False)  # fmt: skip
    return w


def ssh_session(store: Store, clock: FakeClock, box: SecretBox, root: Path, sid: str, *,
                user: str, target: str, steps: list[tuple[float, str, str]],
                end: datetime | None) -> Path:  # fmt: skip
    """An SSH session begun at the clock's now, written as the SSH door writes it: the
    recording created first, the session row opened, each command typed, logged and its
    output recorded at its offset; sealed and its hash chained at `end` (None: left open)."""
    start, mono = clock.now(), Monotonic()
    writer = RecordingWriter.create(root, sid, start, 80, 24, f"{user} -> {target}",
                                    {"TERM": "xterm"}, box, monotonic=mono)  # fmt: skip
    store.open_session(session_id=sid, user=user, target=target, grant_id=None,
                       protocol="ssh", client_addr="10.0.0.5:50000",
                       recording_path=str(writer.path))  # fmt: skip
    writer.output(b"$ ", 0.0)
    for offset, command, output in steps:
        mono.now = offset
        writer.input(command.encode() + b"\r", offset)
        writer.output(command.encode() + b"\r\n", offset)
        clock.set(start + timedelta(seconds=offset))
        store.log_commands(sid, [CommandLine(clock.now(), 0, command, True)])
        writer.output(output.encode() + b"\r\n$ ", offset + 0.5)
    writer.flush()
    if end is not None:
        summary = writer.close()
        clock.set(end)
        info = RecordingInfo(str(summary.path), summary.sha256, summary.size)
        store.close_session(sid, "closed", "client closed", info)
    return writer.path
