"""The store: the only place bastion runs SQL (SQLite now; PostgreSQL on the roadmap)."""

from __future__ import annotations

from pathlib import Path

from bastion.audit.cancelkeys import CancelKeyQueries, CancelOwner
from bastion.audit.chain import ChainedEvent, ChainKey, Event, Verdict
from bastion.audit.cluster import ClusterQueries
from bastion.audit.daily_flags import DailyFlagQueries, DayChecked, Flag
from bastion.audit.eventlog import EventFilter, EventLogQueries, EventPage
from bastion.audit.exporting import ExportQueries
from bastion.audit.exposure import ExposureQueries
from bastion.audit.grants import NewGrant
from bastion.audit.location import PgLocation
from bastion.audit.lostnodes import LostNodeQueries
from bastion.audit.outbox import Notice, OutboxQueries
from bastion.audit.people import PeopleQueries, TotpOutcome, TotpResult, UserSecrets
from bastion.audit.queries import QueryEnd, QueryQueries, QueryStart
from bastion.audit.report_runs import ReportRunQueries
from bastion.audit.reports import ReportQueries
from bastion.audit.requests import NewRequest, RequestQueries
from bastion.audit.resources import ResourceQueries
from bastion.audit.restores import Restore, RestoreQueries
from bastion.audit.retention import RetentionQueries
from bastion.audit.reviewing import ReviewerReadQueries, SessionFilter
from bastion.audit.reviews import ReportWeek, ReviewedFinding, ReviewQueries
from bastion.audit.sessions import (
    CommandLine,
    FileOp,
    Leftovers,
    RecordingInfo,
    SessionQueries,
)
from bastion.audit.tickets import NewTicket, TicketQueries, TicketRow
from bastion.audit.unmask import NewUnmask, UnmaskGrant, UnmaskQueries
from bastion.audit.websessions import WebSession, WebSessionQueries
from bastion.clock import Clock

__all__ = [
    "CancelKeyQueries",
    "CancelOwner",
    "ChainKey",
    "ChainedEvent",
    "CommandLine",
    "DayChecked",
    "Event",
    "EventFilter",
    "EventPage",
    "FileOp",
    "Flag",
    "Leftovers",
    "NewGrant",
    "NewRequest",
    "NewTicket",
    "NewUnmask",
    "Notice",
    "QueryEnd",
    "QueryStart",
    "RecordingInfo",
    "ReportWeek",
    "Restore",
    "ReviewedFinding",
    "SessionFilter",
    "SessionQueries",
    "Store",
    "TicketRow",
    "TotpOutcome",
    "TotpResult",
    "UnmaskGrant",
    "UserSecrets",
    "Verdict",
    "WebSession",
]


class Store(
    PeopleQueries,
    ResourceQueries,
    RequestQueries,
    SessionQueries,
    QueryQueries,
    CancelKeyQueries,
    OutboxQueries,
    UnmaskQueries,
    TicketQueries,
    ReportQueries,
    ReviewQueries,
    ReportRunQueries,
    DailyFlagQueries,
    ReviewerReadQueries,
    WebSessionQueries,
    EventLogQueries,
    RestoreQueries,
    ClusterQueries,
    LostNodeQueries,
    ExposureQueries,
    RetentionQueries,
    ExportQueries,
):
    """The whole store: people, targets, grants, requests and the hash-chained audit trail."""

    @classmethod
    def create(
        cls, where: Path | PgLocation, clock: Clock, key: ChainKey | None = None,
        node: str | None = None,
    ) -> Store:  # fmt: skip
        store = super().create(where, clock, key, node)
        assert isinstance(store, Store)
        return store

    @classmethod
    def open(
        cls, where: Path | PgLocation, clock: Clock, key: ChainKey | None = None,
        node: str | None = None,
    ) -> Store:  # fmt: skip
        store = super().open(where, clock, key, node)
        assert isinstance(store, Store)
        return store
