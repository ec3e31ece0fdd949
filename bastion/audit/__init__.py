"""The store: the only place bastion runs SQL (SQLite now; PostgreSQL on the roadmap)."""

from __future__ import annotations

from pathlib import Path

from bastion.audit.chain import ChainedEvent, Event, Verdict
from bastion.audit.people import PeopleQueries, TotpOutcome, TotpResult, UserSecrets
from bastion.audit.queries import QueryEnd, QueryQueries, QueryStart
from bastion.audit.resources import ResourceQueries
from bastion.audit.sessions import CommandLine, FileOp, RecordingInfo, SessionQueries
from bastion.clock import Clock

__all__ = [
    "ChainedEvent",
    "CommandLine",
    "Event",
    "FileOp",
    "QueryEnd",
    "QueryStart",
    "RecordingInfo",
    "SessionQueries",
    "Store",
    "TotpOutcome",
    "TotpResult",
    "UserSecrets",
    "Verdict",
]


class Store(PeopleQueries, ResourceQueries, SessionQueries, QueryQueries):
    """The whole store: people, targets, grants and the hash-chained audit trail."""

    @classmethod
    def create(cls, path: Path, clock: Clock) -> Store:
        store = super().create(path, clock)
        assert isinstance(store, Store)
        return store

    @classmethod
    def open(cls, path: Path, clock: Clock) -> Store:
        store = super().open(path, clock)
        assert isinstance(store, Store)
        return store
