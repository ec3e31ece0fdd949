"""Store queries for a node that never returns: when it was last seen, closing what it held.

A node is lost by the store's clock (bastion/audit/storetime.py): on PostgreSQL the database
server's, so a node whose own clock runs fast never takes a live one for lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bastion.audit.chain import Event
from bastion.audit.cluster import node_lease
from bastion.audit.nul import escape
from bastion.audit.records import session_from_row
from bastion.audit.sessions import SESSION_SELECT, RecordingInfo
from bastion.audit.storetime import StoreTimeQueries
from bastion.clock import iso, parse_iso


@dataclass(frozen=True)
class HeldSession:
    """A session row as the completer needs it: which node holds it, its recording."""

    id: str
    node: str | None
    ended: bool
    recording_path: str | None
    recording_sha256: str | None
    recording_size: int | None


@dataclass(frozen=True)
class LostClose:
    """How the completer closes one session of a lost node."""

    node: str  # the lost node
    by: str  # the node closing it
    lost_after: timedelta
    recording: RecordingInfo | None = None  # what the bucket (or disk) holds of it
    missing: str | None = None  # the recording's path when nothing of it is left to read
    completed: dict[str, Any] | None = None  # the detail of recording.completed, if any


def lost_reason(node: str, since: datetime) -> str:
    """A lost node's sessions' end reason."""
    return f"node {node} lost (not seen since {iso(since)})"


class LostNodeQueries(StoreTimeQueries):
    def lost_since(self, node: str, lost_after: timedelta) -> datetime | None:
        """When `node` was last seen alive (its presence lease expired), if that is at least
        `lost_after` ago by the store's clock; None while it may still be alive, or when it
        never held a presence lease (nothing proves when it was last seen: never lost)."""
        now, at = self.now_sql()
        rows = self._rows(
            f"SELECT holder, expires_at, {now} AS now FROM leases WHERE name = ?",
            [*at, node_lease(node)],
        )
        if not rows or rows[0]["holder"] != node:
            return None
        expired = parse_iso(str(rows[0]["expires_at"]))
        return expired if expired <= parse_iso(str(rows[0]["now"])) - lost_after else None

    def stopped_cleanly(self, node: str) -> bool:
        """Whether `node` gave its presence up as it stopped (released: it expired the
        moment it was last renewed) rather than letting it run out (killed, or cut off)."""
        rows = self._rows(
            "SELECT 1 AS released FROM leases WHERE name = ? AND holder = ?"
            " AND expires_at = renewed_at",
            [node_lease(node), node],
        )
        return bool(rows)

    def nodes_holding(self) -> list[str]:
        """Every node an open session or a database cancel key names, by name."""
        rows = self._rows(
            "SELECT node FROM sessions WHERE ended_at IS NULL AND node IS NOT NULL"
            " UNION SELECT node FROM cancel_keys ORDER BY node"
        )
        return [str(r["node"]) for r in rows]

    def open_sessions_of(self, node: str) -> list[HeldSession]:
        """The sessions `node` holds that are still open, oldest first."""
        rows = self._rows(
            "SELECT id, node, ended_at, recording_path, recording_sha256, recording_size"
            " FROM sessions WHERE ended_at IS NULL AND node = ? ORDER BY started_at, id",
            [node],
        )
        return [_held(r) for r in rows]

    def held_session(self, session_id: str) -> HeldSession | None:
        rows = self._rows(
            "SELECT id, node, ended_at, recording_path, recording_sha256, recording_size"
            " FROM sessions WHERE id = ?",
            [session_id],
        )
        return _held(rows[0]) if rows else None

    def _still_lost(self, conn: Any, node: str, lost_after: timedelta) -> bool:
        """Inside a write: whether `node` is still lost, its presence row locked until the
        commit (a conditional no-op update), so a renewal that comes meanwhile waits for
        this transaction and one that came before makes it change nothing."""
        cutoff = iso(self.store_time(conn) - lost_after)
        changed = conn.execute(
            "UPDATE leases SET renewed_at = renewed_at WHERE name = ? AND holder = ?"
            " AND expires_at <= ?",
            (node_lease(node), node, cutoff),
        ).rowcount
        return bool(changed == 1)

    def close_lost_session(self, session_id: str, close: LostClose, since: datetime) -> bool:
        """Close one open session of a lost node as interrupted, in one transaction with its
        session.closed (and recording.completed) events; False (nothing changed) when the
        node is no longer lost (it came back) or the session is closed already."""
        rows = self._rows(SESSION_SELECT + " WHERE s.id = ?", [session_id])
        if not rows:
            return False
        found = session_from_row(rows[0])
        info, reason = close.recording, lost_reason(close.node, since)
        with self._write() as conn:
            if not self._still_lost(conn, close.node, close.lost_after):
                return False
            changed = conn.execute(
                "UPDATE sessions SET ended_at = ?, state = 'interrupted', end_reason = ?,"
                " recording_sha256 = ?, recording_size = ? WHERE id = ? AND node = ?"
                " AND ended_at IS NULL",
                (iso(self.clock.now()), escape(reason), info.sha256 if info else None,
                 info.size if info else None, session_id, close.node),
            ).rowcount  # fmt: skip
            if changed != 1:
                return False
            detail: dict[str, Any] = {"state": "interrupted", "reason": reason,
                                      "lost_node": close.node, "closed_by": close.by}  # fmt: skip
            if info is not None:
                detail |= {"recording": info.path, "recording_sha256": info.sha256,
                           "recording_size": info.size}  # fmt: skip
            if close.missing is not None:
                detail["recording_missing"] = close.missing
            user, target = found.user or "-", found.target or ""
            events = [Event("session.closed", user, target, "warning", session_id, detail)]
            if close.completed is not None:
                events.append(Event("recording.completed", f"node:{close.by}", target,
                                    "warning", session_id, close.completed))  # fmt: skip
            self._append(conn, events)
        return True

    def forget_lost_node(self, node: str, lost_after: timedelta, by: str, closed: int) -> int:
        """The lost node's database cancel keys name nothing any more: removed. Chains
        `cluster.node_lost` when a session of the node was closed (`closed` this round), or
        keys went of a node that did not stop cleanly (a planned stop is no loss). How many
        keys went; 0 when the node is no longer lost."""
        planned = self.stopped_cleanly(node)
        with self._write() as conn:
            if not self._still_lost(conn, node, lost_after):
                return 0
            found = conn.execute(
                "SELECT COUNT(*) FROM cancel_keys WHERE node = ?", (node,)
            ).fetchone()
            conn.execute("DELETE FROM cancel_keys WHERE node = ?", (node,))
            keys = int(found[0]) if found is not None else 0
            if closed or (keys and not planned):
                detail = {"node": node, "sessions_closed": closed, "cancel_keys": keys,
                          "lost_after": int(lost_after.total_seconds())}  # fmt: skip
                self._append(conn, [Event("cluster.node_lost", f"node:{by}", node, "warning",
                                          detail=detail)])  # fmt: skip
        return keys


def _held(row: dict[str, Any]) -> HeldSession:
    size = row["recording_size"]
    return HeldSession(row["id"], row["node"], row["ended_at"] is not None,
                       row["recording_path"], row["recording_sha256"],
                       int(size) if size is not None else None)  # fmt: skip
