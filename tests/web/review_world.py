"""What the reviewer's console tests read: real encrypted recordings of SSH sessions written as
the SSH door writes them (recording first, session row, commands logged, sealed and chained
on close), a database session's statements, and a built weekly review with its pack."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

from bastion.audit import QueryEnd, QueryStart
from bastion.clock import FakeClock
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from bastion.reports.model import Evidence, Finding
from tests.reviewing.world import ssh_session
from tests.web.conftest import _targets

WEEK = "2026-W47"
SESSIONS = {"s-alice": ("alice", "web-1", [(5.0, "ls /srv", "backups  www"),
                                           (40.0, "uptime", "up 12 days")]),
            "s-bob": ("bob", "web-1", [(3.0, "cat /etc/shadow", "Permission denied")])}  # fmt: skip


def record(core: Core, box: SecretBox, sid: str, *, user: str, target: str,
           steps: list[tuple[float, str, str]]) -> None:  # fmt: skip
    """An SSH session with its recording; `steps` are (seconds in, command typed, output)."""
    clock = core.clock
    assert isinstance(clock, FakeClock)
    end = clock.now() + timedelta(seconds=steps[-1][0] + 30)
    ssh_session(core.store, clock, box, core.config.paths.recordings, sid, user=user,
                target=target, steps=steps, end=end)  # fmt: skip


def statements(core: Core, sid: str, user: str, sqls: list[str]) -> None:
    """A database session on `orders` (no recording), its statements in the query log."""
    when = core.clock.now()
    core.store.open_session(session_id=sid, user=user, target="orders", grant_id=None,
                            protocol="postgres", client_addr="10.0.0.5:50001")  # fmt: skip
    for n, sql in enumerate(sqls):
        tag = sql.split()[0].upper()
        core.store.write_batch([
            QueryStart(f"{sid}-{n}", sid, user, "orders", when, "simple", sql, kind=tag),
            QueryEnd(f"{sid}-{n}", sid, user, "orders", when, 1, f"{tag} 1", None, 100, None),
        ])  # fmt: skip
    core.store.close_session(sid, "closed", "client closed")


def finding(rule: str, ref: str, subject: str, *more: Evidence) -> Finding:
    evidence = (Evidence(kind="event", ref=ref, at=None, text=f"{rule} evidence {ref}"), *more)
    return Finding(rule=rule, severity="high", title=f"{rule} by {subject}", action="look",
                   evidence=evidence, subject=subject)  # fmt: skip


def build_week(core: Core, pack: Path) -> list[str]:
    """Week 2026-W47 built with two findings about alice, its pack's manifest on disk."""
    seen = Evidence(kind="command", ref="c1", at=None, text="uptime on web-1", session="s-alice",
                    offset=40.0)  # fmt: skip
    found = (finding("unusual_hours", "e1", "alice", seen), finding("break_glass", "e2", "alice"))
    pack.mkdir(parents=True)
    manifest = json.dumps({"week": WEEK, "files": {}}).encode()
    (pack / "manifest.json").write_bytes(manifest)
    core.store.record_report_week(WEEK, found, manifest_sha256=hashlib.sha256(manifest)
                                  .hexdigest(), pack_path=str(pack))  # fmt: skip
    return [f.id for f in found]


def reviewed_world(core: Core, box: SecretBox) -> None:
    """The console's targets, two recorded SSH sessions, a database session, a built week."""
    _targets(core, box)
    for sid, (user, target, steps) in SESSIONS.items():
        record(core, box, sid, user=user, target=target, steps=steps)
    statements(core, "s-db", "alice", ["SELECT email FROM customers", "select 1"])
    build_week(core, core.config.paths.reports / "pack-w47")
