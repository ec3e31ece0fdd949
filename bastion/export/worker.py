"""The export's delivery: one task per sink reads the chain after the sink's cursor, delivers
what its filter takes, and moves the cursor on only after the sink took it.

Backoff while a sink is down (retry_after, doubling up to retry_max); /healthz shows each
sink's state (the kind of failure only). A sink failing for alert_after chains one
`export.sink_failing` event, and its recovery one `export.sink_recovered`: two events per
outage at most, whatever the number of retries, so the feed never feeds on itself. On several
nodes the sink's lease (export:NAME) lets one node at a time deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from bastion.audit import Event, Store
from bastion.audit.chain import ChainedEvent
from bastion.audit.cluster import Lease
from bastion.audit.exporting import events_after, export_lease
from bastion.audit.sqlconn import Conn
from bastion.clock import Clock, iso
from bastion.config_export import ExportSink
from bastion.export.formats import SinkFilter
from bastion.export.sinks import FileSink, SinkError, SyslogSink, WebhookSink
from bastion.tasks import spawn

log = structlog.get_logger("bastion.export")

LOOK_EVERY = 0.2  # seconds between looks at the chain when a sink is caught up
STOP_GRACE = 5.0  # seconds a stop waits for a batch on its way to its sink
WRITE_EVERY = 5.0  # seconds between cursor writes while events flow (at once when idle)
ACTOR = "bastion:export"
FAILING, RECOVERED = "export.sink_failing", "export.sink_recovered"
TAMPERED = "export.cursor_tampered"
NOT_COUNTED = ("not enabled in the store (another node runs without this sink, or its cursor"
               " was deleted): restart to enable it")  # fmt: skip


class Runner(Protocol):
    """Core.run: a store call on the store's thread."""

    async def run(self, fn: Any, *args: Any) -> Any: ...


class Output(Protocol):
    kind: str

    async def deliver(self, events: list[ChainedEvent]) -> None: ...

    async def close(self) -> None: ...


def output_for(sink: ExportSink, node: str) -> Output:
    """The sink's I/O for its kind."""
    if sink.kind == "syslog":
        return SyslogSink(sink, node)
    if sink.kind == "file":
        return FileSink(sink)
    return WebhookSink(sink, node)


class SinkWorker:
    """Delivery to one sink, and its state for /healthz."""

    def __init__(self, sink: ExportSink, store: Store, core: Runner, *, node: str,
                 clock: Clock, read: Any) -> None:  # fmt: skip
        self.sink, self.store, self.core, self.node, self.clock = sink, store, core, node, clock
        self.read = read  # (after, limit) -> events, on the export's own reader
        self.filter = SinkFilter(sink.min_severity, sink.kinds)
        self.out = output_for(sink, node)
        self.lease: Lease | None = None
        self.lease_ttl = max(timedelta(seconds=30), sink.timeout * 3)
        self._renewed = 0.0
        self.status, self.error = "starting", ""
        self.delivered_seq = 0
        self.failing_since: datetime | None = None
        self.failures, self.alerted, self.replay = 0, False, False
        self.resend_from: int | None = None  # while sending the replay again: read after it
        self._sending = False
        self.skip_through = 0  # the file sink: lines already written before a crash
        self.held: tuple[int, int] | None = None  # (stored cursor, delivered past it), unwritten
        self._written = -WRITE_EVERY  # when the cursor was last written (the clock's monotonic)

    async def run(self) -> None:
        if isinstance(self.out, FileSink):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self.skip_through = await self._already_written(self.out)
        while True:
            try:
                more = await self._finished_step()
            except SinkError as exc:
                await self._failed(str(exc))
                wait = self.sink.retry_after * (2 ** min(self.failures - 1, 20))
                await asyncio.sleep(min(wait, self.sink.retry_max).total_seconds())
                continue
            except Exception as exc:  # the store: try again shortly
                log.error("export.loop_failed", sink=self.sink.name, error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            if not more:
                await asyncio.sleep(LOOK_EVERY)

    async def _already_written(self, out: FileSink) -> int:
        """The seq up to which the file already holds the events (a crash between its fsync
        and the cursor): its last line's, only if the chain holds that seq with that MAC. A
        line anyone else wrote there never makes the feed skip an event."""
        last = await asyncio.to_thread(out.last_written)
        if last is None:
            return 0
        seq, mac = last
        found = await self.read(seq - 1, 1)
        return seq if found and found[0].seq == seq and found[0].row_hash == mac else 0

    async def _finished_step(self) -> bool:
        """A step that a stop lets finish, up to STOP_GRACE, once it reached the sink: what
        the sink took is then marked taken (another node does not send it again)."""
        step = spawn(self._outcome(), name=f"export-{self.sink.name}")
        step.add_done_callback(lambda _: setattr(self, "_sending", False))
        try:
            more, failed = await asyncio.shield(step)
        except asyncio.CancelledError:
            if self._sending:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(step, STOP_GRACE)
            step.cancel()
            raise
        if failed is not None:
            raise failed
        return more

    async def _outcome(self) -> tuple[bool, Exception | None]:
        """The step's result or its failure, as a value (the task never fails: the loop
        judges the failure, and the task helper does not log it as a crash)."""
        try:
            return await self.step(), None
        except Exception as exc:
            return False, exc

    async def step(self) -> bool:
        """One batch; True when it was full (look again at once)."""
        if not await self._hold_lease():
            self.status, self.held = "standby", None  # the next holder sends them again
            return False
        stored, intact, counted = await self.core.run(self.store.export_position, self.sink.name)
        if not counted:  # its cursor cannot move: sending would only send the batch again
            raise SinkError(NOT_COUNTED)
        if not intact:
            self.held = None
            return await self._moved_by_hand(stored)
        cursor = self.held[1] if self.held is not None and self.held[0] == stored else stored
        if self.replay:  # a new connection after a failure: the last `replay` events again,
            start = cursor - self.sink.replay  # and all the receiver may not have read
            unread = self.out.unread_from if isinstance(self.out, SyslogSink) else None
            if unread is not None:
                start = min(start, unread - 1)
            self.resend_from, self.replay = max(0, start), False
        start = cursor if self.resend_from is None else self.resend_from
        events: list[ChainedEvent] = await self.read(start, self.sink.batch)
        if events:
            wanted = [e for e in events if e.seq > self.skip_through
                      and self.filter.takes(e.kind, e.severity)]  # fmt: skip
            if wanted:
                self._sending = True  # until the step ends: the cursor moves with it
                try:
                    await self.out.deliver(wanted)
                except SinkError:  # what it took before stays taken through the outage
                    with contextlib.suppress(Exception):
                        await self.write_cursor()
                    raise
            last = events[-1].seq
            self.resend_from = last if self.resend_from is not None and last < cursor else None
            cursor = max(cursor, last)
        self.held, self.delivered_seq = (stored, cursor) if cursor > stored else None, cursor
        due = not events or self.clock.monotonic() - self._written >= WRITE_EVERY
        if due and not await self.write_cursor():
            return False
        await self._recovered()
        return len(events) == self.sink.batch

    async def write_cursor(self) -> bool:
        """Write what was delivered past the stored cursor (held in memory between writes: a
        node that dies sends it again from the stored one); False when the lease was lost
        meanwhile (nothing written: the next look takes the lease again, or not)."""
        held, self.held = self.held, None
        self._written = self.clock.monotonic()
        if held is None:
            return True
        if await self.core.run(self.store.advance_export, self.sink.name, *held, self.lease):
            return True
        self.lease = None
        return False

    async def _moved_by_hand(self, cursor: int) -> bool:
        """The cursor's MAC does not hold: someone without the chain key edited it (to hide
        events from the SIEM, or to let retention cut them). Send the sink the whole kept
        chain again (receivers dedupe on seq and mac) and chain one `export.cursor_tampered`."""
        if not await self.core.run(self.store.reset_export, self.sink.name, cursor, self.lease):
            self.lease = None
            return False
        self.resend_from, self.delivered_seq = None, 0
        if isinstance(self.out, FileSink):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self.skip_through = await self._already_written(self.out)
        log.error("export.cursor_tampered", sink=self.sink.name, found=cursor)
        detail = {"sink": self.sink.name, "kind": self.sink.kind, "found_seq": cursor,
                  "node": self.node}  # fmt: skip
        await self._chain(Event(TAMPERED, ACTOR, self.sink.name, "high", detail=detail))
        return True

    async def _hold_lease(self) -> bool:
        """Take or renew the sink's lease when a third of its time has gone by (by the loop's
        own pace, or by the clock: a step of it must not let the lease lapse mid-batch)."""
        third = self.lease_ttl / 3
        if (
            self.lease is not None
            and time.monotonic() - self._renewed < third.total_seconds()
            and self.clock.now() < self.lease.expires_at - 2 * third
        ):
            return True
        self.lease = await self.core.run(self.store.take_lease, export_lease(self.sink.name),
                                         self.node, self.lease_ttl)  # fmt: skip
        self._renewed = time.monotonic()
        return self.lease is not None

    async def _failed(self, error: str) -> None:
        now = self.clock.now()
        self.status, self.error = "failing", error
        self.replay = self.sink.kind == "syslog"  # the others know what they took
        self.failures += 1
        self.failing_since = self.failing_since or now
        log.warning("export.sink_failed", sink=self.sink.name, kind=self.sink.kind, error=error,
                    attempt=self.failures)  # fmt: skip
        if not self.alerted and now - self.failing_since >= self.sink.alert_after:
            self.alerted = True
            detail = {"sink": self.sink.name, "kind": self.sink.kind, "error": error,
                      "since": iso(self.failing_since), "attempts": self.failures}  # fmt: skip
            await self._chain(Event(FAILING, ACTOR, self.sink.name, "warning", detail=detail))

    async def _recovered(self) -> None:
        self.status, self.error = "ok", ""
        if self.failing_since is None:
            return
        if self.alerted:
            detail = {"sink": self.sink.name, "kind": self.sink.kind,
                      "since": iso(self.failing_since), "attempts": self.failures}  # fmt: skip
            await self._chain(Event(RECOVERED, ACTOR, self.sink.name, "notice", detail=detail))
        self.failing_since, self.failures, self.alerted = None, 0, False

    async def _chain(self, event: Event) -> None:
        try:
            await self.core.run(self.store.append_events, [event])
        except Exception as exc:
            log.error("audit.append_failed", kind=event.kind, error=type(exc).__name__)

    def health(self) -> dict[str, object]:
        """What /healthz shows: no address, URL or path, only the kind of failure."""
        out: dict[str, object] = {
            "name": self.sink.name,
            "kind": self.sink.kind,
            "status": self.status,
            "delivered_seq": self.delivered_seq,
        }
        if self.failing_since is not None:
            out["failing_since"], out["error"] = iso(self.failing_since), self.error
        return out


class Exporter:
    """Every enabled [export.NAME] sink's worker, reading the chain on a connection and a
    thread of their own."""

    def __init__(self, sinks: tuple[ExportSink, ...], store: Store, core: Runner, node: str,
                 clock: Clock) -> None:  # fmt: skip
        self.store, self.core, self.node = store, core, node
        self.sinks = tuple(s for s in sinks if s.enabled)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="bastion-export")
        self._conn: Conn | None = None
        self.workers = [
            SinkWorker(s, store, core, node=node, clock=clock, read=self._read) for s in self.sinks
        ]

    async def _read(self, after: int, limit: int) -> list[ChainedEvent]:
        def read() -> list[ChainedEvent]:
            if self._conn is None:
                self._conn = self.store.reader()
            return events_after(self._conn, after, limit)

        return await asyncio.get_running_loop().run_in_executor(self._thread, read)

    async def run(self) -> None:
        names = [(s.name, s.kind, s.selection) for s in self.sinks]
        await self.core.run(self.store.export_sinks_configured, names)
        await asyncio.gather(*(w.run() for w in self.workers))

    def health(self) -> list[dict[str, object]]:
        return [w.health() for w in self.workers]

    async def close(self) -> None:
        """Write each sink's cursor, close the sinks' connections and give up the leases
        (another node takes over)."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await worker.write_cursor()
            with contextlib.suppress(Exception):
                await worker.out.close()
            if worker.lease is not None:
                with contextlib.suppress(Exception):
                    await self.core.run(self.store.release_lease, worker.lease.name, self.node)
        conn, self._conn = self._conn, None
        if conn is not None:
            self._thread.submit(conn.close).result(10)
        self._thread.shutdown(wait=False)
