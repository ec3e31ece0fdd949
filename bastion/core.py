"""The core the doors share: store, identity, access, clock, secrets, and a thread for the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import structlog

from bastion import __version__
from bastion.access.admission import (
    Admission,
    Attempt,
    LoginFacts,
    PasswordProof,
    Proof,
    door_decision,
)
from bastion.access.grants import Access, Decision
from bastion.access.requests import Requests
from bastion.access.stepup import SESSION as STEP_UP_SESSION
from bastion.access.storegrace import StoreGrace
from bastion.access.tickets import REUSABLE_PREFIX, Tickets
from bastion.access.unmask import Unmasking
from bastion.audit import (
    CancelKeyQueries,
    CommandLine,
    Event,
    FileOp,
    Leftovers,
    RecordingInfo,
    Store,
    TicketRow,
    TotpOutcome,
    TotpResult,
)
from bastion.audit.location import PgLocation
from bastion.audit.records import Grant, Target
from bastion.audit.unmask import UnmaskGrant
from bastion.audit.writer import AuditWriter
from bastion.clock import Clock, iso
from bastion.config import Config
from bastion.config_policies import WebPolicy
from bastion.errors import Denied, StoreError, StoreLost
from bastion.identity import passwords
from bastion.identity.sealing import SecretBox
from bastion.identity.service import Identity, refusal_text
from bastion.live import Killable, LiveSession, SessionFeed, Uploads
from bastion.metrics import Metrics, Sources
from bastion.storeloss import StoreLoss
from bastion.watch import SessionWatch, watch_once

if TYPE_CHECKING:
    from bastion.anchoring import AnchorHealth
    from bastion.audit.listen import DecisionFeed
    from bastion.export.worker import Exporter

P = ParamSpec("P")
T = TypeVar("T")
STOPPING_REFUSAL = "this node is stopping; connect again to reach another node"
HASH_THREADS = 2  # argon2 verifies at once (64 MiB each), never on the store's thread
log = structlog.get_logger("bastion.core")


@dataclass
class Core:
    """Everything a door may ask; doors never open the store or read the config file."""

    config: Config
    store: Store
    box: SecretBox
    clock: Clock
    identity: Identity = field(init=False)
    access: Access = field(init=False)
    unmasking: Unmasking = field(init=False)
    tickets: Tickets = field(init=False)
    requests: Requests = field(init=False)
    node: str = field(init=False)  # this node's name ([cluster] node)
    grace: StoreGrace = field(init=False)  # whether the store answered lately (fail closed)
    _executor: ThreadPoolExecutor = field(init=False)
    _hasher: ThreadPoolExecutor = field(init=False)
    cancel_keys: CancelKeyQueries = field(init=False)  # the store's pids, through run()
    writer: AuditWriter | None = field(default=None, init=False)
    uploads: Uploads | None = field(default=None, init=False)  # set by the server: S3 on
    anchoring: AnchorHealth | None = field(default=None, init=False)  # set: [audit] anchors
    exporting: Exporter | None = field(default=None, init=False)  # set: [export] sinks
    started: bool = field(default=False, init=False)  # the server chained bastion.started
    _lives: Sequence[Mapping[str, Killable]] = field(default=(), init=False)
    _feeds: set[SessionFeed] = field(default_factory=set, init=False)
    store_loss: StoreLoss = field(default_factory=StoreLoss, init=False)
    decisions: DecisionFeed | None = field(default=None, init=False)
    metrics: Metrics = field(init=False)  # this core's own registry (bastion/metrics.py)
    stopping: bool = field(default=False, init=False)  # draining: /healthz says 503 "stopping"
    # The config each live session of this node started with: a reload never changes a live
    # session's limits, hours, masking or tunnels rule (it neither extends nor cuts it).
    started_with: dict[str, Config] = field(default_factory=dict, init=False)
    _web_since: list[tuple[datetime, WebPolicy]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.identity = Identity(
            self.store, self.box, self.clock, self.config.totp, self.config.lockout
        )
        self.access = Access(self.store, self.config, self.clock)
        self.unmasking = Unmasking(self.store, self.config, self.clock)
        self.tickets = Tickets(self.store, self.config, self.clock, self.access, self.identity)
        self.requests = Requests(self.store, self.config, self.clock)
        self.node = self.config.cluster.node_name()
        self.grace = StoreGrace(self.config.cluster.store_grace)
        # One thread owns store calls from the event loop: SQLite and argon2 never block it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-store")
        # argon2 has threads of its own, so a guessing client never stalls the store's.
        self._hasher = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="bastion-argon2")
        self.cancel_keys = self.store  # bastion/pgproxy/cancels.py: which node holds a pid
        self._web_since.append((datetime.min.replace(tzinfo=UTC), self.config.web))
        self.metrics = Metrics(self.node, __version__)
        paths = self.config.paths
        self.metrics.sources = Sources(
            started=lambda: self.started, store_reachable=lambda: self.grace.lost_since is None,
            queue_depth=lambda: self.writer.queued if self.writer is not None else None,
            uploads=lambda: self.uploads, now=self.clock.now, tls_cert=paths.tls_cert,
            host_key=paths.ssh_host_key,
            exports=lambda: self.exporting.health() if self.exporting is not None else [],
        )  # fmt: skip

    def reconfigure(self, config: Config) -> None:
        """Run with `config` from now on (a reload): every part that reads settings sees it
        for what starts next; live sessions keep theirs (started_with)."""
        if config.web != self.config.web:  # console sign-ins keep the [web] they began with
            self._web_since.append((self.clock.now(), config.web))
        self.config = config
        self.identity.totp_policy, self.identity.lockout = config.totp, config.lockout
        for part in (self.access, self.unmasking, self.tickets, self.requests):
            part.config = config

    def web_policy_at(self, began: datetime) -> WebPolicy:
        """The [web] policy a console sign-in that began at `began` keeps (a reload neither
        extends nor cuts it): the one this node ran with then (before its start: its first)."""
        found = self._web_since[0][1] if self._web_since else self.config.web
        for since, policy in self._web_since:
            if since < began:
                found = policy
        return found

    def config_of(self, session_id: str) -> Config:
        """The config a live session of this node started with (else the current one)."""
        return self.started_with.get(session_id, self.config)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking core call off the event loop, in the store's thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except StoreError:
            self.metrics.store_errors.inc()
            raise

    def recorded_hash(self, path: Path) -> str | None:
        """For the uploader's thread: the SHA-256 the session row holds for the spool file
        at `path` (None: open, or the row names another file; NotFound: no such session)."""
        found = self._executor.submit(self.store.session, path.stem).result(timeout=60)
        return found.recording_sha256 if found.recording_path == str(path) else None

    def note_progress(self, session_id: str, size: int, sha256: str) -> bool:
        """For the uploader's and the recordings' threads: how far this node got with a
        session's recording (Store.note_recording_progress), written on the store's thread."""
        return self.submit_progress(session_id, size, sha256).result(60)

    def submit_progress(self, session_id: str, size: int, sha256: str) -> Future[bool]:
        """The same write queued on the store's thread, not waited for (the doors' recording
        threads flush every session: a slow store must not hold them)."""
        note = self.store.note_recording_progress
        return self._executor.submit(note, session_id, self.node, size, sha256)

    async def check_password(self, name: str, password: str, via: str) -> bool:
        """Identity.check_password with argon2 in its own threads: the store's thread only
        reads the hash and counts a failure. Unknown, locked and key-only users cost one
        verify against a stand-in hash, like everyone else."""
        stored = await self.run(self.identity.password_to_verify, name)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._hasher, passwords.verify_or_pretend, stored,
                                        password)  # fmt: skip
        if not ok and await self.run(self.identity.password_failed, name, via):
            self.metrics.locked_out(via.partition(":")[0])
        return ok

    async def audit(self, event: Event) -> None:
        """Write one audit event durably before returning (raises StoreError if it cannot)."""
        await self.run(self.store.append_events, [event])

    async def audit_all(self, events: Sequence[Event]) -> None:
        """Write several audit events durably, in one commit."""
        await self.run(self.store.append_events, list(events))

    async def notifications_pending(self) -> int:
        """Notifications neither delivered nor given up (for /metrics)."""
        return await self.run(self.store.notifications_pending)

    async def audit_head(self) -> int:
        """The audit chain's head sequence number (0 when empty): the store answers."""
        last = await self.run(self.store.last_events, 1)
        return last[0].seq if last else 0

    # -- the one way in: bastion/access/admission.py decides, the core does the I/O -------

    def admission(self, door: str, source: str, user: str) -> Admission:
        """A login beginning at `door` from `source`, for the person named `user`; Denied
        with one line while this node has lost its store (fail closed)."""
        refusal = self.grace.refusal()
        if refusal is not None:
            raise StoreLost(refusal)
        return Admission(Attempt(door, source, user))

    async def login_facts(self, name: str) -> LoginFacts:
        """Whether `name` is a live user, their key fingerprints, whether they have a password."""
        return await self.run(self._login_facts, name)

    def _login_facts(self, name: str) -> LoginFacts:
        found = self.store.find_user(name) if name else None
        if found is None or found.disabled_at is not None:
            return LoginFacts()
        keys = frozenset(k.fingerprint for k in self.store.ssh_keys(name))
        return LoginFacts(True, keys, found.has_password)

    async def check_proof(self, admission: Admission, proof: Proof) -> bool:
        """Check a first factor; a failed one counts (lockout, `auth.failed`). A door that
        binds the factor to more than the person (SSH: the login name) settles it itself."""
        ok = await proof.verify(self, admission.attempt)
        if not ok:
            admission.proven(proof.method, False)
        return ok

    async def prove(self, admission: Admission, proof: Proof) -> bool:
        """Check a first factor and, if it holds, count it as this login's first factor."""
        return await self.check_proof(admission, proof) and admission.proven(proof.method, True)

    async def second_factor(self, admission: Admission, code: str) -> TotpOutcome:
        """The TOTP code (single use, lockout and its events settled by the store); only
        after a first factor, else refused without looking."""
        if admission.first_factor is None:
            outcome = TotpOutcome(TotpResult.WRONG)
        else:
            outcome = await self.run(self.identity.check_totp, admission.user, code,
                                     admission.attempt.via)  # fmt: skip
        admission.second_factor(outcome)
        door = admission.attempt.door
        if outcome.result is not TotpResult.ACCEPTED:
            self.metrics.totp_failed(door, outcome.result.value, outcome.just_locked)
        elif admission.first_factor != STEP_UP_SESSION:
            self.metrics.login(door)
        return outcome

    async def admit_ticket(self, admission: Admission, target: str,
                           secret: str) -> tuple[TicketRow, Grant] | None:  # fmt: skip
        """A one-time or reusable (`btr_`) ticket as both factors; Denied if refused (the
        reason goes to the audit trail only). A reusable one returns its row and grant."""
        via, user = admission.attempt.via, admission.user
        found = None
        if secret.startswith(REUSABLE_PREFIX):
            found = await self.run(self.tickets.admit, user, target, secret,
                                   admission.attempt.source, via)  # fmt: skip
        else:
            await self.run(self.identity.use_ticket, user, target, secret, via)
        admission.ticket()
        self.metrics.login(admission.attempt.door)
        return found

    async def decide(self, admission: Admission, target: str, kind: str | None) -> Decision:
        """May this proven login open a session on `target` now? A refusal is audited (one
        for a lost store cannot be, and is logged; nor one while draining)."""
        if (refusal := self._node_refusal(admission, target, self.grace.refusal())) is not None:
            return door_decision(admission, Decision(False, refusal), refusal)
        decision = await self.run(self.access.decide, admission.user, target, kind)
        decision = door_decision(admission, decision)
        if not decision.allowed:
            self.metrics.access_refused(admission.attempt.door, decision.reason)
            await self.audit(admission.denied_event(target, decision.reason))
        return decision

    def going_live(self, admission: Admission, target: str) -> str | None:
        """decide()'s refusal during a drain, for a session decided before it: none starts."""
        return self._node_refusal(admission, target, None)

    def _node_refusal(self, admission: Admission, target: str, lost: str | None) -> str | None:
        """The node's own refusal (`lost`: its store's; else the drain's), logged and counted."""
        if (refusal := lost or (STOPPING_REFUSAL if self.stopping else None)) is not None:
            log.warning("access.denied", user=admission.user, target=target, reason=refusal)
            state = "stopping" if refusal == STOPPING_REFUSAL else "store_lost"
            self.metrics.access_refused(admission.attempt.door, refusal, node=state)
        return refusal

    async def login_failed(self, admission: Admission) -> None:
        """The login ended without both factors: one `auth.failed` event, if it tried (a name
        that is no user is chained as its keyed digest, never as typed)."""
        if not admission.tried():
            return
        self.metrics.login_refused(admission.attempt.door, admission.failures[-1])
        event = admission.failed_event(await self.audit_name(admission.user))
        if event is not None:
            await self.audit(event)

    async def audit_name(self, name: str) -> str:
        """How the audit trail names a login name: itself for an existing user, else a keyed
        digest (bastion/identity/pseudonym.py)."""
        return await self.run(self.identity.audit_name, name)

    async def sign_in(self, door: str, source: str, user: str, password: str,
                      code: str) -> Admission:  # fmt: skip
        """Password and TOTP without a target (the web console's sign-in): the proven
        Admission, or Denied with the one line to show (a failure is audited first)."""
        admission = self.admission(door, source, user)
        try:
            if not await self.prove(admission, PasswordProof(password)):
                raise Denied("wrong user name, password or verification code")
            outcome = await self.second_factor(admission, code)
            if not admission.authenticated:
                raise Denied(refusal_text(outcome))
        except Denied:
            await self.login_failed(admission)
            raise
        return admission

    async def step_up(self, door: str, source: str, user: str, code: str) -> Admission:
        """A fresh TOTP code from a person already signed in (their live session stands for
        the first factor): the shared check, with its single use, lockout and events; the
        proven Admission, or Denied with the one line to show (`auth.failed` written first)."""
        admission = self.admission(door, source, user)
        admission.proven(STEP_UP_SESSION, True)
        outcome = await self.second_factor(admission, code)
        if not admission.authenticated:
            await self.login_failed(admission)
            raise Denied(refusal_text(outcome))
        return admission

    # -- sessions: one lifecycle for every door ------------------------------------------

    async def open_session(self, admission: Admission, session_id: str, target: str,
                           grant_id: int | None, *, recording_path: str | None = None,
                           ticket_id: int | None = None,
                           config: Config | None = None) -> None:  # fmt: skip
        """Record a session as open (durable before any byte is relayed); only for a login
        whose two factors are proven. `config`: the one the door began it with."""
        if not admission.may_decide():
            raise Denied("not signed in: both factors must be proven first")
        attempt = admission.attempt
        await self.run(self.store.open_session, session_id=session_id, user=admission.user,
                       target=target, grant_id=grant_id, protocol=attempt.door,
                       client_addr=attempt.source, recording_path=recording_path,
                       ticket_id=ticket_id, node=self.node)  # fmt: skip
        self.metrics.session_opened(attempt.door, target)
        self.started_with[session_id] = config or self.config
        self.sessions_changed()

    async def close_session(self, session_id: str, state: str, reason: str,
                            recording: RecordingInfo | None = None, *,
                            last: Leftovers | None = None) -> None:  # fmt: skip
        """Close a session once, with its state, its reason and its recording's hash (and
        in the same transaction what it still has to store, `last`)."""
        try:
            await self.run(self.store.close_session, session_id, state, reason, recording,
                           last=last)  # fmt: skip
        finally:
            self.started_with.pop(session_id, None)
            self.sessions_changed()

    # -- live sessions, for the console: every door's, and word of each change -----------

    def sessions_changed(self) -> None:
        """Tell every subscriber that a session opened, ended or was asked to end."""
        for feed in self._feeds:
            feed.notify()

    def subscribe_sessions(self) -> SessionFeed:
        """A feed told whenever the live sessions change; unsubscribe after."""
        feed = SessionFeed()
        self._feeds.add(feed)
        return feed

    def unsubscribe_sessions(self, feed: SessionFeed) -> None:
        self._feeds.discard(feed)

    async def live_sessions(self) -> list[LiveSession]:
        """Every open session in the store (every door's), with its idle time when a door of
        this process serves it."""
        found = await self.run(self.store.sessions, open_only=True, limit=10_000)
        kills = {k[0] for k in await self.run(self.store.pending_kills)}
        live = {key: s for sessions in self._lives for key, s in sessions.items()}
        now = self.clock.now()
        out = []
        for record in found:
            served = live.get(record.id)
            idle = None
            if served is not None:
                idle = max(0, int((now - served.last_input).total_seconds()))
            out.append(LiveSession(record, idle, record.id in kills))
        return out

    async def log_activity(self, session_id: str, commands: Sequence[CommandLine],
                           ops: Sequence[FileOp]) -> None:  # fmt: skip
        """A session's commands and file operations so far, in one write."""
        await self.run(self.store.log_activity, session_id, commands, ops)

    # -- targets and grants, as the doors need them --------------------------------------

    async def reachable(self, user: str) -> list[str]:
        return await self.run(self.access.reachable, user)

    async def target(self, name: str) -> Target:
        return await self.run(self.store.target, name)

    async def find_target(self, name: str) -> Target | None:
        return await self.run(self.store.find_target, name)

    async def target_secret(self, name: str) -> bytes:
        """The target's own credential, opened (a key or a password; never to the engineer)."""
        sealed = await self.run(self.store.target_secret, name)
        return self.box.open(sealed, context=f"target:{name}")

    async def target_role(self, name: str, purpose: str) -> tuple[str, str]:
        """The login and password of a role `target harden` made; NotFound otherwise."""
        login, sealed = await self.run(self.store.target_role, name, purpose)
        return login, self.box.open(sealed, context=f"target:{name}:{purpose}").decode()

    async def unmask_grants(self, user: str, target: str) -> list[UnmaskGrant]:
        return await self.run(self.unmasking.active, user, target)

    def audit_writer(self) -> AuditWriter:
        """The group-commit writer the doors share (started by the server)."""
        if self.writer is None:
            raise StoreError("the audit writer is not running")
        return self.writer

    async def start_writer(self) -> None:
        if self.writer is None:
            self.writer = AuditWriter(self.store, observe=self.metrics.audit_commit)
            await self.writer.start()

    async def stop_writer(self) -> None:
        if self.writer is not None:
            await self.writer.stop()
            self.writer = None

    async def watch_sessions(self, lives: Sequence[Mapping[str, Killable]]) -> None:
        """End the live sessions (every door's) that an admin killed (`bastion sessions kill`)
        or whose access ended: grant expired or revoked, user disabled, idle, too long, outside
        allowed hours; and expire requests left pending too long. One watcher for all doors
        (bastion/watch.py); no fault in one look or one session stops it. A node that completes
        no look for longer than [cluster] store_grace ends every session it serves and refuses
        logins until a look completes again (StoreGrace). The console lists the same sessions."""
        self._lives = lives
        try:
            await SessionWatch(self, lives).run()
        finally:  # the server is stopping: the console's streams end with the watch
            self._lives = ()
            for feed in list(self._feeds):
                feed.close()

    async def start_decisions(self) -> None:
        """On a PostgreSQL store, listen for every node's decisions on a connection of this
        node's own (bastion/audit/listen.py), so the watcher acts on them at once; its poll
        stays the backstop. A SQLite store has one process, which polls it: a no-op."""
        location = getattr(self.store, "location", None)  # a PgLocation once stores can be
        if self.decisions is not None or not isinstance(location, PgLocation):
            return
        from bastion.audit.listen import DecisionFeed  # noqa: PLC0415 - asyncpg on PostgreSQL only

        feed = DecisionFeed.on(location, self.clock, node=self.node)
        feed.start()
        self.decisions = feed

    def decisions_health(self) -> dict[str, object] | None:
        """For /healthz: whether the decision feed listens, or since when it does not (None
        without a feed). Degraded, not down: the watcher's poll still ends sessions. Why it
        is down is told by kind only (the log has the rest): the check answers anyone, and
        the server's refusal names the store's role, database or address."""
        feed = self.decisions
        if feed is None:
            return None
        state = feed.state()
        since = iso(state.since) if state.since is not None else None
        if state.connected:
            return {"listening": True, "since": since}
        kind = (state.error or "").partition(":")[0]
        return {"listening": False, "disconnected_since": since, "error": kind}

    async def stop_decisions(self) -> None:
        feed, self.decisions = self.decisions, None
        if feed is not None:
            await feed.close()

    async def _watch_once(self, lives: Sequence[Mapping[str, Killable]]) -> None:
        await watch_once(self, lives)  # bastion/watch.py: one look for ended access

    def shutdown(self) -> None:
        self._hasher.shutdown(wait=True)
        self._executor.shutdown(wait=True)
