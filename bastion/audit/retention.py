"""Store queries for retention: legal holds, what is due, and the prune and chain cut.

A hold (user, target or session) keeps that evidence until released. Everything here runs
on both engines. The chain is cut in one transaction: the checkpoint row first (the delete
trigger lets go only of events a checkpoint covers), then the delete, then the chained
retention.checkpoint and retention.pruned events (bastion/retention.py decides the cut).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.audit import qlogbind
from bastion.audit.base import StoreBase
from bastion.audit.chain import KEYED, ChainedEvent, Event
from bastion.audit.sqlconn import one
from bastion.clock import iso
from bastion.errors import Conflict, NotFound, UsageError

SCOPES = ("user", "target", "session")
HOLD_ADDED, HOLD_RELEASED = "hold.added", "hold.released"
PRUNED, CHECKPOINT = "retention.pruned", "retention.checkpoint"
PAGE = 5000  # rows read at a time where a month of them is read

# Sessions whose evidence an active hold keeps (by the person, the target's name or its id):
# as the sessions table says, and as the chain's session.opened events say (the table is
# editable: a held session moved to someone else, or its row deleted, stays held).
HELD_SESSIONS = (
    "SELECT s.id FROM sessions s WHERE"
    " s.user_id IN (SELECT u.id FROM users u JOIN legal_holds h ON h.scope = 'user'"
    " AND h.value = u.name AND h.released_at IS NULL)"
    " OR s.target_id IN (SELECT t.id FROM targets t JOIN legal_holds h ON h.scope = 'target'"
    " AND h.value = t.name AND h.released_at IS NULL)"
    " UNION SELECT value FROM legal_holds WHERE scope = 'session' AND released_at IS NULL"
    " UNION SELECT e.session_id FROM audit_events e WHERE e.kind = 'session.opened'"
    " AND e.session_id IS NOT NULL AND (e.actor IN (SELECT value FROM legal_holds WHERE"
    " scope = 'user' AND released_at IS NULL) OR e.subject IN (SELECT value FROM legal_holds"
    " WHERE scope = 'target' AND released_at IS NULL))"
)
# A statement still running in a session still open: its row is not final (its outcome is
# written when it ends), so it is neither archived nor deleted yet.
RUNNING = "(finished_at IS NULL AND session_id IN (SELECT id FROM sessions WHERE ended_at IS NULL))"
_ACTIVE = "SELECT value FROM legal_holds WHERE scope = ? AND released_at IS NULL"
# A session's opening as the chain holds it: retention judges a recording's age by this, not
# by the editable sessions.started_at (a recent session dated back is not pruned).
_OPENED_BEFORE = (
    "id IN (SELECT session_id FROM audit_events WHERE kind = 'session.opened' AND at < ?)"
)


@dataclass(frozen=True)
class Hold:
    """A legal hold; released_at None while it holds."""

    id: int
    scope: str
    value: str
    reason: str
    added_by: str
    added_at: str
    released_by: str | None
    released_at: str | None
    release_reason: str | None

    def public(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Checkpoint:
    """Where the chain starts: event `seq` (archived) had MAC `head`; signed by `node`."""

    seq: int
    head: str
    cut_at: str
    made_at: str
    archive: str
    archive_sha256: str
    node: str
    sig: str

    def public(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class DueRecording:
    session_id: str
    path: str
    sha256: str
    size: int | None
    started_at: str


class RetentionQueries(StoreBase):
    """Holds, and what retention may delete, on both engines."""

    def add_hold(self, scope: str, value: str, reason: str, actor: str) -> Hold:
        """Put a hold on a user, target or session (which must exist), chained as hold.added."""
        if scope not in SCOPES:
            raise UsageError(f"a hold is on a user, a target or a session, not {scope!r}")
        if not reason.strip():
            raise UsageError("a hold needs a reason (--reason)")
        table = {"user": "users", "target": "targets", "session": "sessions"}[scope]
        column = "id" if scope == "session" else "name"
        if not self._rows(f"SELECT 1 FROM {table} WHERE {column} = ?", [value]):
            raise NotFound(f"no {scope} {value!r} to hold")
        at = iso(self.clock.now())
        with self._write() as conn:
            conn.execute(
                "INSERT INTO legal_holds (scope, value, reason, added_by, added_at)"
                " VALUES (?,?,?,?,?)", (scope, value, reason, actor, at),
            )  # fmt: skip
            hold_id = int(one(conn.execute("SELECT max(id) FROM legal_holds"))[0])
            detail = {"hold": hold_id, "scope": scope, "reason": reason}
            self._append(conn, [Event(HOLD_ADDED, actor, value, "notice", None, detail)])
        return self.hold(hold_id)

    def release_hold(self, hold_id: int, reason: str, actor: str) -> Hold:
        """Release a hold with a reason, chained as hold.released; Conflict if released."""
        if not reason.strip():
            raise UsageError("releasing a hold needs a reason (--reason)")
        found = self.hold(hold_id)
        if found.released_at is not None:
            raise Conflict(f"hold {hold_id} was released at {found.released_at}")
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE legal_holds SET released_by = ?, released_at = ?, release_reason = ?"
                " WHERE id = ? AND released_at IS NULL",
                (actor, iso(self.clock.now()), reason, hold_id),
            ).rowcount
            if changed != 1:
                raise Conflict(f"hold {hold_id} was released meanwhile")
            detail = {"hold": hold_id, "scope": found.scope, "reason": reason,
                      "held_since": found.added_at, "held_for": found.reason}  # fmt: skip
            self._append(conn, [Event(HOLD_RELEASED, actor, found.value, "notice", None, detail)])
        return self.hold(hold_id)

    def hold(self, hold_id: int) -> Hold:
        rows = self._rows("SELECT * FROM legal_holds WHERE id = ?", [hold_id])
        if not rows:
            raise NotFound(f"no hold {hold_id}")
        return Hold(**rows[0])

    def holds(self, active_only: bool = False) -> list[Hold]:
        live = " WHERE released_at IS NULL" if active_only else ""
        return [Hold(**r) for r in self._rows(f"SELECT * FROM legal_holds{live} ORDER BY id")]

    def held_since(self) -> str | None:
        """The time of the oldest evidence an active hold keeps: a held session's start, or
        an event by or about a held user or target, or of a held session (None: no hold)."""
        found = [
            self._rows(f"SELECT min(started_at) AS t FROM sessions WHERE id IN ({HELD_SESSIONS})"),
            self._rows(
                f"SELECT min(at) AS t FROM audit_events WHERE actor IN ({_ACTIVE})"
                f" OR subject IN ({_ACTIVE}) OR subject IN ({_ACTIVE}) OR subject IN ({_ACTIVE})"
                f" OR session_id IN ({HELD_SESSIONS})", ["user", "user", "target", "session"],
            ),
        ]  # fmt: skip
        times = [str(rows[0]["t"]) for rows in found if rows and rows[0]["t"] is not None]
        return min(times) if times else None

    def hold_problem(self) -> str:
        """'' when the holds table agrees with the chain: every hold the chain shows put and
        not released (its hold.added event is never cut while it holds) is active in the
        table with the same scope and value; else what differs (the table was edited)."""
        chained: dict[int, dict[str, Any]] = {}
        for row in self._rows("SELECT kind, subject, detail FROM audit_events WHERE kind IN"
                              " (?, ?) ORDER BY seq", [HOLD_ADDED, HOLD_RELEASED]):  # fmt: skip
            detail = json.loads(row["detail"])
            if row["kind"] == HOLD_ADDED:
                chained[int(detail["hold"])] = {"scope": detail["scope"], "value": row["subject"]}
            else:
                chained.pop(int(detail["hold"]), None)
        active = {h.id: {"scope": h.scope, "value": h.value} for h in self.holds(True)}
        for hold_id, held in sorted(chained.items()):
            if active.get(hold_id) != held:
                return (
                    f"hold {hold_id} on {held['scope']} {held['value']} was never released"
                    " in the audit chain, but the holds table does not hold it (edited)"
                )
        return ""

    def checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint: where the chain in the store starts (None: at event 1)."""
        rows = self._rows("SELECT * FROM chain_checkpoints ORDER BY seq DESC LIMIT 1")
        return Checkpoint(**rows[0]) if rows else None

    def recordings_due(self, before: str) -> list[DueRecording]:
        """Closed sessions started before `before` whose recording is still kept, not held."""
        rows = self._rows(
            "SELECT id, recording_path, recording_sha256, recording_size, started_at FROM"
            " sessions s WHERE started_at < ? AND ended_at IS NOT NULL AND recording_path IS"
            f" NOT NULL AND recording_pruned_at IS NULL AND id NOT IN ({HELD_SESSIONS})"
            f" AND {_OPENED_BEFORE} ORDER BY started_at", [before, before],
        )  # fmt: skip
        return [DueRecording(r["id"], r["recording_path"], r["recording_sha256"] or "",
                             r["recording_size"], r["started_at"]) for r in rows]  # fmt: skip

    def query_runs_due(self, before: str, page: int | None = None) -> list[tuple[int, int]]:
        """The (first id, last id) runs of query-log rows written before `before` of sessions
        no hold keeps, read a page of ids at a time (not a statement still running: RUNNING).
        Only rows bound by commit events (qlogbind.py): a row of the first form is proven by
        its own statement events, which say it was deleted; those rows stay (and hold the
        chain's cut back)."""
        runs: list[tuple[int, int]] = []
        sql = (f"SELECT id FROM queries WHERE at < ? AND id > ? AND session_id NOT IN"
               f" ({HELD_SESSIONS}) AND NOT {RUNNING} ORDER BY id LIMIT ?")  # fmt: skip
        after = self._first_bound() - 1
        while rows := self._rows(sql, [before, after, page or PAGE]):
            after = int(rows[-1]["id"])
            id_runs([int(r["id"]) for r in rows], runs)
        return runs

    def queries_in(self, runs: Sequence[tuple[int, int]], page: int | None = None
                   ) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Every query-log row in these id runs as it stands, in id order, read a page at a
        time (never all at once)."""
        sql = "SELECT * FROM queries WHERE id > ? AND id <= ? ORDER BY id LIMIT ?"
        for lo, hi in runs:
            after = lo - 1
            while rows := self._rows(sql, [after, hi, page or PAGE]):
                yield from rows
                after = int(rows[-1]["id"])

    def oldest_kept(self, rec_before: str | None = None, q_before: str | None = None) -> str | None:
        """The oldest time whose evidence stays in the store and is proven by the chain: an
        open session's start, a kept recording's session start, a kept query row; recordings
        started before `rec_before` and rows before `q_before` count as gone (about to be
        pruned; held ones are the holds' own bound)."""
        found = [
            self._rows("SELECT min(started_at) AS t FROM sessions WHERE ended_at IS NULL"),
            self._rows("SELECT min(started_at) AS t FROM sessions WHERE recording_path IS NOT"
                       " NULL AND recording_pruned_at IS NULL AND started_at >= ?",
                       [rec_before or ""]),
            self._rows("SELECT min(at) AS t FROM queries WHERE at >= ? OR id < ?",
                       [q_before or "", self._first_bound()]),  # the first form stays
        ]  # fmt: skip
        times = [str(rows[0]["t"]) for rows in found if rows and rows[0]["t"] is not None]
        return min(times) if times else None

    def _first_bound(self) -> int:
        """The first query row id a commit event binds (none yet: past every id)."""
        with self._reading() as conn:
            first = qlogbind.boundary(conn)
        return 2**62 if first is None else first

    def last_seq_before(self, at: str) -> int:
        """The last event before the first one written at or after `at` (0: none): every
        event up to it was written before `at`, even where a node's clock was behind and
        a later event carries an earlier time."""
        rows = self._rows("SELECT seq FROM audit_events WHERE at >= ? ORDER BY seq LIMIT 1", [at])
        if rows:
            return int(rows[0]["seq"]) - 1
        return self.chain_head()[0]

    def first_keyed_seq(self) -> int | None:
        rows = self._rows("SELECT min(seq) AS s FROM audit_events WHERE alg = ?", [KEYED])
        return None if rows[0]["s"] is None else int(rows[0]["s"])

    def events_between(self, after: int, upto: int, page: int | None = None
                       ) -> Iterator[ChainedEvent]:  # fmt: skip
        """The events after seq `after` up to `upto`, in seq order, read a page at a time."""
        sql = "SELECT * FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        while rows := self._rows(sql, [after, upto, page or PAGE]):
            yield from (ChainedEvent(**row) for row in rows)
            after = int(rows[-1]["seq"])

    def prune_recordings(self, ids: Sequence[str], detail: dict[str, Any],
                         actor: str) -> list[str]:  # fmt: skip
        """Mark these sessions' recordings pruned now, but not one a hold put meanwhile keeps,
        chained as one retention.pruned naming those marked; returns them."""
        at = iso(self.clock.now())
        marked: list[str] = []
        with self._write() as conn:
            for sid in ids:
                if conn.execute("UPDATE sessions SET recording_pruned_at = ? WHERE id = ?"
                                f" AND recording_pruned_at IS NULL AND id NOT IN ({HELD_SESSIONS})",
                                (at, sid)).rowcount:  # fmt: skip
                    marked.append(sid)
            if marked:
                detail = {**detail, "count": len(marked), "sessions": marked}
                self._append(conn, [Event(PRUNED, actor, "recordings", "notice", None, detail)])
        return marked

    def prune_queries(self, runs: Sequence[tuple[int, int]], before: str,
                      detail: dict[str, Any], actor: str) -> int:  # fmt: skip
        """Delete the query rows in these id runs written before `before` (held rows are not
        in a run), chained as one retention.pruned naming the runs."""
        gone: list[int] = []
        with self._write() as conn:
            for lo, hi in runs:  # not a row a hold put meanwhile keeps
                found = conn.execute(
                    "SELECT id FROM queries WHERE id >= ? AND id <= ? AND at < ? AND session_id"
                    f" NOT IN ({HELD_SESSIONS}) AND NOT {RUNNING} ORDER BY id", (lo, hi, before),
                ).fetchall()  # fmt: skip
                gone += [int(r[0]) for r in found]
            deleted = id_runs(gone)
            for lo, hi in deleted:
                conn.execute("DELETE FROM queries WHERE id >= ? AND id <= ?", (lo, hi))
            detail = {**detail, "runs": [list(r) for r in deleted], "deleted": len(gone)}
            self._append(conn, [Event(PRUNED, actor, "queries", "notice", None, detail)])
        return len(gone)

    def cut_chain(self, point: Checkpoint, detail: dict[str, Any], actor: str) -> int:
        """In one transaction: the checkpoint row, the delete of every event up to it, and
        the chained retention.checkpoint and retention.pruned events. Refused unless the
        event at the cut still has the checkpoint's head."""
        with self._write() as conn:
            conn.lock_chain()
            held = conn.execute("SELECT row_hash FROM audit_events WHERE seq = ?",
                                [point.seq]).fetchone()  # fmt: skip
            if held is None or held[0] != point.head:
                raise Conflict(f"event {point.seq} is not the one archived: nothing was cut")
            since = self.held_since()  # a hold put since the run last looked, under the lock
            if since is not None and self.last_seq_before(since) < point.seq:
                raise Conflict(f"a legal hold put meanwhile keeps events from {since}:"
                               " nothing was cut")  # fmt: skip
            conn.execute(
                "INSERT INTO chain_checkpoints (seq, head, cut_at, made_at, archive,"
                " archive_sha256, node, sig) VALUES (?,?,?,?,?,?,?,?)",
                (point.seq, point.head, point.cut_at, point.made_at, point.archive,
                 point.archive_sha256, point.node, point.sig),
            )  # fmt: skip
            gone = conn.execute("DELETE FROM audit_events WHERE seq <= ?", [point.seq]).rowcount
            marks = {**point.public(), "events_deleted": gone}
            self._append(conn, [
                Event(CHECKPOINT, actor, point.archive, "notice", None, marks),
                Event(PRUNED, actor, "events", "notice", None, {**detail, "deleted": gone}),
            ])  # fmt: skip
        return int(gone)

    def checkpoint_event(self, point: Checkpoint) -> dict[str, Any] | None:
        """The chained retention.checkpoint event's detail that names this checkpoint."""
        rows = self._rows("SELECT detail FROM audit_events WHERE kind = ? AND seq > ?"
                          " ORDER BY seq", [CHECKPOINT, point.seq])  # fmt: skip
        for row in rows:
            detail = json.loads(row["detail"])
            if isinstance(detail, dict) and detail.get("seq") == point.seq:
                return detail
        return None

    def pruned_query_runs(self) -> list[tuple[int, int]]:
        return pruned_query_runs(self)

    def recording_pruned_at(self, session_id: str | None = None) -> dict[str, str]:
        """Sessions whose recording retention deleted (this one only, if named), and when.
        The row's mark counts only where the chain agrees: a chained retention.pruned names
        the session, or its session.closed is no longer in the store (cut after it). A mark
        an admin set on a row alone excuses nothing."""
        one = "" if session_id is None else " AND id = ?"
        params = [] if session_id is None else [session_id]
        rows = self._rows("SELECT id, recording_pruned_at FROM sessions"
                          f" WHERE recording_pruned_at IS NOT NULL{one}", params)  # fmt: skip
        if not rows:
            return {}
        closed = {str(r["session_id"]) for r in self._rows(
            "SELECT session_id FROM audit_events WHERE kind = 'session.closed' AND session_id"
            f" IN (SELECT id FROM sessions WHERE recording_pruned_at IS NOT NULL{one})", params,
        )}  # fmt: skip
        named = set(_pruned_sessions(self))
        return {str(r["id"]): str(r["recording_pruned_at"]) for r in rows
                if str(r["id"]) in named or str(r["id"]) not in closed}  # fmt: skip

    def _chain_start(self) -> tuple[tuple[int, str] | None, str]:
        """The newest checkpoint's (seq, MAC), and '' when a chained retention.checkpoint
        event names it exactly (the walk then proves that event); else what is wrong."""
        point = self.checkpoint()
        if point is None:
            return None, ""
        chained = self.checkpoint_event(point)
        if chained is None or any(chained.get(k) != v for k, v in point.public().items()):
            return (point.seq, point.head), (
                f"the chain's checkpoint at event {point.seq} is not the one the chain holds"
                " (no retention.checkpoint event names it as it is: planted or edited)"
            )
        return (point.seq, point.head), ""


def pruned_query_runs(store: StoreBase) -> list[tuple[int, int]]:
    """Every (first id, last id) run of query rows retention deleted, as the chain holds them."""
    rows = store._rows("SELECT detail FROM audit_events WHERE kind = ? AND subject = ?",
                       [PRUNED, "queries"])  # fmt: skip
    out: list[tuple[int, int]] = []
    for row in rows:
        detail = json.loads(row["detail"])
        out += [(int(lo), int(hi)) for lo, hi in detail.get("runs", [])]
    return sorted(out)


def _pruned_sessions(store: StoreBase) -> list[str]:
    """Every session whose recording a chained retention.pruned names."""
    rows = store._rows("SELECT detail FROM audit_events WHERE kind = ? AND subject = ?",
                       [PRUNED, "recordings"])  # fmt: skip
    return [str(sid) for row in rows for sid in json.loads(row["detail"]).get("sessions", [])]


def id_runs(ids: list[int], out: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Sorted ids as (first, last) runs of consecutive ids (added to `out`'s, if given)."""
    out = [] if out is None else out
    for i in ids:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out
