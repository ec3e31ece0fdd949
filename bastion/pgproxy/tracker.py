"""Which statement each backend reply belongs to: rows, tag and SQLSTATE per statement (pure)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from bastion.errors import BastionError
from bastion.masking.session import ResultMask

MAX_PENDING = 100_000  # statements in flight on one connection (pipelines); beyond is abuse


class TooManyInFlight(BastionError):
    """A client pipelined more statements than the bastion tracks for one connection."""


@dataclass(slots=True)
class Pending:
    """A statement sent upstream and not yet answered."""

    key: str
    simple: bool  # a simple Query: answered by everything up to ReadyForQuery
    started_ns: int
    rows: int = 0
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


@dataclass
class Tracker:
    """Fed the backend message types in order; yields each statement's outcome.

    Extended protocol: each Execute ends at CommandComplete, EmptyQueryResponse,
    PortalSuspended or ErrorResponse. After an error the server skips to Sync, so the
    Executes still waiting when ReadyForQuery comes were never run. A simple Query may
    hold several statements; it ends at ReadyForQuery with the last tag and the sum of rows.
    """

    pending: deque[Pending] = field(default_factory=deque)

    def sent(self, key: str, *, simple: bool, now_ns: int, stand_in: bytes | None = None) -> None:
        """A statement went upstream; `stand_in` marks one the bastion refused (see Relay)."""
        if len(self.pending) >= MAX_PENDING:
            raise TooManyInFlight(
                f"more than {MAX_PENDING} statements in flight on one"
                " connection; wait for some answers before sending more"
            )
        self.pending.append(Pending(key, simple, now_ns, stand_in=stand_in))

    def stand_in(self) -> bytes | None:
        """The error to send instead of the next ErrorResponse, when it answers a refusal."""
        return self.pending[0].stand_in if self.pending else None

    @property
    def head(self) -> Pending | None:
        """The statement the replies arriving now belong to."""
        return self.pending[0] if self.pending else None

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def data_rows(self, count: int) -> None:
        if self.pending:
            self.pending[0].rows += count

    def complete(self, tag: str | None, now_ns: int) -> list[Finished]:
        """CommandComplete (tag), EmptyQueryResponse or PortalSuspended (tag None)."""
        if not self.pending:
            return []
        head = self.pending[0]
        if head.simple:
            head.tag = tag
            return []
        return [self._finish(self.pending.popleft(), now_ns, tag=tag)]

    def error(self, sqlstate: str, now_ns: int) -> list[Finished]:
        if not self.pending:
            return []
        head = self.pending[0]
        if head.simple:
            head.sqlstate = sqlstate
            return []
        return [self._finish(self.pending.popleft(), now_ns, sqlstate=sqlstate)]

    def ready(self, now_ns: int) -> list[Finished]:
        """ReadyForQuery: a simple Query ends; Executes skipped after an error end unrun."""
        done: list[Finished] = []
        while self.pending:
            head = self.pending.popleft()
            if head.simple:
                done.append(self._finish(head, now_ns, tag=head.tag, sqlstate=head.sqlstate))
                break
            done.append(Finished(head.key, None, "not executed", None, now_ns - head.started_ns,
                                 head))  # fmt: skip
        return done

    def abandon(self, now_ns: int, why: str) -> list[Finished]:
        """The connection ended: whatever was in flight ends with `why` as its tag."""
        done = [Finished(p.key, p.rows or None, why, p.sqlstate, now_ns - p.started_ns, p)
                for p in self.pending]  # fmt: skip
        self.pending.clear()
        return done

    @staticmethod
    def _finish(
        p: Pending, now_ns: int, *, tag: str | None = None, sqlstate: str | None = None
    ) -> Finished:
        rows = _rows_from_tag(tag) if tag else None
        if rows is None and p.rows:
            rows = p.rows
        return Finished(p.key, rows, tag, sqlstate, now_ns - p.started_ns, p)


def _rows_from_tag(tag: str) -> int | None:
    """'SELECT 5' -> 5, 'INSERT 0 3' -> 3, 'UPDATE 2' -> 2, 'CREATE TABLE' -> None."""
    last = tag.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None
