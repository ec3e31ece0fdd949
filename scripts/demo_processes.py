"""The demo's long-running processes: started in their own sessions, stopped together with all
they spawned, and told by the kernel to stop if the demo itself is killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POLL = 0.05
STOP_GRACE = 10.0
PR_SET_PDEATHSIG = 1


class DemoError(Exception):
    """A step of the demo failed; the message is one line for the person running it."""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def process_tag(pid: int) -> str | None:
    """ "PID STARTTIME" of a live process (a pid alone may be reused later), else None."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in {"Z", "X"}:
        return None
    return f"{pid} {fields[19]}"


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid, read from /proc, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn: the kernel sends `sig` to the child when the demo dies, even by SIGKILL.
    (subprocess runs it after switching user, which would otherwise clear the setting.)"""
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the demo died before the line above
            os.kill(os.getpid(), sig)

    return preexec


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    stop_signal: signal.Signals
    log: Path


@dataclass
class Children:
    """The processes the demo started, in order; stop() ends them last-started first."""

    logs: Path
    started: list[_Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: pwd.struct_passwd | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start argv in a session of its own (a Ctrl-C reaches the demo only, which then stops
        everything in order), its output appended to logs/NAME.log."""
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(stop_signal),  # noqa: PLW1509 - single-threaded
                env=None if env is None else dict(env),
                cwd=cwd,
                user=None if user is None else user.pw_uid,
                group=None if user is None else user.pw_gid,
                extra_groups=None if user is None else [],
            )
        self.started.append(_Child(name, proc, stop_signal, log))
        return proc

    def check_running(self) -> None:
        """DemoError naming the first process that stopped on its own, and its log."""
        for child in self.started:
            if child.proc.poll() is not None:
                raise DemoError(
                    f"{child.name} stopped (exit {child.proc.returncode}); see {child.log}"
                    + _last_line(child.log)
                )

    def stop(self) -> None:
        """Stop every process, last started first: its stop signal, then SIGKILL after a
        grace period, for it and for everything it spawned (sshd's sessions, say)."""
        while self.started:
            child = self.started.pop()
            family = [t for p in [child.proc.pid, *descendants(child.proc.pid)]
                      if (t := process_tag(p)) is not None]  # fmt: skip
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(child.stop_signal)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(STOP_GRACE)
            _end_family(family)
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait()


def _end_family(tags: list[str]) -> None:
    """SIGTERM the processes still alive (same pid and start time), SIGKILL them if needed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [tag for tag in tags if process_tag(int(tag.split()[0])) == tag]
        for tag in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(tag.split()[0]), sig)
        deadline = time.monotonic() + 3.0
        while alive and time.monotonic() < deadline:
            alive = [tag for tag in alive if process_tag(int(tag.split()[0])) == tag]
            time.sleep(POLL)
        if not alive:
            return


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f":\n  {lines[-1]}" if lines else ""


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it on loopback, else a port free a moment ago."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            found: int = sock.getsockname()[1]
            return found
    raise DemoError("no free TCP port on 127.0.0.1")


def wait_until(
    what: str, ready: Callable[[], bool], children: Children, timeout: float = 60.0
) -> None:
    """Poll ready() until true; DemoError if a process dies first or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        children.check_running()
        if time.monotonic() > deadline:
            raise DemoError(f"{what} was not ready within {timeout:.0f} s")
        time.sleep(POLL)


def healthy(port: int, ca: Path) -> bool:
    """Whether https://127.0.0.1:port/healthz answers 200, verified against `ca`: the bastion
    has really started (while it starts, every door not yet listening, it answers 503)."""
    url = f"https://127.0.0.1:{port}/healthz"
    try:
        context = ssl.create_default_context(cafile=str(ca))
        with urllib.request.urlopen(url, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, a 503 (HTTPError), TLS not up yet, no CA file yet
        return False


def serves_banner(port: int) -> bool:
    """Whether 127.0.0.1:port answers with an SSH identification line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False
