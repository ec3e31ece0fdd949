"""Store queries for several nodes on one store: leases that elect one node for a job.

Every lease is judged on the store's clock (bastion/audit/storetime.py): on PostgreSQL the
database server's, so nodes whose own clocks disagree still agree on who holds what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bastion.audit.chain import Event
from bastion.audit.sqlconn import Conn
from bastion.audit.storetime import StoreTimeQueries
from bastion.clock import iso, parse_iso

NODE_LEASE = "node:"  # a node's presence: `node:NAME`, held by NAME while it can reach the store


@dataclass(frozen=True)
class Lease:
    """Who holds a lease until when; `term` grows by one each time it changes hands."""

    name: str
    holder: str
    term: int
    taken_at: datetime
    expires_at: datetime
    renewed_at: datetime


def node_lease(node: str) -> str:
    """The name of the lease a node holds while it is alive."""
    return NODE_LEASE + node


class ClusterQueries(StoreTimeQueries):
    def take_lease(self, name: str, holder: str, ttl: timedelta, *,
                   quiet: bool = False) -> Lease | None:  # fmt: skip
        """Take the lease `name` for `holder` until now + `ttl` (the store's clock), if it is
        free, expired or held by `holder` already (then it is renewed, same term); None when
        someone else holds it. Atomic: decided inside one write transaction, and each write
        is conditional on what was read, so two nodes never both hold it. A change of hands
        (not a renewal) is chained as `cluster.lease_taken`, unless `quiet` (a node's own
        presence: `bastion.started` says it)."""
        if ttl <= timedelta(0):
            raise ValueError("a lease lasts for a positive time")
        with self._write() as conn:
            row, now = self._lease_row(conn, name)
            at, until = iso(now), iso(now + ttl)
            previous, term, taken = (None, 1, at) if row is None else (row[0], row[1], row[2])
            if row is None:
                sql = ("INSERT INTO leases (name, holder, term, taken_at, renewed_at, expires_at)"
                       " VALUES (?,?,1,?,?,?) ON CONFLICT (name) DO NOTHING")  # fmt: skip
                params: tuple[object, ...] = (name, holder, at, at, until)
            elif previous == holder:
                sql = ("UPDATE leases SET renewed_at = ?, expires_at = ? WHERE name = ?"
                       " AND holder = ? AND term = ?")  # fmt: skip
                params = (at, until, name, holder, term)
            elif str(row[3]) > at:
                return None  # someone else's, and not expired
            else:
                sql = ("UPDATE leases SET holder = ?, term = ?, taken_at = ?, renewed_at = ?,"
                       " expires_at = ? WHERE name = ? AND term = ?"
                       " AND expires_at <= ?")  # fmt: skip
                params = (holder, term + 1, at, at, until, name, term, at)
                term, taken = term + 1, at
            if conn.execute(sql, params).rowcount != 1:
                return None  # taken meanwhile: the conditional write found it changed
            if previous != holder and not quiet:
                detail = {"lease": name, "term": term, "expires_at": until, "from": previous}
                self._append(conn, [Event("cluster.lease_taken", holder, name, "info",
                                          detail=detail)])  # fmt: skip
        return Lease(name, holder, int(term), parse_iso(str(taken)), parse_iso(until), now)

    def _lease_row(self, conn: Conn, name: str) -> tuple[tuple[Any, ...] | None, datetime]:
        """Inside a write: (holder, term, taken_at, expires_at) of the lease, or None, and the
        store's time, read in one statement after the write's lock is held."""
        now, at = self.now_sql()
        found = conn.execute(
            f"SELECT {now} AS now, l.holder, l.term, l.taken_at, l.expires_at"
            " FROM (SELECT 1 AS one) AS o LEFT JOIN leases AS l ON l.name = ?",
            (*at, name),
        ).fetchone()
        assert found is not None  # one row, the lease's columns NULL without a lease
        row = None if found[1] is None else (found[1], found[2], found[3], found[4])
        return row, parse_iso(str(found[0]))

    def release_lease(self, name: str, holder: str) -> bool:
        """Give up a lease `holder` holds (it expires now); False when it holds none."""
        with self._write() as conn:
            at = iso(self.store_time(conn))
            changed = conn.execute(
                "UPDATE leases SET expires_at = ?, renewed_at = ? WHERE name = ? AND holder = ?"
                " AND expires_at > ?",
                (at, at, name, holder, at),
            ).rowcount
        return bool(changed)

    def still_holds(self, lease: Lease) -> bool:
        """Whether `lease` is still its holder's, in the same term and unexpired (the store's
        clock): check it before each step a job must not take after losing its lease."""
        now, at = self.now_sql()
        rows = self._rows(
            "SELECT 1 AS held FROM leases WHERE name = ? AND holder = ? AND term = ?"
            f" AND expires_at > {now}",
            [lease.name, lease.holder, lease.term, *at],
        )
        return bool(rows)

    def lease(self, name: str) -> Lease | None:
        """The lease's row as the store holds it (it may have expired), or None."""
        rows = self._rows(
            "SELECT name, holder, term, taken_at, expires_at, renewed_at FROM leases"
            " WHERE name = ?",
            [name],
        )
        if not rows:
            return None
        r = rows[0]
        return Lease(r["name"], r["holder"], int(r["term"]), parse_iso(r["taken_at"]),
                     parse_iso(r["expires_at"]), parse_iso(r["renewed_at"]))  # fmt: skip

    def live_nodes(self) -> list[str]:
        """The nodes whose presence lease has not expired (the store's clock), by name."""
        now, at = self.now_sql()
        rows = self._rows(
            f"SELECT holder FROM leases WHERE name >= ? AND name < ? AND expires_at > {now}"
            " ORDER BY holder",
            [NODE_LEASE, NODE_LEASE[:-1] + chr(ord(NODE_LEASE[-1]) + 1), *at],
        )
        return [str(r["holder"]) for r in rows]
