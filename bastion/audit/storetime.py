"""The store's clock, the one every node's leases and lost-node decisions are judged on.

Several nodes share a store, and each has its own wall clock: if each compared a lease's
expiry with its own, a node whose clock runs fast would take another's live lease early, or
judge a live node lost and close its sessions; one whose clock runs slow would keep a lease
past its expiry. So leases (bastion/audit/cluster.py) and the lost-node decision
(bastion/audit/lostnodes.py) read one clock, the store's:

- on PostgreSQL, the database server's (clock_timestamp(), read inside the statement that
  compares, or inside the write transaction that decides, after its lock is held): every
  node's comparison agrees, whatever its own clock says;
- on SQLite (one file on one machine, whose processes share one wall clock), the store's
  injectable clock (bastion/clock.py), as before.

The columns stay text in iso()'s shape (UTC, six digits of microseconds, 'Z'; compared as
text, in the "C" collation on PostgreSQL): the database's time is written in that very shape
(NOW_SQL, with the session's TimeZone out of it), so rows written before and after compare
alike and no migration is needed.

Tests: nobody can move the database's clock, so a test that lets minutes pass on PostgreSQL
stands a clock in for it: `store_clock`, set on each Store the test opens on that database
(as the database's clock is one for every node). Nothing in the product sets it; the tests
of skewed nodes (tests/audit/test_lease_clock.py) leave it unset, so their nodes' own clocks
judge nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bastion.audit.base import StoreBase
from bastion.audit.sqlconn import Conn
from bastion.clock import Clock, iso, parse_iso

# The database's time now, as iso() writes it (AT TIME ZONE 'UTC': a timestamp in UTC,
# whatever the session's TimeZone; clock_timestamp(): now, not when the transaction began).
NOW_SQL = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


class StoreTimeQueries(StoreBase):
    store_clock: Clock | None = None  # a test's stand-in for the store's clock (above)

    def _here_clock(self) -> Clock | None:
        """The clock read in this process, or None: the database's, read in SQL."""
        if self.store_clock is not None:
            return self.store_clock
        return None if self.conn.dialect == "postgresql" else self.clock

    def now_sql(self) -> tuple[str, list[Any]]:
        """The store's time now as an SQL expression (iso() text) and its parameters, for a
        statement that compares with it."""
        clock = self._here_clock()
        return (NOW_SQL, []) if clock is None else ("CAST(? AS TEXT)", [iso(clock.now())])

    def store_time(self, conn: Conn | None = None) -> datetime:
        """Now by the store's clock; inside `conn`'s transaction when given (a write that
        decides by it reads it after its lock is held)."""
        clock = self._here_clock()
        if clock is not None:
            return clock.now()
        sql = f"SELECT {NOW_SQL} AS now"
        if conn is None:
            return parse_iso(str(self._rows(sql)[0]["now"]))
        found = conn.execute(sql).fetchone()
        assert found is not None  # a SELECT without FROM has its one row
        return parse_iso(str(found[0]))
