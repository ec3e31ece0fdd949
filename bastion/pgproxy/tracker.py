"""Each statement's outcome (rows, tag, SQLSTATE), read off the protocol state machine's
attribution of every reply to its request (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from bastion.errors import BastionError
from bastion.masking.session import ResultMask
from bastion.pgwire.state import SKIPPED, ProtocolState, Request

MAX_PENDING = 100_000  # statements in flight on one connection (pipelines); beyond is abuse


class TooManyInFlight(BastionError):
    """A client pipelined more statements than the bastion tracks for one connection."""


@dataclass(slots=True)
class Pending:
    """A statement sent upstream and not yet answered (the note on its Query, Execute,
    function call, or refused Parse's stand-in)."""

    key: str
    started_ns: int
    rows: int = 0  # DataRows seen
    counted: int | None = None  # a simple Query's statements: the sum of their tags' counts
    tag: str | None = None
    sqlstate: str | None = None
    stand_in: bytes | None = None  # a refused statement: the error the client gets instead
    mask: ResultMask | None = None  # how its rows were masked (masked sessions)
    earlier: list[ResultMask] = field(default_factory=list)  # a simple Query's earlier results
    shown: dict[int, int] = field(default_factory=dict)  # rows shown in clear, per unmask grant
    server_message: str | None = None  # the server's error text, when the client's was scrubbed


class Finished(NamedTuple):
    key: str
    rows: int | None
    tag: str | None
    sqlstate: str | None
    duration_ns: int
    pending: Pending | None = None  # what the masking noted about it


NOT_EXECUTED = "not executed"
_LEADING = frozenset((b"P", b"B", b"D"))  # requests that come before their Execute


class Tracker:
    """Statements' outcomes from the requests they rode on.

    The state machine says which request each reply answers; the tracker keeps a `Pending`
    on each statement's request and ends it: an Execute at its CommandComplete,
    EmptyQueryResponse, PortalSuspended or ErrorResponse; a simple Query or function call at
    its ReadyForQuery (with the last tag and the sum of rows). An error in a pipeline skips
    the requests up to its Sync: the first statement skipped carries the error when the
    failed request was not a statement (its Parse or Bind failed), the others never ran.
    """

    __slots__ = ("open", "state")

    def __init__(self, state: ProtocolState | None = None) -> None:
        self.state = state if state is not None else ProtocolState()
        self.open = 0  # statements in flight

    def sent(self, request: Request | None, key: str, *, now_ns: int,
             stand_in: bytes | None = None) -> list[Finished]:  # fmt: skip
        """A statement went upstream on `request` (the state machine's, just made); it ends at
        once, unrun, when the server will skip it. `stand_in` marks one the bastion refused."""
        if self.open >= MAX_PENDING:
            raise TooManyInFlight(
                f"more than {MAX_PENDING} statements in flight on one"
                " connection; wait for some answers before sending more"
            )
        pending = Pending(key, now_ns, stand_in=stand_in)
        if request is None or request.outcome == SKIPPED:
            return [Finished(key, None, NOT_EXECUTED, None, 0, pending)]
        request.note = pending
        self.open += 1
        return []

    @property
    def head(self) -> Pending | None:
        """The statement the replies arriving now concern: the head request's, or when that is
        the statement's Parse, Bind or Describe, the first statement after it before a Sync."""
        for request in self.state.queue:
            note = request.note
            if isinstance(note, Pending):
                return note
            if request.kind not in _LEADING:
                return None
        return None

    @property
    def busy(self) -> bool:
        return self.open > 0

    def data_rows(self, request: Request | None, count: int) -> None:
        note = _pending(request)
        if note is not None:
            note.rows += count

    def complete(self, request: Request | None, tag: str | None, now_ns: int) -> list[Finished]:
        """CommandComplete (tag), EmptyQueryResponse or PortalSuspended (tag None)."""
        note = _pending(request)
        if note is None:
            return []
        assert request is not None
        if request.kind == b"E":
            return [self._finish(note, now_ns, tag=tag)]
        note.tag = tag
        counted = _rows_from_tag(tag) if tag else None
        if counted is not None:
            note.counted = (note.counted or 0) + counted
        return []

    def error(self, request: Request | None, sqlstate: str, now_ns: int,
              skipped: Iterable[Request] = ()) -> list[Finished]:  # fmt: skip
        """An ErrorResponse answering `request`; `skipped`: what it made the server skip."""
        note = _pending(request)
        if request is not None and request.kind in (b"Q", b"F"):
            if note is not None:
                note.sqlstate = sqlstate
            return []
        done = [self._finish(note, now_ns, sqlstate=sqlstate)] if note is not None else []
        for following in skipped:
            unrun = _pending(following)
            if unrun is None:
                continue
            if not done:  # its own Parse or Bind failed: the statement failed with it
                done.append(self._finish(unrun, now_ns, sqlstate=sqlstate))
            else:
                done.append(self._finish(unrun, now_ns, tag=NOT_EXECUTED, count=False))
        return done

    def ready(self, request: Request | None, now_ns: int) -> list[Finished]:
        """ReadyForQuery: a simple Query or function call ends."""
        note = _pending(request)
        if note is None:
            return []
        done = self._finish(note, now_ns, tag=note.tag, sqlstate=note.sqlstate)
        if note.counted is not None:  # every statement's rows, not only the last one's
            done = done._replace(rows=note.counted)
        return [done]

    def abandon(self, now_ns: int, why: str) -> list[Finished]:
        """The connection ended: whatever was in flight ends with `why` as its tag."""
        done = []
        for request in self.state.queue:
            p = _pending(request)
            if p is not None:
                request.note = None
                done.append(Finished(p.key, p.rows or None, why, p.sqlstate,
                                     now_ns - p.started_ns, p))  # fmt: skip
        self.open = 0
        return done

    def _finish(self, p: Pending, now_ns: int, *, tag: str | None = None,
                sqlstate: str | None = None, count: bool = True) -> Finished:  # fmt: skip
        self.open -= 1
        rows = _rows_from_tag(tag) if tag and count else None
        if rows is None and p.rows:
            rows = p.rows
        return Finished(p.key, rows, tag, sqlstate, now_ns - p.started_ns, p)


def _pending(request: Request | None) -> Pending | None:
    note = request.note if request is not None else None
    return note if isinstance(note, Pending) else None


def _rows_from_tag(tag: str) -> int | None:
    """'SELECT 5' -> 5, 'INSERT 0 3' -> 3, 'UPDATE 2' -> 2, 'CREATE TABLE' -> None."""
    last = tag.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None
