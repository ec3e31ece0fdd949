"""A running server's signals: SIGHUP reloads the configuration and TLS material (one reload at
a time), SIGTERM or SIGINT drains the node (a second one ends its sessions at once)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from bastion import reload as reloading
from bastion import sdnotify
from bastion.audit import Event
from bastion.config import Paths, load_config
from bastion.errors import BastionError
from bastion.live import Killable
from bastion.tasks import spawn

if TYPE_CHECKING:
    from bastion.core import Core

log = structlog.get_logger("bastion.lifecycle")
STOP_AFTER_DRAIN = 30.0  # seconds a stop may take after its drain: the doors' grace, uploads


class Pausable(Protocol):
    """What a drain and a reload ask of each door."""

    name: str

    @property
    def live(self) -> Mapping[str, Killable]: ...

    async def pause(self) -> None: ...

    def tell(self, message: str) -> None: ...

    def reload_tls(self, context: ssl.SSLContext | None, tls: Paths) -> str | None: ...


class Lifecycle:
    """Reloads and the drain of one server. `doors` is the server's own list (read when a
    signal comes); `stop` is called once the drain is over (the server then stops)."""

    def __init__(self, core: Core, doors: Sequence[Pausable], stop: asyncio.Event) -> None:
        self.core = core
        self.doors = doors
        self._stop = stop
        self._lock = asyncio.Lock()  # a flood of SIGHUPs: one reload after the other
        self._hurry = asyncio.Event()  # a second SIGTERM or SIGINT: end the sessions now
        self._draining: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[str]] = set()
        self.reloads = 0
        self.ended: dict[str, int] | None = None  # sessions drained and ended: bastion.stopped
        self.file = reloading.serve_file(core.config)
        self._host_key = reloading.file_digest(core.config.paths.ssh_host_key)
        self._read_digest: str | None = None  # the configuration file a reload read

    # -- the serve file -----------------------------------------------------------------

    def announce(self) -> None:
        """Say where this server runs (for `bastion reload`), once it has started."""
        self._write(None)

    def _write(self, last: dict[str, object] | None) -> None:
        state = {"pid": os.getpid(), "node": self.core.node, "reloads": self.reloads,
                 "last": last}  # fmt: skip
        try:
            reloading.write_serve_file(self.file, state)
        except (OSError, BastionError) as exc:
            log.error("serve.file_unwritable", path=str(self.file), error=str(exc))

    def withdraw(self) -> None:
        """The server stops: its serve file goes (unless another server's replaced it)."""
        found = reloading.read_serve_file(self.file)
        if found is not None and found["pid"] == os.getpid():
            Path(self.file).unlink(missing_ok=True)

    # -- SIGHUP -------------------------------------------------------------------------

    def hangup(self) -> None:
        """The SIGHUP handler: a reload, queued behind any reload on its way."""
        task = spawn(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> str:
        """Read the configuration and TLS material again and apply what may change; a bad
        one is refused and the running one stays. The outcome line, also logged, chained and
        written to the serve file."""
        async with self._lock:
            if self.core.stopping:
                return await self._refused("the node is stopping; nothing was reloaded")
            path = self.core.config.path
            data = await asyncio.to_thread(reloading.file_bytes, path)
            try:
                read = await asyncio.to_thread(load_config, path, data)
            except BastionError as exc:
                return await self._refused(exc.message)
            self._read_digest = hashlib.sha256(data).hexdigest() if data is not None else None
            plan = reloading.plan(self.core.config, read)
            with reloading.tls_snapshot(plan.config.paths) as tls:  # one read for all doors
                problem = reloading.tls_problem(tls)
                if problem is not None:
                    return await self._refused(problem)
                return await self._apply(plan, tls)

    async def _apply(self, plan: reloading.Plan, tls: Paths) -> str:
        restart = list(plan.needs_restart)
        context = reloading.tls_context(tls)
        for door in self.doors:
            key = door.reload_tls(context, tls)
            if key is not None and key not in restart:
                restart.append(key)
        if reloading.file_digest(plan.config.paths.ssh_host_key) != self._host_key:
            restart.append("the SSH host key file")
        plan = reloading.Plan(plan.config, plan.changed, tuple(restart))
        self.core.reconfigure(plan.config)
        line = plan.line()
        detail: dict[str, object] = {"changed": list(plan.changed), "needs_restart": restart,
                                     "config_sha256": self._read_digest}  # fmt: skip
        log.info("config.reloaded", outcome=line, **detail)
        await self._chain(Event("config.reloaded", self._actor(), "", "notice", detail=detail))
        self._done(True, line)
        return line

    async def _refused(self, why: str) -> str:
        line = f"reload refused: {why}; the running configuration stays"
        log.error("config.reload_refused", outcome=line)
        event = Event("config.reload_refused", self._actor(), "", "warning",
                      detail={"error": why})  # fmt: skip
        await self._chain(event)
        self._done(False, line)
        return line

    def _done(self, ok: bool, line: str) -> None:
        self.reloads += 1
        self._write({"ok": ok, "line": line, "n": self.reloads})

    async def _chain(self, event: Event) -> None:
        try:
            await self.core.audit(event)
        except BastionError as exc:
            log.error("audit.append_failed", kind=event.kind, error=str(exc))

    def _actor(self) -> str:
        return f"serve:{os.getpid()}"

    # -- SIGTERM and SIGINT -------------------------------------------------------------

    def terminate(self) -> None:
        """The SIGTERM and SIGINT handler: the first drains, the next ends sessions now."""
        if self._draining is None:
            self._draining = spawn(self.drain(), name="drain")
        else:
            log.warning("serve.drain_cut_short")
            self._hurry.set()

    async def drain(self) -> None:
        """Refuse new sessions on every door at once (/healthz: 503 "stopping"; the
        PostgreSQL door still takes cancel requests), tell the live sessions, wait up to
        [sessions] drain for them to end by themselves, then let the server stop (ending the
        rest as "node stopping"). A login that completes meanwhile is refused (`stopping`)."""
        self.core.stopping = True
        wait = self.core.config.sessions.drain.total_seconds()
        # systemd waits out the drain and the stop after it, whatever TimeoutStopSec says
        sdnotify.notify("STOPPING=1", "STATUS=draining",
                        f"EXTEND_TIMEOUT_USEC={int((wait + STOP_AFTER_DRAIN) * 1e6)}")  # fmt: skip
        try:
            await asyncio.gather(*(door.pause() for door in self.doors))
            began = self._live()
            log.info("serve.draining", sessions=len(began), drain=wait)
            if began and wait > 0:
                message = f"this node is stopping; your session ends in {wait:g} s"
                for door in self.doors:
                    door.tell(message)
                await self._wait(wait)
            left = self._live()
            self.ended = {"drained": len(began - left), "ended": len(left)}
        finally:
            self._stop.set()

    def _live(self) -> set[str]:
        return {key for door in self.doors for key in door.live}

    async def _wait(self, seconds: float) -> None:
        """Until no session is live, the drain time is up, or a second signal comes."""
        deadline = time.monotonic() + seconds
        feed = self.core.subscribe_sessions()
        try:
            while self._live() and not self._hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                await feed.wait(min(left, 0.25))
        finally:
            self.core.unsubscribe_sessions(feed)
