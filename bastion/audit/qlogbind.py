"""One chained event per group commit binds that commit's statement records; rows checked.

A `queries` row is two records: its start (id, session, time, step, text, parameters, refusal,
kind, key, why the text was kept whole) and its end (id, finish time, rows, tag, SQLSTATE,
duration, masking note), each encoded from the row's own columns and digested (the first 16
bytes of SHA-256; the encoding is in bastion/audit/_fastqlog.c, and `encode` below is its
reference). The commit that writes rows appends one `queries.committed` event, keyed like every
chained event, whose detail binds them:

    first     the id of the commit's first new row (its new rows are first, first+1, ...)
    starts    hex: the start digest of each new row, in id order
    ends      hex: per statement that ended in this commit, its row id (8 bytes) and end digest
    sessions  {session id: [person, target]} for the new rows' sessions
    messages  {key: the server's error text the client saw scrubbed} (when there is one)
    orphans   outcomes of statements whose row this writer did not hold (rare)

A row with an id from the first commit event's `first` on must match the digests its commits
bind; older rows are of the first form (a chained event per statement, bastion/audit/querylog.py).
Since the id is in both records, rows swapped, renumbered, copied or deleted are all named.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from bastion.audit import _fastqlog
from bastion.audit.chain import Event, canonical_json
from bastion.audit.dialect import fragment
from bastion.audit.sqlconn import Conn, DbError, Dialect, one
from bastion.errors import StoreError

KIND = "queries.committed"
START_TAG = "query start v1"
END_TAG = "query end v1"
LIMIT = 100  # findings read at most
EVERYTHING = ("", "\U0010ffff")  # [start, end) holding every time, also one an admin wrote
Field = str | int | None


def encode(fields: Sequence[Field]) -> bytes:
    """The reference encoding of a record (what _fastqlog digests): by type, unambiguous."""
    out = bytearray()
    for value in fields:
        if value is None:
            out += b"n"
        elif isinstance(value, int):
            out += b"i%d;" % value
        else:
            raw = value.encode()
            out += b"s%d:" % len(raw) + raw
    return bytes(out)


def reference_digest(fields: Sequence[Field]) -> bytes:
    return hashlib.sha256(encode(fields)).digest()[:16]


def start_digest(row: Sequence[Any]) -> bytes:
    """A new row's start record; row is (id, session, at, step, sql, parameters, refused,
    kind, key, finished_at, rows, tag, sqlstate, duration, note, kept_whole)."""
    return _fastqlog.digest((START_TAG, *row[:9], row[15]))


def end_digest(end: Sequence[Any]) -> bytes:
    """An end record; end is (id, finished_at, rows, tag, sqlstate, duration, note)."""
    return _fastqlog.digest((END_TAG, *end))


class Commit:
    """The statement records of one group commit, gathered into its chained event."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.starts: list[bytes] = []
        self.ends: list[bytes] = []
        self.sessions: dict[str, list[str]] = {}
        self.messages: dict[str, str] = {}
        self.orphans: list[dict[str, Any]] = []

    def started(self, row: Sequence[Any], user: str, target: str) -> None:
        self.starts.append(start_digest(row))
        self.sessions[row[1]] = [user, target]

    def ended(self, end: Sequence[Any], key: str, message: str | None) -> None:
        self.ends.append(int(end[0]).to_bytes(8, "big") + end_digest(end))
        if message is not None:
            self.messages[key] = message

    def orphan(self, outcome: dict[str, Any]) -> None:
        self.orphans.append(outcome)

    def event(self) -> Event | None:
        """The commit's chained event; None when it holds no statement record."""
        if not (self.starts or self.ends or self.orphans):
            return None
        detail: dict[str, Any] = {
            "first": self.first,
            "starts": b"".join(self.starts).hex(),
            "ends": b"".join(self.ends).hex(),
            "sessions": self.sessions,
        }
        if self.messages:
            detail["messages"] = self.messages
        if self.orphans:
            detail["orphans"] = self.orphans
        return Event(KIND, "bastion", "", "info", None, detail)


@dataclass(frozen=True)
class Finding:
    """A row that its commit does not vouch for: its id, what is wrong, the event, its key."""

    id: int
    code: int
    seq: int | None
    key: str | None

    def __str__(self) -> str:
        row = f"row {self.id}" + (f", event {self.seq}" if self.seq is not None else "")
        if self.code == 2:
            return (f"query log row {self.id} (statement {self.key}) is in no chained commit"
                    " (added or copied)")  # fmt: skip
        if self.code == 3:
            return (f"query log row {self.id}, bound by chained commit event {self.seq}, was"
                    " deleted (or renumbered)")  # fmt: skip
        what = {1: "", 4: " (its outcome)", 5: " (an outcome the chain never saw)"}[self.code]
        return (
            f"statement {self.key} in the query log differs from its chained commit{what} ({row})"
        )


def _first_sql(engine: Dialect) -> str:
    first = fragment(engine, "json_number", col="detail", path="first")
    return f"SELECT {first} FROM audit_events WHERE kind = '{KIND}'"


def _commits_sql(engine: Dialect) -> str:
    first = fragment(engine, "json_number", col="detail", path="first")
    starts = fragment(engine, "json_text", col="detail", path="starts")
    ends = fragment(engine, "json_text", col="detail", path="ends")
    events = f"FROM audit_events WHERE kind = '{KIND}' AND at >= ? AND at < ?"
    if engine == "postgresql":  # each detail parsed once, not once per field read from it
        events = f"FROM (SELECT seq, detail::jsonb AS detail {events} OFFSET 0) AS e"
    return f"SELECT seq, {first} AS first, {starts} AS starts, {ends} AS ends {events} ORDER BY seq"


_ROW_COLUMNS = (
    "id, session_id, at, protocol_step, sql, parameters, refused_reason, statement_kind,"
    " query_key, kept_whole, finished_at, rows, command_tag, sqlstate, duration_us,"
    " masked_columns"
)  # as _fastqlog.h's SELECT_COLUMNS names them
_ROWS = f"SELECT {_ROW_COLUMNS} FROM queries WHERE id BETWEEN $1 AND $2 ORDER BY id"
# How _fastqlog reads each column's binary COPY value, by its PostgreSQL type: integers by
# their width, text as its bytes; any other type (an admin's ALTER) as "x", never a match.
_KINDS = {"int8": "8", "int4": "4", "int2": "2", "text": "s", "varchar": "s"}
_ROW_IDS = "SELECT min(id), max(id) FROM queries WHERE at >= ? AND at < ? AND id >= ?"
_ALL_ROW_IDS = "SELECT min(id), max(id) FROM queries WHERE id >= ?"  # whatever their time


def _people_sql(engine: Dialect) -> str:
    actor = fragment(engine, "json_item_text", value="j.value", index=0)
    subject = fragment(engine, "json_item_text", value="j.value", index=1)
    each = fragment(engine, "json_each", col="a.detail", path="sessions")
    return (
        "SELECT e.session_id, e.actor, e.subject, u.name AS person, t.name AS target FROM ("
        f"SELECT DISTINCT j.key AS session_id, {actor} AS actor, {subject} AS subject"
        f" FROM audit_events a, {each} j WHERE a.kind = '{KIND}' AND a.at >= ? AND a.at < ?) e"
        " LEFT JOIN sessions s ON s.id = e.session_id LEFT JOIN users u ON u.id = s.user_id"
        " LEFT JOIN targets t ON t.id = s.target_id"
        " WHERE u.name IS DISTINCT FROM e.actor OR t.name IS DISTINCT FROM e.subject LIMIT 1"
    )


_END_COLUMNS = "id, finished_at, rows, command_tag, sqlstate, duration_us, masked_columns"


def boundary(conn: Conn) -> int | None:
    """The first id of the second form (bound by commits), or None: no commit event yet."""
    found = conn.execute(_first_sql(conn.dialect) + " ORDER BY seq LIMIT 1").fetchone()
    return None if found is None or found[0] is None else int(found[0])


def check(
    reader: Callable[[], Conn], path: Path | None, week: tuple[str, str], wide: tuple[str, str],
    pruned: Sequence[tuple[int, int]] = (),
) -> list[Finding]:  # fmt: skip
    """The rows of [week) bound by commits, and the rows the commits of [wide) bind, that do
    not match: in id order, the deleted ones last. [] when the store has no commit event.
    `reader` opens a read-only connection to the store; the rows are digested in C straight
    from the SQLite file at `path`, or, with no path (PostgreSQL), streamed by one binary COPY
    on that connection, in the snapshot the events were read in, and digested in C as the
    stream comes.

    The events and the rows are read on two connections: on a live store a commit can land
    between the two reads, and its rows look unbound. Rows and their commit event are
    written in one transaction, so what a second pass still finds is real. `pruned`: runs
    of row ids retention deleted (as chained): their commits' records are not expected."""
    found = _check_once(reader, path, week, wide, pruned)
    if not found:
        return found
    again = {(f.id, f.code) for f in _check_once(reader, path, week, wide, pruned)}
    return [f for f in found if (f.id, f.code) in again]


class _Commit(NamedTuple):
    """Where a commit event's records are: its seq, first row id and how many new rows, and
    its ends' place in the joined end records (the hex itself is not kept: a week's is
    80 MB of text)."""

    seq: int
    first: int
    new_rows: int
    ends_from: int
    ends_to: int


def _expected(
    conn: Conn, wide: tuple[str, str]
) -> tuple[list[_Commit], list[tuple[int, bytes]], bytes]:
    """The commits of [wide), their start digests by first id, and their end records."""
    commits: list[_Commit] = []
    starts: list[tuple[int, bytes]] = []
    ends: list[bytes] = []
    size = 0
    for seq, first, starts_hex, ends_hex in conn.execute(_commits_sql(conn.dialect), wide):
        blob, tail = bytes.fromhex(starts_hex or ""), bytes.fromhex(ends_hex or "")
        commits.append(_Commit(int(seq), int(first), len(blob) // 16, size, size + len(tail)))
        starts.append((int(first), blob))
        ends.append(tail)
        size += len(tail)
    return commits, starts, b"".join(ends)


def _check_once(
    reader: Callable[[], Conn], path: Path | None, week: tuple[str, str], wide: tuple[str, str],
    pruned: Sequence[tuple[int, int]] = (),
) -> list[Finding]:  # fmt: skip
    try:
        with closing(reader()) as conn:
            if path is None:
                conn.begin_read()  # the events and the rows in one snapshot
            try:
                return _check_on(conn, path, week, wide, pruned)
            finally:
                if conn.in_transaction:
                    conn.rollback()
    except (DbError, OSError, ValueError) as exc:
        where = path if path is not None else "the store"
        raise StoreError(f"cannot check the query log in {where}: {exc}") from exc


def _check_on(
    conn: Conn, path: Path | None, week: tuple[str, str], wide: tuple[str, str],
    pruned: Sequence[tuple[int, int]] = (),
) -> list[Finding]:  # fmt: skip
    first = boundary(conn)
    if first is None:
        return []
    commits, starts, ends = _expected(conn, wide)
    if pruned:
        starts, ends = _unpruned(starts, ends, sorted(pruned))
    if week == EVERYTHING:
        lo, hi = one(conn.execute(_ALL_ROW_IDS, (first,)))
    else:
        lo, hi = one(conn.execute(_ROW_IDS, (*week, first)))
    lo, hi = int(lo) if lo is not None else 1, int(hi or 0)
    if path is not None:
        found = _fastqlog.check(str(path), lo, hi, first, *week, starts, ends, LIMIT)
    else:
        found = _check_copied(conn, (lo, hi, first, *week), starts, ends)
    del starts
    return [_finding(conn, commits, ends, i, code) for i, code in found
            if code != 4 or not _same_note(conn, ends, i)]  # fmt: skip


def _check_copied(
    conn: Conn, span: tuple[int, int, int, str, str], starts: list[tuple[int, bytes]], ends: bytes
) -> list[tuple[int, int]]:
    """On PostgreSQL: the rows streamed by COPY (binary) in the open snapshot, parsed and
    digested in C as the pieces come (no Python object per row)."""
    from bastion.audit.pgconn import PgConn  # noqa: PLC0415 - asyncpg, PostgreSQL only

    if not isinstance(conn, PgConn):
        raise DbError("the query log's rows are streamed from PostgreSQL only")
    kinds = "".join(_KINDS.get(name, "x") for name in conn.run(_column_types))

    def fetch(lo: int, hi: int, feed: Callable[[bytes], None]) -> None:
        async def copy(pg: Any) -> None:
            async def piece(data: bytes) -> None:
                feed(data)

            await pg.copy_from_query(_ROWS, lo, hi, output=piece, format="binary")

        conn.run(copy)

    return _fastqlog.check_rows(fetch, kinds, *span, starts, ends, LIMIT)


async def _column_types(pg: Any) -> list[str]:
    """The PostgreSQL type of each column the rows are read with."""
    statement = await pg.prepare(_ROWS)
    return [attribute.type.name for attribute in statement.get_attributes()]


def people_problem(conn: Conn, week: tuple[str, str]) -> dict[str, Any] | None:
    """A session whose person or target is not what its statements' commits say, if any."""
    try:
        found = conn.execute(_people_sql(conn.dialect), week).fetchone()
        return dict(found) if found is not None else None
    except DbError as exc:
        raise StoreError(f"cannot check the query log: {exc}") from exc


def _same_note(conn: Conn, ends: bytes, row_id: int) -> bool:
    """Whether the row's outcome matches once its masking note is in canonical form (the same
    note written with other spacing, key order or escapes is no finding)."""
    row = conn.execute(f"SELECT {_END_COLUMNS} FROM queries WHERE id = ?", (row_id,)).fetchone()
    if row is None or row["masked_columns"] is None:
        return False
    try:
        note = canonical_json(json.loads(row["masked_columns"]))
    except ValueError:
        return False
    want = _bound_end(ends, row_id)
    return want is not None and end_digest((*tuple(row)[:6], note)) == want


def _bound_end(ends: bytes, row_id: int) -> bytes | None:
    head = row_id.to_bytes(8, "big")
    for at in range(0, len(ends), 24):
        if ends[at : at + 8] == head:
            return ends[at + 8 : at + 24]
    return None


def _finding(conn: Conn, commits: list[_Commit], ends: bytes, row_id: int, code: int) -> Finding:
    row = conn.execute("SELECT query_key FROM queries WHERE id = ?", (row_id,)).fetchone()
    seq = _binding_seq(commits, ends, row_id, code)
    return Finding(row_id, code, seq, row[0] if row else None)


def _binding_seq(commits: list[_Commit], ends: bytes, row_id: int, code: int) -> int | None:
    """The seq of the commit event that binds the row (its end's, for an outcome)."""
    head = row_id.to_bytes(8, "big")
    if code in (3, 4):
        for c in commits:
            bound = any(ends[at : at + 8] == head for at in range(c.ends_from, c.ends_to, 24))
            if bound and (code == 4 or not _starts_here(c, row_id)):
                return c.seq
    at = bisect_right([c.first for c in commits], row_id) - 1
    if at >= 0 and _starts_here(commits[at], row_id):
        return commits[at].seq
    return None


def _starts_here(commit: _Commit, row_id: int) -> bool:
    return commit.first <= row_id < commit.first + commit.new_rows


def _in(runs: Sequence[tuple[int, int]], row_id: int) -> bool:
    at = bisect_right(runs, (row_id, 2**63)) - 1
    return at >= 0 and runs[at][0] <= row_id <= runs[at][1]


def _unpruned(
    starts: list[tuple[int, bytes]], ends: bytes, runs: Sequence[tuple[int, int]]
) -> tuple[list[tuple[int, bytes]], bytes]:
    """The expectations without the rows retention deleted (sorted runs of ids)."""
    kept: list[tuple[int, bytes]] = []
    for first, blob in starts:
        last, cur = first + len(blob) // 16 - 1, first
        i = max(bisect_right(runs, (first, -1)) - 1, 0)
        while i < len(runs) and runs[i][0] <= last:
            lo, hi = runs[i]
            if hi >= cur:
                if lo > cur:
                    kept.append((cur, blob[(cur - first) * 16 : (lo - first) * 16]))
                cur = hi + 1
            i += 1
        if cur <= last:
            kept.append((cur, blob[(cur - first) * 16 :]))
    left = b"".join(ends[at : at + 24] for at in range(0, len(ends), 24)
                    if not _in(runs, int.from_bytes(ends[at : at + 8], "big")))  # fmt: skip
    return kept, left
