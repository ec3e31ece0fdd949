"""`bastion serve`: start every configured door in one asyncio process, stop them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import ParamSpec, Protocol, TypeVar

import structlog

from bastion import __version__, retention_schedule, sdnotify
from bastion.access.storegrace import presence_ttl
from bastion.anchoring import AnchorHealth
from bastion.audit import Event
from bastion.audit.anchors import Anchorer, anchor_key
from bastion.audit.cluster import node_lease
from bastion.audit.exposure import NAMED
from bastion.clock import iso
from bastion.core import Core
from bastion.export.sinks import SinkConfigError
from bastion.export.worker import Exporter
from bastion.lifecycle import Lifecycle, Pausable
from bastion.live import Killable
from bastion.notify import Notifier
from bastion.pgproxy.door import PgDoor
from bastion.recording.completer import LEASE as COMPLETER_LEASE
from bastion.recording.completer import Completer, every
from bastion.recording.objects import ObjectStore, ObjectStoreError
from bastion.recording.upload import Uploader
from bastion.reports.deliver import ReportBuilder
from bastion.reports.schedule import ReportScheduler, pack_builder
from bastion.serve_helpers import (
    OnStore,
    ServeError,
    check_store,
    hold_spool_or_refuse,
    in_thread,
    recording_left,
)
from bastion.ssh.door import SSHDoor
from bastion.tasks import spawn
from bastion.watch import WATCH_EVERY
from bastion.web import WebDoor
from bastion.web.metrics import MetricsError, MetricsListener, load_token, start_metrics

__all__ = ["ServeError", "Server", "run_server"]  # ServeError: the CLI and tests catch it here
log = structlog.get_logger("bastion.server")
P = ParamSpec("P")
T = TypeVar("T")
NAMESAKE_WAIT = 5.0  # seconds to watch for a renewal of this node's own name's presence


class Door(Pausable, Protocol):
    name: str
    port: int

    @property
    def live(self) -> Mapping[str, Killable]:
        """The door's sessions now, by session id."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Server:
    """Owns the doors; the CLI only parses, the Config decides, the Server runs."""

    def __init__(self, core: Core, report_builder: ReportBuilder | None = None) -> None:
        self.core = core
        self.report_builder = report_builder or pack_builder(core)
        self.config = core.config
        self.store = core.store
        self.doors: list[Door] = []
        self._stopping = asyncio.Event()
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        self.anchorer: Anchorer | None = None
        self._anchors_failing = False
        self.uploader: Uploader | None = None
        self._spool_lock: int | None = None  # hold_spool's descriptor while no uploader has it
        self._present = False  # this node's presence lease is taken (released at stop)
        self.completer: Completer | None = None
        self._metrics_token: bytes | None = None  # [metrics] token_file, read at start
        self.metrics_listener: MetricsListener | None = None  # [metrics] listen
        self.lifecycle = Lifecycle(core, self.doors, self._stopping)  # SIGHUP, SIGTERM

    def _build_doors(self) -> list[Door]:
        listeners = self.config.listeners
        doors: list[Door] = []
        if listeners.ssh.enabled:
            doors.append(SSHDoor(listeners.ssh, self.core))
        if listeners.web.enabled:
            doors.append(WebDoor(listeners.web, self.core, self._metrics_token))
        if listeners.postgres.enabled:
            doors.append(PgDoor(listeners.postgres, self.core))
        return doors

    def recover(self) -> None:
        """This node's sessions a crash left open are closed as interrupted; their recordings
        stay. Sessions from before sessions named their node are closed too, unless another
        node is alive on the store (it may be an older bastion serving them): they can only
        come from a time when one bastion served the store alone."""
        node = self.core.node
        self._refuse_a_namesake(node)
        others = [name for name in self.store.live_nodes() if name != node]
        self.store.take_lease(node_lease(node), node, presence_ttl(self.config.cluster.store_grace),
                              quiet=True)  # fmt: skip
        self._present = True
        closed = self.store.close_interrupted(f"serve:{os.getpid()}", recording_left,
                                              node=node, unowned=not others)  # fmt: skip
        if closed:
            log.warning("sessions.interrupted", count=len(closed), sessions=closed, node=node)
        if others:
            log.info("cluster.nodes_alive", node=node, others=others)
        if exposed := self.store.roles_that_may_connect():
            log.warning("store.others_may_connect", count=len(exposed), roles=exposed[:NAMED],
                        why="each may hold the store's write lock or fill its NOTIFY queue",
                        fix="REVOKE CONNECT ON DATABASE (the store's) FROM PUBLIC, and from"
                            " each of these roles")  # fmt: skip

    def _refuse_a_namesake(self, node: str) -> None:
        """Two processes serving as one node would close each other's sessions: if this
        node's presence has not expired, it is a crashed predecessor's unless it is renewed
        meanwhile (a live node renews it every look), and then this one does not start."""
        held = self.store.lease(node_lease(node))
        if held is None or held.expires_at <= self.store.store_time():  # one clock: the store's
            return
        deadline = time.monotonic() + NAMESAKE_WAIT
        while time.monotonic() < deadline:  # on the store's thread, before any door listens
            time.sleep(WATCH_EVERY / 2)
            again = self.store.lease(node_lease(node))
            if again is not None and again.renewed_at != held.renewed_at:
                raise ServeError(
                    f"cluster.node: another bastion is serving as node {node!r} on this store"
                    f" (alive at {iso(again.renewed_at)}); give each node its own name"
                )

    async def start(self) -> None:
        """Open every door, or none: a door that cannot listen stops the others."""
        try:
            reports = ReportScheduler(self.core, self.report_builder)
            self._metrics_token = await asyncio.to_thread(load_token, self.config)
            exporter = self._exporter()  # a sink's unreadable CA stops the start, before a door
        except (ValueError, MetricsError, SinkConfigError) as exc:
            raise ServeError(str(exc)) from None
        if self.config.recordings.url:  # the spool (one per node) before crash recovery:
            # a second process on it refuses here, before it could close any session
            self._spool_lock = await asyncio.to_thread(
                hold_spool_or_refuse, self.config.paths.recordings
            )
        try:
            await self.core.run(self.recover)
            await self._start_uploads()
        except BaseException:
            self._release_spool()
            raise
        await self.core.start_writer()
        await self.core.start_decisions()  # PostgreSQL: hear every node's decisions at once
        audit = self.config.audit
        if audit.anchors:  # /healthz: "pending" until the first round, after the doors open
            self.core.anchoring = AnchorHealth(audit.anchors, audit.anchor_every, self.core.clock)
        await self._open_doors()
        await self._start_metrics()
        await self._warn_weak_targets()
        lives = [door.live for door in self.doors]
        self._tasks.append(spawn(self.core.watch_sessions(lives), name="watch-sessions"))
        self._tasks.append(spawn(self._complete_every(), name="upload-completer"))
        if self.config.notify.webhook_url:
            self._tasks.append(spawn(Notifier(self.core).run(), name="notifier"))
        await self._start_export(exporter)
        # builds last week's review when due (and a run missed while down), then delivers it
        self._tasks.append(spawn(reports.run(), name="weekly-reports"))
        if self.config.retention.enabled:  # one node at a time prunes (a lease)
            self._tasks.append(spawn(retention_schedule.run_every(self.core), name="retention"))
        detail = {"version": __version__, "doors": [d.name for d in self.doors],
                  "node": self.core.node}  # fmt: skip
        started = Event("bastion.started", f"serve:{os.getpid()}", "", "notice", detail=detail)
        await self.core.run(self.store.append_events, [started])
        self._started = self.core.started = True  # /healthz: "ok" from now on, not "starting"
        self.lifecycle.announce()  # `bastion reload` finds this server from now on
        if self.config.audit.anchors:
            self.anchorer = Anchorer(
                self.config.audit.anchors, anchor_key(self.core.box), self.core.node,
                lambda: iso(self.core.clock.now()),
            )  # fmt: skip
            await self._anchor()
            self._tasks.append(spawn(self._anchor_every(), name="anchors"))

    async def _open_doors(self) -> None:
        """Every configured door listens, or ServeError (the ones open are stopped)."""
        for door in self._build_doors():
            listener = getattr(self.config.listeners, door.name)
            try:
                await door.start()
            except OSError as exc:
                await self.stop()
                raise ServeError(
                    f"listeners.{door.name}: cannot listen on {listener.address}:{listener.port}:"
                    f" {exc.strerror or exc}"
                ) from exc
            self.doors.append(door)
            log.info("door.listening", door=door.name, address=listener.address, port=door.port)

    async def _start_metrics(self) -> None:
        """The doors' live sessions for /metrics; and with [metrics] listen, its listener."""
        live = {door.name: door.live for door in self.doors}
        try:
            self.metrics_listener = await start_metrics(self.core, live, self._metrics_token)
        except MetricsError as exc:
            await self.stop()
            raise ServeError(exc.message) from None

    def _exporter(self) -> Exporter | None:
        """The enabled [export] sinks' workers (bastion/export), or None without any."""
        sinks = tuple(sink for sink in self.config.export if sink.enabled)
        if not sinks:
            return None
        return Exporter(sinks, self.store, self.core, self.core.node, self.core.clock)

    async def _start_export(self, exporter: Exporter | None) -> None:
        """Every start says which sinks are configured (one taken out no longer holds
        retention back), then their workers start."""
        sinks = exporter.sinks if exporter is not None else ()
        await self.core.run(self.store.export_sinks_configured,
                            [(sink.name, sink.kind, sink.selection) for sink in sinks])  # fmt: skip
        if exporter is not None:
            self.core.exporting = exporter
            self._tasks.append(spawn(exporter.run(), name="export"))

    async def _start_uploads(self) -> None:
        """With [recordings] url: prove the bucket and credentials (refusing to start when
        they are wrong; an unreachable store only delays uploads), start the uploader and
        queue what the spool holds, recordings of sessions a crash cut short included."""
        policy = self.config.recordings
        if not policy.url:
            return
        try:
            store = ObjectStore.from_policy(policy, self.config.path.parent)
        except ObjectStoreError as exc:
            raise ServeError(exc.message) from None
        await check_store(store)
        uploader = Uploader(store, self.config.paths.recordings, keep=policy.keep_spool,
                            recorded=self.core.recorded_hash, progress=self.core.note_progress,
                            alarm=self._alarm_from(asyncio.get_running_loop()))  # fmt: skip
        held, self._spool_lock = self._spool_lock, None
        uploader.start(held)  # the uploader holds the spool's lock from now on
        queued = await asyncio.to_thread(uploader.recover)
        if queued:
            log.info("recordings.spool_queued", count=len(queued))
        self.core.uploads = self.uploader = uploader

    async def _complete_every(self) -> None:
        """The upload completer (bastion/recording/completer.py): a round every so often, in
        a daemon thread of its own (a hanging object store never holds the store's thread,
        the loop, or the process's exit); one node at a time holds its lease. A failed
        round is logged and the next one tries again."""
        loop = asyncio.get_running_loop()
        lost_after = self.config.cluster.lost_after
        objects = self.uploader.store if self.uploader is not None else None
        self.completer = Completer(self.store, OnStore(self.core, loop), objects,
                                   self.core.node, lost_after, box=self.core.box,
                                   left=recording_left)  # fmt: skip
        while True:
            await asyncio.sleep(every(lost_after))
            try:
                done = await in_thread(self.completer.round, "bastion-completer")
            except Exception as exc:
                log.error("completer.round_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            else:
                if done.completed or done.closed:
                    log.warning("completer.round", completed=done.completed, closed=done.closed)

    def _alarm_from(
        self, loop: asyncio.AbstractEventLoop
    ) -> Callable[[str, dict[str, object]], None]:
        """For the uploader's thread: chain a high event (on the store's thread, through the
        loop), without waiting for it."""

        def alarm(kind: str, detail: dict[str, object]) -> None:
            if loop.is_closed():
                raise RuntimeError("the server has stopped: the event is not chained")
            event = Event(kind, f"serve:{os.getpid()}", "", "high", detail=detail)
            asyncio.run_coroutine_threadsafe(self._chain(event), loop)

        return alarm

    async def _chain(self, event: Event) -> None:
        """Append one event on the store's thread; a failure is logged (nobody waits)."""
        try:
            await self.core.run(self.store.append_events, [event])
        except Exception as exc:
            log.error("audit.append_failed", kind=event.kind, error=f"{type(exc).__name__}")

    async def _anchor_every(self) -> None:
        """Send the chain's signed head to the anchor sinks every anchor_every."""
        while True:
            await asyncio.sleep(self.config.audit.anchor_every.total_seconds())
            await self._anchor()

    async def _anchor(self) -> None:
        """One round of signed heads: the head read on the store's thread, the sinks written
        off the event loop. A sink that fails is logged each time and audited once per
        outage; the sessions go on (their own audit is durable)."""
        anchorer, health = self.anchorer, self.core.anchoring
        if anchorer is None:
            return
        if health is not None:
            health.began()
        delivered: list[bool] | None = None
        try:
            head = await self.core.run(self.store.chain_head)
        except Exception as exc:  # the store could not be read: same as every sink failing
            failed = [f"the chain head could not be read: {exc}"]
        else:
            failed = await asyncio.get_running_loop().run_in_executor(None, anchorer.anchor, head)
            delivered = anchorer.delivered
        if health is not None:
            health.ended(delivered)
        for problem in failed:
            log.error("audit.anchor_failed", sink=problem)
        if bool(failed) == self._anchors_failing:
            return
        self._anchors_failing = bool(failed)
        kind, severity = (
            ("audit.anchor_failed", "high") if failed else ("audit.anchor_ok", "notice")
        )
        event = Event(kind, f"serve:{os.getpid()}", "", severity, detail={"failed": failed})
        with contextlib.suppress(Exception):  # logged above; the next round tries again
            await self.core.run(self.store.append_events, [event])

    async def _warn_weak_targets(self) -> None:
        """Say loudly, once at start-up, which databases are reached without TLS or with a
        login that does not prove the server."""
        targets = await self.core.run(self.store.targets)
        for target in targets:
            if target.kind == "postgres":
                for line in self.config.target_policy(target.name).database_warnings():
                    log.warning("target.weak_transport", target=target.name, warning=line)

    async def stop(self) -> None:
        if self.completer is not None:
            self.completer.stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.lifecycle.ended is None:  # stopped without a drain: every live one is ended
            ended = sum(len(door.live) for door in self.doors)
            self.lifecycle.ended = {"drained": 0, "ended": ended}
        if self.core.exporting is not None:
            exporter, self.core.exporting = self.core.exporting, None
            await exporter.close()
        for door in reversed(self.doors):
            with contextlib.suppress(Exception):
                await door.stop()
        self.doors.clear()
        if self.metrics_listener is not None:
            await self.metrics_listener.stop()
            self.metrics_listener = None
        await self.core.stop_decisions()
        await self.core.stop_writer()
        if self.uploader is not None:  # what is not uploaded yet stays in the spool
            self.core.uploads = None
            await asyncio.to_thread(self.uploader.stop)
            self.uploader = None
        self._release_spool()
        await self._release_leases()
        if self._started:
            self._started = self.core.started = False
            self.lifecycle.withdraw()
            event = Event("bastion.stopped", f"serve:{os.getpid()}", "", "notice",
                          detail={"sessions": self.lifecycle.ended})  # fmt: skip
            await self.core.run(self.store.append_events, [event])
            log.info("serve.stopped")
        if self.anchorer is not None:  # the last head, bastion.stopped included
            await self._anchor()
            self.anchorer.close()
            self.anchorer = None
        self.core.anchoring = None

    async def _release_leases(self) -> None:
        """The completer's lease (another node may take it) and this node's presence."""
        if self.completer is not None and self.completer.holds:
            self.completer = None
            with contextlib.suppress(Exception):  # else it expires after lost_after
                await self.core.run(self.store.release_lease, COMPLETER_LEASE, self.core.node)
        if self._present:  # a namesake refused at start-up leaves the live one's alone
            self._present = False
            with contextlib.suppress(Exception):  # it expires by itself (presence_ttl)
                await self.core.run(self.store.release_lease, node_lease(self.core.node),
                                    self.core.node)  # fmt: skip

    def _release_spool(self) -> None:
        if self._spool_lock is not None:
            os.close(self._spool_lock)
            self._spool_lock = None

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run until SIGINT or SIGTERM (a drain first), then stop every door; SIGHUP
        reloads (bastion/lifecycle.py)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.lifecycle.terminate)
        loop.add_signal_handler(signal.SIGHUP, self.lifecycle.hangup)
        try:
            await self.start()
            # What start-up loaded lives as long as the process: frozen, it is never walked
            # again, so collections cost only what sessions made since (the relay's hot path).
            gc.collect()
            gc.freeze()
            log.info("serve.ready", doors=[d.name for d in self.doors])
            doors = ", ".join(d.name for d in self.doors)
            sdnotify.notify("READY=1", f"STATUS=serving: {doors}", f"MAINPID={os.getpid()}")
            await self._stopping.wait()
        finally:
            sdnotify.notify("STOPPING=1", "STATUS=stopping")
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)


def run_server(core: Core) -> None:
    """Entry point for `bastion serve`: uvloop where installed."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(Server(core).run())
    else:
        uvloop.run(Server(core).run())
