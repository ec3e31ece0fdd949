"""Store queries for the SIEM export: each sink's cursor into the audit chain (its outbox).

The chain is the outbox: an event is there exactly when the transaction that made it
committed, in seq order. A sink's worker reads the events after its cursor, delivers them,
and only then moves the cursor on, with a conditional UPDATE that also requires it to still
hold the sink's lease (on several nodes only the holder delivers; one that lost the lease
mid-batch cannot move the cursor). Moving a cursor chains nothing: the export of an event
never makes another event. Each cursor carries a MAC under the chain key over the sink's
name and seq (migration 0029): a cursor edited in the database without the key is seen.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bastion.audit.chain import ChainedEvent, ChainKey, Event
from bastion.audit.cluster import Lease
from bastion.audit.sqlconn import Conn
from bastion.audit.storetime import StoreTimeQueries
from bastion.clock import iso

CONFIGURED = "export.sink_configured"
CURSOR_MACS = 29  # the migration that gave each cursor its MAC
EXPORT_LEASE = "export:"  # `export:NAME`: the node delivering to sink NAME


@dataclass(frozen=True)
class ExportCursor:
    """A sink's place in the chain: the last seq it took (0: none yet)."""

    sink: str
    kind: str
    delivered_seq: int
    enabled: bool
    updated_at: str
    intact: bool | None = None  # its MAC holds (None: the store has no chain key to check)


def cursor_mac(key: ChainKey, sink: str, seq: int) -> str:
    """The MAC of `sink`'s cursor standing at `seq` (lower hex)."""
    message = f"bastion export cursor v1\n{sink}\n{seq}".encode()
    return hmac.digest(key.secret, message, "sha256").hex()


def export_lease(sink: str) -> str:
    """The name of the lease held by the node that delivers to `sink`."""
    return EXPORT_LEASE + sink


def export_low_water(conn: Conn) -> int | None:
    """The lowest cursor over the enabled sinks (None: no sink is enabled): retention must
    keep every event above it, for some sink has not taken it yet."""
    row = conn.execute("SELECT min(delivered_seq) FROM export_cursors WHERE enabled = 1").fetchone()
    return None if row is None or row[0] is None else int(row[0])


class ExportQueries(StoreTimeQueries):
    def migrate(self) -> list[str]:
        """The store's migrations; the one that adds the cursors' MACs (0029) then signs
        each cursor as it stands, once (with the chain key; without it, the next bastion
        that has it finds them unsigned and sends those sinks everything again)."""
        applied = super().migrate()
        signing = any(name.startswith(f"{CURSOR_MACS:04d}_") for name in applied)
        if signing and self.chain_key is not None:
            with self._write(chained=False) as conn:
                rows = conn.execute("SELECT sink, delivered_seq FROM export_cursors")
                for sink, seq in rows.fetchall():
                    conn.execute("UPDATE export_cursors SET mac = ? WHERE sink = ?",
                                 (self._cursor_mac(sink, int(seq)), sink))  # fmt: skip
        return applied

    def export_sinks_configured(self, sinks: Sequence[tuple[str, ...]]) -> None:
        """Make a cursor for each configured (name, kind[, selection]) that has none,
        starting before the first event (a new sink gets the whole chain), enable them, and
        disable every other: a sink taken out of the config no longer holds retention back.
        Each sink added, changed (kind or selection) or taken out is chained, once, as
        `export.sink_configured`, in the same transaction."""
        now = iso(self.clock.now())
        with self._write() as conn:
            rows = conn.execute("SELECT sink, kind, selection, enabled FROM export_cursors")
            was = {r[0]: _chosen(r[1], r[2]) for r in rows.fetchall() if r[3]}
            wanted = {sink[0]: _chosen(sink[1], sink[2] if len(sink) > 2 else "")
                      for sink in sinks}  # fmt: skip
            for name, kind, *rest in sinks:
                conn.execute(
                    "INSERT INTO export_cursors (sink, kind, delivered_seq, enabled, updated_at,"
                    " mac, selection) VALUES (?,?,0,1,?,?,?) ON CONFLICT (sink) DO UPDATE SET"
                    " enabled = 1, kind = excluded.kind, selection = excluded.selection",
                    (name, kind, now, self._cursor_mac(name, 0), rest[0] if rest else ""),
                )
            names = list(wanted)
            marks = ",".join("?" * len(names))
            unlisted = f" AND sink NOT IN ({marks})" if names else ""
            conn.execute(f"UPDATE export_cursors SET enabled = 0 WHERE enabled = 1{unlisted}",
                         names)  # fmt: skip
            self._append(conn, _configured(was, wanted))

    def _cursor_mac(self, sink: str, seq: int) -> str:
        return "" if self.chain_key is None else cursor_mac(self.chain_key, sink, seq)

    def _intact(self, sink: str, seq: int, mac: str) -> bool | None:
        if self.chain_key is None:
            return None
        return hmac.compare_digest(mac, cursor_mac(self.chain_key, sink, seq))

    def export_cursors(self) -> list[ExportCursor]:
        """Every sink's cursor, by name, each with whether its MAC holds."""
        rows = self._rows("SELECT sink, kind, delivered_seq, enabled, updated_at, mac"
                          " FROM export_cursors ORDER BY sink")  # fmt: skip
        return [ExportCursor(r["sink"], r["kind"], int(r["delivered_seq"]), bool(r["enabled"]),
                             str(r["updated_at"]),
                             self._intact(r["sink"], int(r["delivered_seq"]), str(r["mac"])))
                for r in rows]  # fmt: skip

    def export_cursor(self, sink: str) -> int:
        """The last seq `sink` took (0 for a sink with no cursor yet)."""
        return self.export_position(sink)[0]

    def export_position(self, sink: str) -> tuple[int, bool, bool]:
        """`sink`'s cursor, whether its MAC holds (a store without the chain key cannot tell:
        True), and whether the store counts the sink (its row is there, enabled)."""
        rows = self._rows("SELECT delivered_seq, mac, enabled FROM export_cursors"
                          " WHERE sink = ?", [sink])  # fmt: skip
        if not rows:
            return 0, True, False
        seq = int(rows[0]["delivered_seq"])
        intact = self._intact(sink, seq, str(rows[0]["mac"])) is not False
        return seq, intact, bool(rows[0]["enabled"])

    def reset_export(self, sink: str, was: int, lease: Lease | None) -> bool:
        """Put back to 0 a cursor whose MAC did not hold (standing at `was`): the sink gets
        the whole kept chain again. Same conditions as advance_export."""
        return self._move_export(sink, was, 0, lease, check_was=False)

    def advance_export(self, sink: str, was: int, to: int, lease: Lease | None) -> bool:
        """Move `sink`'s cursor from `was` to `to` after a delivery, only if it still stands
        at `was` with its MAC and (with a lease) its holder still holds it, unexpired; False
        otherwise."""
        if to < was:
            raise ValueError("an export cursor only moves forward")
        return self._move_export(sink, was, to, lease, check_was=True)

    def _move_export(self, sink: str, was: int, to: int, lease: Lease | None, *,
                     check_was: bool) -> bool:  # fmt: skip
        params: list[object] = [to, self._cursor_mac(sink, to), iso(self.clock.now()), sink, was]
        held = ""
        if check_was and self.chain_key is not None:
            held, params = " AND mac = ?", [*params, self._cursor_mac(sink, was)]
        if lease is not None:
            now, at = self.now_sql()
            held += (" AND EXISTS (SELECT 1 FROM leases WHERE name = ? AND holder = ?"
                    f" AND term = ? AND expires_at > {now})")  # fmt: skip
            params += [lease.name, lease.holder, lease.term, *at]
        with self._write(chained=False) as conn:
            changed = conn.execute(
                "UPDATE export_cursors SET delivered_seq = ?, mac = ?, updated_at = ?"
                " WHERE sink = ? AND delivered_seq = ? AND enabled = 1" + held,
                params,
            ).rowcount
        return changed == 1

    def export_low_water(self) -> int | None:
        """export_low_water on this store's connection, where a cursor whose MAC does not
        hold counts as 0 (edited forward by hand, it would let retention cut what the sink
        never had)."""
        rows = self._rows("SELECT sink, delivered_seq, mac FROM export_cursors"
                          " WHERE enabled = 1")  # fmt: skip
        if not rows:
            return None
        return min(int(r["delivered_seq"]) if self._intact(r["sink"], int(r["delivered_seq"]),
                                                          str(r["mac"])) is not False else 0
                   for r in rows)  # fmt: skip


def _chosen(kind: str, selection: str) -> dict[str, Any]:
    return {"kind": kind, **(json.loads(selection) if selection else {})}


def _configured(was: dict[str, Any], now: dict[str, Any]) -> list[Event]:
    """One `export.sink_configured` per sink added (notice), changed or taken out (warning:
    the SIEM may get less from now on)."""
    events = []
    for sink in sorted(was.keys() | now.keys()):
        before, after = was.get(sink), now.get(sink)
        if before != after:
            severity = "notice" if before is None else "warning"
            detail = {"sink": sink, "was": before, "now": after}
            events.append(Event(CONFIGURED, "bastion:export", sink, severity, detail=detail))
    return events


def events_after(conn: Conn, after: int, limit: int) -> list[ChainedEvent]:
    """Up to `limit` chained events after seq `after`, in seq order, on a reader connection
    of the export's own (never the store's writer: a slow sink never holds a login up)."""
    rows = conn.execute(
        "SELECT seq, at, kind, severity, actor, subject, session_id, detail, prev_hash,"
        " row_hash, alg FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [ChainedEvent(*row) for row in rows]
