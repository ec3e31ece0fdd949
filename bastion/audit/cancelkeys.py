"""Store queries for PostgreSQL cancel keys: which node holds each pid, and where to reach it."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.audit.base import StoreBase
from bastion.audit.sqlconn import Conn
from bastion.clock import iso


@dataclass(frozen=True)
class CancelOwner:
    """The node holding a cancel key's pid, and the host:port its door takes cancels on."""

    node: str
    address: str


def release_pid(conn: Conn, pid: int, node: str, session_id: str) -> None:
    """In the caller's transaction: the row of pid for this session of `node` goes."""
    conn.execute("DELETE FROM cancel_keys WHERE pid = ? AND node = ? AND session_id = ?",
                 (pid, node, session_id))  # fmt: skip


class CancelKeyQueries(StoreBase):
    """The pids of live PostgreSQL sessions on every node; never their secret half."""

    def claim_cancel_pid(self, pid: int, node: str, address: str, session_id: str) -> bool:
        """Take pid for this session of `node`; False when any node holds it already.

        Not under the chain lock: the primary key decides. Under READ COMMITTED an insert
        of a pid that another transaction inserted and has not ended waits for it, then does
        nothing (it committed) or inserts (it rolled back); the SELECT then reads the row
        committed last, ours only if our insert made it (tests/audit/test_unchained_writes)."""
        with self._write(chained=False) as conn:
            conn.execute(
                "INSERT INTO cancel_keys (pid, node, address, session_id, claimed_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT (pid) DO NOTHING",
                (pid, node, address, session_id, iso(self.clock.now())),
            )
            row = conn.execute(
                "SELECT node, session_id FROM cancel_keys WHERE pid = ?", (pid,)
            ).fetchone()
        return row is not None and (row[0], row[1]) == (node, session_id)

    def release_cancel_pid(self, pid: int, node: str, session_id: str) -> None:
        """The session ended: its pid names nothing any more (another node's later claim of
        the same pid is left alone). One conditional DELETE: no chain lock needed."""
        with self._write(chained=False) as conn:
            release_pid(conn, pid, node, session_id)

    def clear_cancel_pids(self, node: str) -> int:
        """The node is starting: the sessions its rows name are gone. How many were left."""
        with self._write() as conn:
            found = conn.execute(
                "SELECT COUNT(*) FROM cancel_keys WHERE node = ?", (node,)
            ).fetchone()
            conn.execute("DELETE FROM cancel_keys WHERE node = ?", (node,))
        return int(found[0]) if found is not None else 0

    def cancel_owner(self, pid: int) -> CancelOwner | None:
        """Who holds pid now, or None."""
        rows = self._rows("SELECT node, address FROM cancel_keys WHERE pid = ?", [pid])
        if not rows:
            return None
        return CancelOwner(str(rows[0]["node"]), str(rows[0]["address"]))
