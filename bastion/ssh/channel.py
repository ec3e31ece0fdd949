"""One SSH session channel relayed to the target: access check, tap, flow control, exit status."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import TYPE_CHECKING, Any

import asyncssh
import structlog

from bastion.access.admission import Admission
from bastion.access.tunnels import tunnel_refusal
from bastion.errors import BastionError, Denied
from bastion.ssh import menu, selfservice, streams
from bastion.ssh.flow import Batch, Valve
from bastion.ssh.tap import SessionTap
from bastion.ssh.upstream_session import UpstreamSession
from bastion.tasks import spawn

if TYPE_CHECKING:
    from bastion.ssh.auth import BastionSSHServer

log = structlog.get_logger("bastion.ssh")

ENV_ALLOWED = re.compile(r"^(TERM|LANG|LC_[A-Z_]+)$")
MAX_EARLY_INPUT = 64 * 1024  # keystrokes held while the target connects
TICK = 0.5  # seconds between recording flush checks


class ChannelSession(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """The engineer's side of one channel; UpstreamSession is the target's side."""

    def __init__(self, server: BastionSSHServer) -> None:
        self.server = server
        self.core = server.core
        self.chan: Any = None
        self.up: Any = None
        self.kind = "shell"
        self.command: str | None = None
        self.term: tuple[str, int, int] | None = None
        self.early = bytearray()
        self.early_eof = False  # the client sent EOF before the target was connected
        self._input = asyncio.Event()  # set whenever early input or EOF arrives
        self.menu: menu.Menu | None = None
        self.tap: SessionTap | None = None
        self.session_id = str(uuid.uuid4())
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str, str] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._finished = False
        self._ending: tuple[str, str] | None = None
        self.finishing: asyncio.Task[None] | None = None
        self.target_name = ""
        self.opened_at = self.last_input = self.core.clock.now()
        self.client_valve = Valve()  # reading the engineer's side
        self._outgoing = Batch()  # the target's output read in this turn of the loop
        self.target_valve = Valve()  # reading the target's side
        self._loop = asyncio.get_running_loop()

    # -- requests before the session starts ----------------------------------------------

    def connection_made(self, chan: Any) -> None:
        self.chan = chan
        self.client_valve.attach(chan)

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Any) -> bool:  # fmt: skip
        self.term = (term_type or "xterm", term_size[0] or 80, term_size[1] or 24)
        return True

    def shell_requested(self) -> bool:
        self.kind = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind, self.command = "exec", command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self.kind = "sftp"
        return True

    def session_started(self) -> None:
        spawn(self._begin(), name="ssh-begin")

    # -- starting: target, access, recording, upstream ----------------------------------

    @property
    def user(self) -> str:
        return self.server.state.login.user

    @property
    def admission(self) -> Admission:
        """The connection's proven login; a channel is only opened after both factors."""
        found = self.server.state.admission
        if found is None or not found.may_decide():
            raise Denied("not signed in: both factors must be proven first")
        return found

    async def _begin(self) -> None:
        target = self.server.state.login.target
        if target is None and self.kind == "exec" and selfservice.is_command(self.command):
            code = await self._read_code() if selfservice.needs_code(self.command) else None
            reply = await selfservice.run(self.core, self.user, self.command or "", code=code,
                                          source=self._client_addr())  # fmt: skip
            self.chan.write(reply.out.encode())
            self.chan.write_stderr(reply.err.encode())
            self.chan.exit(reply.status)
            return
        if target is None:
            target = await self._start_menu()
            if target is None:
                return
        await self._open(target)

    async def _read_code(self) -> str | None:
        """One line from the client's stdin (a fresh TOTP code), asked for on stderr; None
        when none comes before EOF or the login grace time. Never logged or recorded."""
        self.chan.write_stderr(b"Verification code: ")
        grace = self.core.config.ssh.login_grace.total_seconds()
        try:
            async with asyncio.timeout(grace):
                while b"\n" not in self.early and not self.early_eof:
                    self._input.clear()
                    await self._input.wait()
        except TimeoutError:
            return None
        line = bytes(self.early).split(b"\n", 1)[0]
        self.early.clear()
        self.chan.write_stderr(b"\r\n")
        return line.decode("utf-8", "replace").strip() or None

    async def _start_menu(self) -> str | None:
        reachable = await self.core.reachable(self.user)
        if not reachable:
            self.refuse(f"{self.user} has no access to any target now; ask an admin for a grant")
            return None
        if self.term is None or self.kind != "shell":
            self.refuse(f"name a target: ssh {self.user}+TARGET@bastion (you may reach:"
                        f" {', '.join(reachable)})")  # fmt: skip
            return None
        self.menu = menu.Menu(reachable)
        self.chan.write(menu.render(self.user, reachable))
        return None

    async def _open(self, target: str) -> None:
        try:
            decision = await self.core.decide(self.admission, target, "ssh")
            if not decision.allowed:
                self.refuse(decision.reason)
                return
            if await self._refused_tunnel(target):
                return
            target_row = await self.core.target(target)
            self.tap = SessionTap(self.core, self.session_id, self.kind, self.admission, target,
                                  pty=self.term is not None, command=self.command)  # fmt: skip
            width, height = (self.term[1], self.term[2]) if self.term else (80, 24)
            await self.tap.open(
                grant_id=decision.grant.id if decision.grant else None,
                width=width, height=height,
                env={str(k): str(v) for k, v in self._env().items()}, command=self.command,
            )  # fmt: skip

            self.target_name = target
            self.opened_at = self.last_input = self.core.clock.now()
            if (refusal := self.core.going_live(self.admission, target)) is not None:
                await self._fail_start(refusal)  # draining since its decision: not started
                return
            self.server.live[self.session_id] = self
            upstream = await self.server.upstream_for(target_row)
            if self._ending is None:  # not ended (killed) while the target was reached
                await self._connect_channel(upstream)
        except BastionError as exc:
            await self._fail_start(exc.message)
        except asyncssh.Error as exc:  # the target refused the channel, or it was ended
            await self._fail_start(f"{self.target_name or target} refused the session:"
                                   f" {exc.reason}")  # fmt: skip

    async def _refused_tunnel(self, target: str) -> bool:
        """Refuse (and audit) an exec that opens a raw tunnel where the target refuses them."""
        if self.kind != "exec" or self.command is None:
            return False
        why = streams.raw_tunnel(self.command)
        refusal = tunnel_refusal(self.core.config.target_policy(target), why)
        if refusal is None:
            return False
        await self.core.audit(self.admission.denied_event(
            target, refusal, severity="warning", extra={"command": self.command}))  # fmt: skip
        self.refuse(refusal)
        return True

    async def _fail_start(self, message: str) -> None:
        if self._ending is not None:  # ended while starting (a kill): finish() closes it
            return
        self.refuse(message)
        if self.tap is not None and self.tap.opened:
            await self.tap.close("refused", message)

    async def _connect_channel(self, upstream: asyncssh.SSHClientConnection) -> None:
        term_type, width, height = self.term if self.term else (None, 0, 0)
        chan, _ = await upstream.create_session(
            lambda: UpstreamSession(self), command=self.command,
            subsystem="sftp" if self.kind == "sftp" else None, env=self._env(),
            term_type=term_type, term_size=(width, height) if term_type else None,
            encoding=None,
        )  # fmt: skip
        if self._ending is not None:  # ended while the channel opened: nothing is relayed
            chan.close()
            return
        self.up = chan
        self.target_valve.attach(chan)
        if self.early:
            self._to_target(bytes(self.early))
            self.early.clear()
        self.client_valve.release("early")
        if self.early_eof:
            self.up.write_eof()
        self._ticker = spawn(self._tick(), name="ssh-tick")
        log.info("ssh.session_started", session_id=self.session_id, user=self.user,
                 target=self.tap.target if self.tap else None, kind=self.kind)  # fmt: skip

    def _env(self) -> dict[bytes | str, bytes | str]:
        if self.chan is None:
            return {}
        env = self.chan.get_environment()
        return {str(k): str(v) for k, v in env.items() if ENV_ALLOWED.match(str(k))}

    def _client_addr(self) -> str:
        return self.server.source

    def refuse(self, message: str) -> None:
        """One line to the engineer, exit status 1, channel closed."""
        log.info("ssh.refused", user=self.user, why=message)
        if self.chan is not None and not self.chan.is_closing():
            self.chan.write_stderr(f"bastion: {message}\r\n".encode())
            self.chan.exit(1)

    # -- relaying -----------------------------------------------------------------------

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.last_input = self.core.clock.now()
        if self.menu is not None and self.up is None:
            self._menu_keys(data)
        elif self.up is None:
            if len(self.early) + len(data) > MAX_EARLY_INPUT:
                self.client_valve.hold("early")
            self.early += data
            self._input.set()
        else:
            self._to_target(data)

    def _menu_keys(self, data: bytes) -> None:
        assert self.menu is not None
        self.chan.write(self.menu.feed(data))
        if self.menu.done:
            choice, self.menu = self.menu.choice, None
            if choice is None:
                self.refuse("no target chosen")
            else:
                spawn(self._open(choice), name="ssh-open")

    def _to_target(self, data: bytes) -> None:
        """Record, then relay: bytes that cannot be recorded are not relayed."""
        if self.tap is not None:
            try:
                self.tap.client_data(data)
            except BastionError as exc:
                self.end(exc.message, getattr(exc, "state", "recording_failed"))
                return
            self._hold_if_recording_behind()
        self.up.write(data)

    def from_target(self, data: bytes, datatype: int | None) -> None:
        """Called by UpstreamSession with the target's output. Packets read in one turn of
        the loop go on together, at its end: a program writing in small blocks (tar's 10 KiB)
        then costs one recorded frame and one SSH packet to the engineer, not several."""
        if not self._outgoing:
            self._loop.call_soon(self.send_outgoing)
        earlier = self._outgoing.add(data, datatype)
        if earlier is not None:
            self._relay_output(*earlier)

    def send_outgoing(self) -> None:
        """Record, then relay the target's output held this turn (see from_target)."""
        held = self._outgoing.take()
        if held is not None:
            self._relay_output(*held)

    def _relay_output(self, data: bytes, datatype: int | None) -> None:
        if self._ending is not None:
            return  # ended: what was not recorded is not sent
        if self.tap is not None:
            try:
                self.tap.target_data(data, stderr=datatype == asyncssh.EXTENDED_DATA_STDERR)
            except BastionError as exc:
                self.end(exc.message, "recording_failed")
                return
            self._hold_if_recording_behind()
        self.chan.write(data, datatype)

    def _hold_if_recording_behind(self) -> None:
        """Stop reading both sides while the recording's disk is behind (back-pressure);
        the writer wakes us from its thread once it has caught up."""
        assert self.tap is not None
        if self.tap.congested(self._recording_caught_up):
            self.client_valve.hold("recording")
            self.target_valve.hold("recording")

    def _recording_caught_up(self) -> None:
        """Called from the recording's worker thread."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to resume
            self._loop.call_soon_threadsafe(self._resume_after_recording)

    def _resume_after_recording(self) -> None:
        self.client_valve.release("recording")
        self.target_valve.release("recording")

    def eof_received(self) -> bool:
        if self.up is not None:
            self.up.write_eof()
        else:
            self.early_eof = True
            self._input.set()
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int,
                              pixheight: int) -> None:  # fmt: skip
        if self.tap is not None:
            self.tap.resize(width, height)
        if self.up is not None:
            self.up.change_terminal_size(width, height, pixwidth, pixheight)

    def signal_received(self, signal: str) -> None:
        if self.up is not None:
            self.up.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self.up is not None:
            self.up.send_break(msec)
        return True

    def pause_writing(self) -> None:
        self.target_valve.hold("client")  # the engineer's side is full

    def resume_writing(self) -> None:
        self.target_valve.release("client")

    # -- ending -------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Flush the recording at least once a second; a failed write ends the session."""
        try:
            while True:
                await asyncio.sleep(TICK)
                if self.tap is not None:
                    await self.tap.tick()
        except asyncio.CancelledError:
            pass
        except BastionError as exc:
            self.end(f"recording failed, session ended: {exc.message}", "recording_failed")

    async def terminate(self, state: str, message: str) -> None:
        self.end(message, state)

    def tell(self, message: str) -> None:
        """A line on the session's stderr (its terminal), the session going on."""
        if self.chan is not None and self._ending is None:
            self.chan.write_stderr(f"\r\nbastion: {message}\r\n".encode())

    def end(self, message: str, state: str = "killed") -> None:
        """End the session from the bastion's side (kill, expiry, recording failure)."""
        if self._ending is not None:
            return
        self._ending = (state, message)
        if self.chan is not None:
            self.chan.write_stderr(f"\r\nbastion: {message}\r\n".encode())
        if self.up is not None:
            self.up.close()
        if self.chan is not None:
            self.chan.exit(255)
        self.finishing = spawn(self.finish(state, message), name="ssh-finish")

    def target_closed(self) -> None:
        """The target ended the channel: pass on its exit status or signal."""
        self.send_outgoing()
        if self.exit_signal is not None:
            self.chan.exit_with_signal(*self.exit_signal)
        else:
            self.chan.exit(self.exit_status if self.exit_status is not None else 255)
        spawn(self.finish("closed", "target closed the channel"), name="ssh-finish")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()
        reason = f"client connection lost: {exc}" if exc else "client closed the channel"
        spawn(self.finish("closed", reason), name="ssh-finish")

    async def finish(self, state: str, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        if self._ending is not None:
            state, reason = self._ending
        self.server.live.pop(self.session_id, None)
        if self._ticker is not None:
            self._ticker.cancel()
        if self.tap is not None and self.tap.opened:
            await self.tap.close(state, reason, self.exit_status)
