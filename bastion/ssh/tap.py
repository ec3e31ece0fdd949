"""What the SSH door keeps of one channel: the recording, the commands and the file operations."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from bastion.access.admission import Admission
from bastion.access.tunnels import tunnel_refusal
from bastion.audit import CommandLine, FileOp, Leftovers, RecordingInfo
from bastion.core import Core
from bastion.errors import BastionError
from bastion.recording import RecordingWriter
from bastion.ssh import streams
from bastion.ssh.cmdline import CommandDetector
from bastion.ssh.sftp import SftpObserver, SftpOp, SftpProtocolError

log = structlog.get_logger("bastion.ssh")

RECORDED_KINDS = ("shell", "exec")
T = TypeVar("T")
PROGRESS_BYTES = 4 << 20  # a local recording's progress goes to the store every 4 MiB flushed,
PROGRESS_EVERY = 30.0  # or every 30 s with anything new flushed
# Recordings are flushed (an fsync) and sealed in threads of their own: not the store's, and
# not asyncio's default pool, which anything else may fill (a download, a slow sink).
_RECORDING_IO = ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4), "bastion-recording-io")


async def _in_recording_thread(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_RECORDING_IO, fn)


class TapError(BastionError):
    """What happened in the channel can no longer be recorded; the door ends it."""

    state = "recording_failed"


class TunnelRefused(TapError):
    """A line sent to a shell on the target opens a raw tunnel the target refuses."""

    state = "refused"


class SessionTap:
    """Records a channel's bytes; writes commands and file operations in small batches."""

    def __init__(
        self, core: Core, session_id: str, kind: str, admission: Admission, target: str, *,
        pty: bool, command: str | None = None,
    ) -> None:  # fmt: skip
        self.core = core
        self.session_id = session_id
        self.kind = kind
        self.admission = admission
        self.user = admission.user
        self.target = target
        self.opened = False
        self.writer: RecordingWriter | None = None
        # With a terminal (a shell, or `ssh -t host sudo -i`), lines are read from keys and echo.
        self.detector = CommandDetector() if kind in RECORDED_KINDS and pty else None
        self.sftp = SftpObserver() if kind == "sftp" else None
        # Without a terminal, a shell (or `bash -s`) takes its commands from stdin: log them.
        scripted = kind in RECORDED_KINDS and not pty
        scripted = scripted and streams.reads_commands_from_stdin(command)
        self.stdin_log = streams.StdinCommands() if scripted else None
        self.config = core.config  # the session's, whatever a reload does meanwhile
        refuse = self.config.target_policy(target).raw_tunnels == "refuse"
        self.stdin_guard = streams.TunnelGuard() if scripted and refuse else None
        self.command = command
        self.commands: list[CommandLine] = []
        self.file_ops: list[FileOp] = []
        self.started = time.monotonic()
        self._noted = (0, time.monotonic())  # recording progress the store holds: bytes, when
        self._noting: Future[bool] | None = None  # the progress write on its way, if any

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    async def open(
        self,
        *,
        grant_id: int | None,
        width: int,
        height: int,
        env: dict[str, str],
        command: str | None,
    ) -> None:
        """Open the recording first, then the session row: no recording, no session."""
        if self.kind in RECORDED_KINDS:
            self.writer = await self.core.run(
                RecordingWriter.create, self.config.paths.recordings, self.session_id,
                self.core.clock.now(), width, height, f"{self.user} → {self.target}", env,
                self.core.box,
            )  # fmt: skip
            if streams.reads_secret_first(command):
                self.writer.redactor.arm()  # sudo -S: stdin's first line is a password
        await self.core.open_session(
            self.admission, self.session_id, self.target, grant_id,
            recording_path=str(self.writer.path) if self.writer else None, config=self.config,
        )  # fmt: skip
        self.opened = True
        if self.writer is not None and self.core.uploads is not None:
            self.core.uploads.track(self.writer.path)
        self.started = time.monotonic()
        if command is not None:
            self.commands.append(CommandLine(self.core.clock.now(), 0, command))

    def client_data(self, data: bytes) -> None:
        """Check, then record what the client sends; raises TapError to end the session."""
        if self.stdin_guard is not None:
            self._guard(data)
        elapsed = self._elapsed()
        if self.writer is not None:
            data = self.writer.input(data, elapsed)  # a secret at a prompt is masked
            if self.stdin_log is not None:
                self._take_stdin(self.stdin_log.feed(data))
        if self.detector is not None:  # logs what the recording kept: secrets stay masked
            self._take_commands(self.detector.feed_input(data, elapsed))
        if self.sftp is not None:
            self._take_ops(self._observe(self.sftp.feed_client, data))

    def _guard(self, data: bytes) -> None:
        """A line for the shell that opens a raw tunnel ends the session before it is sent."""
        assert self.stdin_guard is not None
        why = self.stdin_guard.feed(data)
        refusal = tunnel_refusal(self.config.target_policy(self.target), why)
        if refusal:
            raise TunnelRefused(refusal)

    def _take_stdin(self, lines: list[streams.StdinLine]) -> None:
        now = self.core.clock.now()
        for line in lines:
            self.commands.append(CommandLine(now, 0, line.text, True, line.note))

    def target_data(self, data: bytes, stderr: bool = False) -> None:
        elapsed = self._elapsed()
        if self.writer is not None:
            self.writer.output(data, elapsed, stderr=stderr)
        if self.detector is not None:
            self._take_commands(self.detector.feed_output(data, elapsed))
        if self.sftp is not None:
            self._take_ops(self._observe(self.sftp.feed_server, data))

    @staticmethod
    def _observe(feed: Callable[[bytes], list[SftpOp]], data: bytes) -> list[SftpOp]:
        """SFTP that cannot be followed cannot be logged: the session must end."""
        try:
            return feed(data)
        except SftpProtocolError as exc:
            raise TapError(f"unreadable SFTP traffic, session ended: {exc}") from exc

    def congested(self, resume: Callable[[], None]) -> bool:
        """True while the recording's disk is behind; resume() is called (from a worker
        thread) once it has caught up."""
        return self.writer is not None and self.writer.congested(resume)

    def resize(self, width: int, height: int) -> None:
        if self.writer is not None:
            self.writer.resize(width, height, self._elapsed())

    def _take_commands(self, found: list[Any]) -> None:
        for line in found:
            uncertain = (line.reason or "uncertain") if line.uncertain else None
            self.commands.append(CommandLine(self.core.clock.now(), 0, line.text, True, uncertain))

    def _take_ops(self, ops: list[SftpOp]) -> None:
        now = self.core.clock.now()
        for op in ops:
            size = op.bytes_read + op.bytes_written
            self.file_ops.append(FileOp(now, op.op, op.path or "", op.path2, size or None,
                                        op.sha256, op.status))  # fmt: skip

    async def tick(self) -> None:
        """Flush what is due; raises RecordingError if the recording cannot be written."""
        if self.writer is not None and self.writer.due(time.monotonic()):
            await _in_recording_thread(self._flush)  # an fsync: not the store's thread
        await self._store_batches()

    def _flush(self) -> None:
        """In a recording thread: flush, then (local recordings: an uploader tells the store
        its own progress) every PROGRESS_BYTES or PROGRESS_EVERY tell the store how far the
        recording is durable, so nobody can cut it while this node is down unseen. A failed
        write loses nothing: logged, tried again at the next flush."""
        assert self.writer is not None
        before = self.writer.durable[0]
        with self.core.metrics.recording_flush():
            self.writer.flush()
        size, sha256 = self.writer.durable
        self.core.metrics.recording_bytes.inc(size - before)
        now, (noted, at) = time.monotonic(), self._noted
        due = size - noted >= PROGRESS_BYTES or (size > noted and now - at >= PROGRESS_EVERY)
        if not due or self.core.uploads is not None:
            return
        if self._noting is not None and not self._noting.done():
            return  # the last one is still on its way: one at a time, the next flush tries
        self._noting = self.core.submit_progress(self.session_id, size, sha256)
        self._noting.add_done_callback(lambda done: self._progress_done(done, size, now))

    def _progress_done(self, done: Future[bool], size: int, at: float) -> None:
        """On the store's thread: a failed write is logged, and tried again at a next flush."""
        exc = done.exception()
        if exc is None:
            self._noted = (size, at)
            return
        said = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("recording.progress_failed", session_id=self.session_id, error=said)

    async def _store_batches(self) -> None:
        commands, self.commands = self.commands, []
        ops, self.file_ops = self.file_ops, []
        if commands or ops:
            await self.core.log_activity(self.session_id, commands, ops)

    async def close(self, state: str, reason: str, exit_status: int | None = None) -> None:
        """Seal the recording, store what is left, close the session row with its hash;
        once: a session ends with one state and one reason."""
        if not self.opened:
            return
        self.opened = False
        info = None
        if self.stdin_log is not None:
            self._take_stdin(self.stdin_log.flush())
        if self.writer is not None:
            try:
                flushed = self.writer.durable[0]
                summary = await _in_recording_thread(self.writer.close)
                info = RecordingInfo(str(summary.path), summary.sha256, summary.size)
                self.core.metrics.recording_bytes.inc(max(0, summary.size - flushed))
                now = self.core.clock.now()
                self.file_ops += [FileOp(now, "stream", name, None, stat.size, stat.sha256)
                                  for name, stat in summary.streams.items()]  # fmt: skip
            except Exception as exc:
                self.core.metrics.flush_failures.inc()
                log.error("recording.close_failed", session_id=self.session_id, error=str(exc))
                state, reason = "recording_failed", f"{reason}; recording: {exc}"
        if self.detector is not None:
            self._take_commands(self.detector.flush())
        last = Leftovers(self.commands, self.file_ops) if self.commands or self.file_ops else None
        self.commands, self.file_ops = [], []  # stored with the close, in its one write
        if exit_status is not None:
            reason = f"{reason} (exit status {exit_status})"
        await self.core.close_session(self.session_id, state, reason, info, last=last)
        if self.writer is not None and self.core.uploads is not None:
            # the final chunk (or what is there) written and its hash stored: the spool copy
            # may go once uploaded (a failure above leaves it to the next start's recovery)
            self.core.uploads.finish(self.writer.path)
