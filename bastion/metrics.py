"""The bastion's Prometheus metrics: one registry per Core, a one-line hook for each call site.

Every label value comes from a bounded set the bastion owns (doors, TOTP results, refusal
reasons, statement kinds, outcomes) or from the store's own target names, never from text
a client sent: an insider cannot blow the series up, and a scrape names no person, secret or
statement. What lives elsewhere (the doors' live sessions, the audit writer's queue, the
uploader's errors, the certificate's dates) is read when scraped (`_Scraped`); what lives in
the store (notifications) is refreshed by the scrape's handler on the store's thread.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from bastion.live import Killable

DOORS = ("ssh", "postgres", "web")
TOTP_RESULTS = ("wrong", "replayed", "locked", "disabled")
# A failed login's last step (bastion/access/admission.py REASONS' keys) as a label.
LOGIN_REASONS = {
    "password": "wrong_password",
    "totp wrong": "wrong_code",
    "totp replayed": "code_replayed",
    "totp locked": "locked",
    "totp disabled": "disabled",
    "login name changed": "name_changed",
}
# An access decision's refusal, by the start of its text (bastion/access/grants.py).
ACCESS_REASONS = (
    (re.compile(r"no user named|user .* is (disabled|locked)"), "account"),
    (re.compile(r"no (\w+ )?target named"), "unknown_target"),
    (re.compile(r".* has no access to "), "no_grant"),
    (re.compile(r"not signed in"), "not_proven"),
    (re.compile(r".* is open to sessions only "), "outside_hours"),
)
REFUSALS = (*LOGIN_REASONS.values(), "account", "unknown_target", "no_grant", "not_proven",
            "outside_hours", "store_lost", "stopping", "access_denied", "preauth_limit",
            "other")  # fmt: skip
# Command tags' first words (the server's CommandComplete); anything else is OTHER.
KINDS = frozenset((
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE", "BEGIN", "START",
    "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PREPARE", "EXECUTE", "DEALLOCATE", "DECLARE",
    "CLOSE", "SET", "RESET", "SHOW", "CREATE", "ALTER", "DROP", "TRUNCATE", "GRANT", "REVOKE",
    "COMMENT", "EXPLAIN", "ANALYZE", "VACUUM", "CLUSTER", "REINDEX", "REFRESH", "LOCK",
    "LISTEN", "UNLISTEN", "NOTIFY", "CALL", "DO", "DISCARD", "CHECKPOINT", "IMPORT", "SECURITY",
))  # fmt: skip
NOT_EXECUTED = "not executed"  # bastion/pgproxy/tracker.py's tag for a skipped statement
TAGS_CACHED = 4096
LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Started(Protocol):
    """A statement's start record (bastion/audit/queries.py QueryStart)."""

    @property
    def refused(self) -> str | None: ...


class Ended(Protocol):
    """A statement's end record (bastion/audit/queries.py QueryEnd)."""

    @property
    def tag(self) -> str | None: ...

    @property
    def sqlstate(self) -> str | None: ...


@dataclass
class StoreCounts:
    """What the store knows, refreshed by each scrape (None until a scrape could ask)."""

    notifications_pending: int | None = None


class Metrics:
    """The bastion's metrics, in a registry of this Core's own (tests run several in one
    process). Call sites use the methods below, one line each."""

    def __init__(self, node: str, version: str) -> None:
        self.registry = CollectorRegistry()
        self.store_counts = StoreCounts()
        self.sources: Sources | None = None  # set by the Core
        r = self.registry
        info = Gauge("bastion_build_info", "This bastion: its version and node name.",
                     ["version", "node"], registry=r)  # fmt: skip
        info.labels(version, node).set(1)
        self.logins = Counter("bastion_logins", "Logins that proved both factors, by door.",
                              ["door"], registry=r)  # fmt: skip
        self.refusals = Counter("bastion_login_refusals", "Logins refused, by door and reason.",
                                ["door", "reason"], registry=r)  # fmt: skip
        self.totp_failures = Counter("bastion_totp_failures",
                                     "TOTP codes refused, by door and result.",
                                     ["door", "result"], registry=r)  # fmt: skip
        self.lockouts = Counter("bastion_lockouts", "Accounts locked by failed logins, by door.",
                                ["door"], registry=r)  # fmt: skip
        self.sessions_opened = Counter("bastion_sessions_opened",
                                       "Sessions opened, by door and target.",
                                       ["door", "target"], registry=r)  # fmt: skip
        self.commit_seconds = Histogram("bastion_audit_commit_seconds",
                                        "Time one group commit of the audit writer took.",
                                        buckets=LATENCY, registry=r)  # fmt: skip
        self.commit_failures = Counter("bastion_audit_commit_failures",
                                       "Group commits of the audit writer that failed.",
                                       registry=r)  # fmt: skip
        self.recording_bytes = Counter(
            "bastion_recording_bytes", "Recording bytes made durable (fsynced).", registry=r
        )
        self.flush_seconds = Histogram("bastion_recording_flush_seconds",
                                       "Time one recording flush (write and fsync) took.",
                                       buckets=LATENCY, registry=r)  # fmt: skip
        self.flush_failures = Counter("bastion_recording_flush_failures",
                                      "Recording flushes that failed (the session ends).",
                                      registry=r)  # fmt: skip
        self.store_errors = Counter(
            "bastion_store_errors", "Store calls that failed with a store error.", registry=r
        )
        self.notify_failures = Counter("bastion_notification_post_failures",
                                       "Webhook posts of notifications that failed.",
                                       registry=r)  # fmt: skip
        self.notify_given_up = Counter("bastion_notifications_given_up",
                                       "Notifications given up on after their last retry.",
                                       registry=r)  # fmt: skip
        # The database door's per-statement counts: plain numbers on the event loop (the
        # only writer; scrapes read them there too), a fraction of a Counter's cost.
        self.statements: dict[tuple[str, str], int] = {}
        self.statements_refused = 0
        self._labels_by_tag: dict[tuple[str | None, bool], tuple[str, str]] = {}
        self._prepare()
        r.register(_Scraped(self))

    def _prepare(self) -> None:
        """Series present at zero from the start, so rates and alerts see their first step."""
        for door in DOORS:
            self.logins.labels(door)
            self.lockouts.labels(door)
            for result in TOTP_RESULTS:
                self.totp_failures.labels(door, result)
            for reason in REFUSALS:
                self.refusals.labels(door, reason)
        for outcome in ("ok", "error"):
            self.statements["SELECT", outcome] = 0

    # -- the call sites' hooks ---------------------------------------------------------

    def login(self, door: str) -> None:
        self.logins.labels(_door(door)).inc()

    def login_refused(self, door: str, failure: str) -> None:
        """A login that ended without both factors; `failure` its last failed step."""
        self.refusals.labels(_door(door), LOGIN_REASONS.get(failure, "other")).inc()

    def access_refused(self, door: str, reason: str, *, node: str | None = None) -> None:
        """A proven login refused its target; `reason` the decision's text, classified, or
        `node` the refusing node's own state ("store_lost", "stopping") when it decided."""
        label = node if node in ("store_lost", "stopping") else access_reason(reason)
        self.refusals.labels(_door(door), label).inc()

    def preauth_refused(self, door: str) -> None:
        """A connection refused before any proof: its address failed too often, or too many
        logins are in progress ([ssh]/[postgres] pre-login limits)."""
        self.refusals.labels(_door(door), "preauth_limit").inc()

    def totp_failed(self, door: str, result: str, just_locked: bool) -> None:
        if result in TOTP_RESULTS:
            self.totp_failures.labels(_door(door), result).inc()
        if just_locked:
            self.lockouts.labels(_door(door)).inc()

    def locked_out(self, door: str) -> None:
        self.lockouts.labels(_door(door)).inc()

    def session_opened(self, door: str, target: str) -> None:
        """`target` is a target the store holds (the session row was just written)."""
        self.sessions_opened.labels(_door(door), target).inc()

    def statements_started(self, starts: Iterable[Started]) -> None:
        """A read's statement records: those the bastion refused are counted (event loop)."""
        for start in starts:
            if start.refused is not None:
                self.statements_refused += 1

    def statements_ended(self, ends: Iterable[Ended]) -> None:
        """Statements' outcomes (the PostgreSQL door's hot path, on the event loop): labels
        cached by tag (at most TAGS_CACHED tags: a row count makes each SELECT's differ)."""
        counts, by_tag = self.statements, self._labels_by_tag
        for end in ends:
            key = (end.tag, end.sqlstate is None)
            labels = by_tag.get(key)
            if labels is None:
                labels = statement_labels(end.tag, end.sqlstate)
                if len(by_tag) < TAGS_CACHED:
                    by_tag[key] = labels
            counts[labels] = counts.get(labels, 0) + 1

    def notification_failed(self, *, gave_up: bool) -> None:
        self.notify_failures.inc()
        if gave_up:
            self.notify_given_up.inc()

    def audit_commit(self, seconds: float, ok: bool) -> None:
        self.commit_seconds.observe(seconds)
        if not ok:
            self.commit_failures.inc()

    @contextmanager
    def recording_flush(self) -> Iterator[None]:
        """Around one flush: its time, and a failure counted (the exception goes on)."""
        began = time.perf_counter()
        try:
            yield
        except BaseException:
            self.flush_failures.inc()
            raise
        finally:
            self.flush_seconds.observe(time.perf_counter() - began)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def _door(door: str) -> str:
    return door if door in DOORS else "other"


def access_reason(reason: str) -> str:
    """An access decision's refusal text as one of REFUSALS (never the text itself: it names
    the target the client asked for)."""
    for pattern, label in ACCESS_REASONS:
        if pattern.match(reason):
            return label
    return "access_denied"


def statement_labels(tag: str | None, sqlstate: str | None) -> tuple[str, str]:
    """(kind, outcome) of an ended statement: the kind is its command tag's first word when
    it is a known one (the tag comes from the target's server: never trusted as a label)."""
    if sqlstate is not None:
        return "NONE", "error"
    if tag is None:
        return "NONE", "ok"
    if tag == NOT_EXECUTED:
        return "NONE", "not_executed"
    word = tag.split(" ", 1)[0]
    if not (word.isalpha() and word.isupper()):  # the bastion's own words: it never ended
        return "NONE", "abandoned"
    return (word if word in KINDS else "OTHER"), "ok"


class Sources:
    """What a scrape reads from the running bastion (the Core fills it in)."""

    def __init__(self, *, started: Callable[[], bool], store_reachable: Callable[[], bool],
                 queue_depth: Callable[[], int | None], uploads: Callable[[], object | None],
                 now: Callable[[], datetime], tls_cert: Path, host_key: Path,
                 exports: Callable[[], list[dict[str, object]]] = list) -> None:  # fmt: skip
        self.started, self.store_reachable, self.queue_depth = started, store_reachable, queue_depth
        self.uploads, self.now, self.tls_cert, self.host_key = uploads, now, tls_cert, host_key
        self.exports = exports  # each [export] sink's health (bastion/export/worker.py)
        self.doors: Mapping[str, Mapping[str, Killable]] = {}  # set by the server
        self._cert: tuple[tuple[int, int], datetime, datetime] | None = None

    def cert_dates(self) -> tuple[datetime, datetime] | None:
        """(notBefore, notAfter) of the TLS certificate, read again only when it changes."""
        try:
            info = os.stat(self.tls_cert)
        except OSError:
            return None
        stamp = (info.st_mtime_ns, info.st_size)
        if self._cert is None or self._cert[0] != stamp:
            from cryptography import x509  # noqa: PLC0415 - only when scraped

            try:
                cert = x509.load_pem_x509_certificate(self.tls_cert.read_bytes())
            except (OSError, ValueError):
                return None
            self._cert = (stamp, cert.not_valid_before_utc, cert.not_valid_after_utc)
        return self._cert[1], self._cert[2]


class _Scraped(Collector):
    """The values read when scraped: live sessions, the writer's queue, the stores, files."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from _statements(self._metrics)
        sources = self._metrics.sources
        if sources is None:
            return
        yield from _live(sources)
        yield _gauge("bastion_ready", "1 once every door listens (as /healthz 'ok').",
                     float(sources.started()))  # fmt: skip
        yield _gauge("bastion_store_reachable",
                     "0 while this node has lost its store (past [cluster] store_grace).",
                     float(sources.store_reachable()))  # fmt: skip
        depth = sources.queue_depth()
        if depth is not None:
            yield _gauge("bastion_audit_queue_depth", "Records waiting for the audit writer.",
                         depth)  # fmt: skip
        yield from _uploads(sources.uploads())
        yield from _exports(sources.exports())
        yield from _store_counts(self._metrics.store_counts)
        yield from _ages(sources)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _live(sources: Sources) -> Iterator[Metric]:
    live = GaugeMetricFamily("bastion_sessions_live", "Sessions open now, by door and target.",
                             labels=["door", "target"])  # fmt: skip
    for door, sessions in sources.doors.items():
        counts: dict[str, int] = {}
        for session in list(sessions.values()):
            counts[session.target_name] = counts.get(session.target_name, 0) + 1
        for target, count in sorted(counts.items()):
            live.add_metric([door, target], count)
    yield live


def _statements(metrics: Metrics) -> Iterator[Metric]:
    ended = CounterMetricFamily("bastion_statements",
                                "Database statements ended, by kind and outcome.",
                                labels=["kind", "outcome"])  # fmt: skip
    for labels, count in sorted(metrics.statements.items()):
        ended.add_metric(labels, count)
    yield ended
    yield CounterMetricFamily("bastion_statements_refused",
                              "Statements the bastion refused (before upstream).",
                              value=metrics.statements_refused)  # fmt: skip


def _uploads(uploads: object | None) -> Iterator[Metric]:
    errors = getattr(getattr(uploads, "store", None), "errors", None)
    if not isinstance(errors, int):
        return
    yield CounterMetricFamily("bastion_object_store_errors",
                              "Object store calls that failed (uploads retry).",
                              value=errors)  # fmt: skip
    health = getattr(uploads, "health", None)
    waiting = health().get("uploads_waiting") if callable(health) else None
    if isinstance(waiting, int):
        yield _gauge("bastion_recordings_waiting_upload",
                     "Finished recordings in the spool not yet in the object store.",
                     float(waiting))  # fmt: skip


def _exports(sinks: list[dict[str, object]]) -> Iterator[Metric]:
    """Each [export] sink (names from the config): failing or not, and its cursor."""
    if not sinks:
        return
    failing = GaugeMetricFamily("bastion_export_sink_failing",
                                "1 while an export sink fails to take events (they wait).",
                                labels=["sink"])  # fmt: skip
    delivered = GaugeMetricFamily("bastion_export_delivered_seq",
                                  "The last chain seq an export sink took (on the node"
                                  " holding its lease; others show what they last saw).",
                                  labels=["sink"])  # fmt: skip
    for sink in sinks:
        name, seq = str(sink["name"]), sink.get("delivered_seq")
        failing.add_metric([name], float(sink.get("status") == "failing"))
        if isinstance(seq, int):
            delivered.add_metric([name], seq)
    yield failing
    yield delivered


def _store_counts(counts: StoreCounts) -> Iterator[Metric]:
    if counts.notifications_pending is not None:
        yield _gauge("bastion_notifications_pending", "Notifications not yet delivered.",
                     counts.notifications_pending)  # fmt: skip


def _ages(sources: Sources) -> Iterator[Metric]:
    now = sources.now()
    dates = sources.cert_dates()
    if dates is not None:
        yield _gauge("bastion_tls_certificate_age_seconds",
                     "Seconds since the TLS certificate's notBefore.",
                     (now - dates[0]).total_seconds())  # fmt: skip
        yield _gauge("bastion_tls_certificate_expiry_seconds",
                     "Seconds until the TLS certificate's notAfter (negative: expired).",
                     (dates[1] - now).total_seconds())  # fmt: skip
    try:
        changed = os.stat(sources.host_key).st_mtime
    except OSError:
        return
    yield _gauge("bastion_ssh_host_key_age_seconds",
                 "Seconds since the SSH host key file was last changed.",
                 max(0.0, now.timestamp() - changed))  # fmt: skip
