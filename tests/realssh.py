"""Real OpenSSH parts for tests: a private sshd target, ssh/scp/sftp clients, askpass and tmux."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncssh

SSHD = "/usr/sbin/sshd"
LOOPBACK = "127.0.0.1"
TEST_LOGIN = "bastiontest"
READY_TIMEOUT = 15.0
POLL = 0.02

AnswerFn = Callable[[str], str | None]
"""Given the prompt ssh shows, return the answer, or None to give none (askpass exits 1)."""
Answers = Mapping[str, str | Sequence[str]] | AnswerFn
"""A mapping from a prompt substring (the longest that matches wins; "" matches any prompt) to
an answer, or to a list of answers used one per prompt in turn; or an AnswerFn."""

_BIND_FAILURES = ("Address already in use", "Cannot bind any address")


# --- small process and file helpers ---------------------------------------------------


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _retry_command(argv: Sequence[str], ok: frozenset[int] = frozenset({0})) -> None:
    # useradd/usermod fail (exit 1 or 10) while another process holds /etc/passwd's lock.
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        done = _run(argv)
        if done.returncode in ok:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr}")
        time.sleep(0.1)


def _shadow_hash(login: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == login:
            return rest.partition(":")[0]
    return ""


def ensure_login_user(login: str = TEST_LOGIN) -> pwd.struct_passwd:
    """Create the unprivileged /bin/sh user sshd logins land on; idempotent and worker-safe."""
    with _file_lock(Path(tempfile.gettempdir()) / "bastion-test-user.lock"):
        try:
            entry = pwd.getpwnam(login)
        except KeyError:
            # 9: the name is taken (another worker won the race).
            _retry_command(["useradd", "-m", "-s", "/bin/sh", login], ok=frozenset({0, 9}))
            entry = pwd.getpwnam(login)
        if _shadow_hash(login).startswith("!"):
            # sshd without PAM refuses locked accounts; "*" means no password but not locked.
            _retry_command(["usermod", "-p", "*", login])
        home = Path(entry.pw_dir)
        if not home.is_dir():
            home.mkdir(parents=True)
            os.chown(home, entry.pw_uid, entry.pw_gid)
        return entry


@functools.cache
def openssh_version() -> tuple[int, int]:
    """The (major, minor) version of the installed OpenSSH client, e.g. (9, 2)."""
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", _run(["ssh", "-V"]).stderr)
    if found is None:
        raise RuntimeError("cannot tell the OpenSSH version from `ssh -V`")
    return int(found.group(1)), int(found.group(2))


def make_keypair(path: Path, comment: str = "") -> Path:
    """Write a fresh unencrypted ed25519 key pair to path and path.pub; return path."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    done = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    if done.returncode != 0:
        raise RuntimeError(f"ssh-keygen failed: {done.stderr}")
    return path


def fingerprint(public_key_line: str) -> str:
    """The OpenSSH SHA256 fingerprint ("SHA256:...") of an OpenSSH public key line."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


PORTS_FROM = 10000  # below the kernel's ephemeral range (32768 up by default): see free_port
SLICE = 2500  # ports each xdist worker (and the one process without a worker) hands out
_TURNS = itertools.count(os.getpid())  # two runs side by side start apart in their slices
_TURNS_LOCK = threading.Lock()


def _slice() -> range:
    """This process's own ports: xdist worker gwN has the Nth slice, any other process the
    last; all below the ephemeral range."""
    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    slices = (ephemeral - PORTS_FROM) // SLICE
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) % (slices - 1) if worker[2:].isdigit() else slices - 1
    return range(PORTS_FROM + index * SLICE, PORTS_FROM + (index + 1) * SLICE)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free now, from this process's own slice below the ephemeral range.

    A port the kernel picked for a bind of port 0 could be picked again, for another process's
    bind or outgoing connection, before the server meant to listen there binds it ("address
    already in use"), or be handed out twice in a row to one config. Below the ephemeral range
    the kernel picks none, and each xdist worker has its own slice, taken in turn: a port comes
    round again only after the slice's other ports have.
    """
    ports = _slice()
    with _TURNS_LOCK:
        for _ in range(len(ports)):
            port = ports.start + next(_TURNS) % len(ports)
            if _bindable(host, port):
                return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def read_banner(host: str, port: int, timeout: float = 2.0) -> str | None:
    """The SSH identification line served at host:port, or None if nothing answers with one."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data and len(data) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.partition(b"\n")[0].rstrip(b"\r").decode("ascii", "replace")
    return line if line.startswith("SSH-") else None


def wait_for_banner(
    host: str,
    port: int,
    *,
    timeout: float = READY_TIMEOUT,
    alive: Callable[[], bool] | None = None,
) -> str:
    """Poll host:port until it serves an SSH banner; fail early once `alive()` turns false."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise RuntimeError(f"the server for {host}:{port} died before serving a banner")
        banner = read_banner(host, port)
        if banner is not None:
            return banner
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SSH banner at {host}:{port} within {timeout}s")
        time.sleep(POLL)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid (read from /proc), parents before children."""
    children = _children_map()
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


def kill_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM the processes, then SIGKILL any still running after `grace` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(not _gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(POLL)
    for pid in pids:
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- sshd ------------------------------------------------------------------------------


class ClosesOnExit:
    """`with` support for helpers that own processes or files: leaving the block closes."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _PortTaken(Exception):
    pass


class Sshd(ClosesOnExit):
    """A private OpenSSH sshd on loopback: own host key, config, authorized key and log.

    Logins land on the unprivileged `login` (created when missing). Its working directory is
    a fresh 0711 directory under base_dir (default: the system temp dir), which the login must be
    able to traverse, since sshd reads the authorized_keys file as the login.
    """

    def __init__(
        self,
        *,
        login: str = TEST_LOGIN,
        extra_config: Sequence[str] = (),
        base_dir: Path | None = None,
    ) -> None:
        self.host = LOOPBACK
        self.port = 0
        self.login = login
        self.extra_config = list(extra_config)
        self.dir = Path(tempfile.mkdtemp(prefix="bastion-sshd-", dir=base_dir))
        self.dir.chmod(0o711)
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        self.client_key_path = self.dir / "client_ed25519"
        self.authorized_keys_path = self.dir / "authorized_keys"
        self.config_path = self.dir / "sshd_config"
        self.log_path = self.dir / "sshd.log"
        self.files_dir = self.dir / "files"
        """An empty directory owned by the login, for this instance's file transfers."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # lifecycle

    def start(self) -> Self:
        """Start sshd (on a free port the first time, on the same port afterwards); wait until
        it serves its banner."""
        if self._proc is not None:
            return self
        if not self._prepared:
            self._prepare()
        for _attempt in range(5):
            port = self.port or free_port(self.host)
            try:
                self._proc = self._spawn_and_wait(port)
            except _PortTaken:
                if self.port:
                    raise RuntimeError(f"port {self.port} was taken while sshd was down") from None
                continue
            self.port = port
            return self
        raise RuntimeError("sshd lost the race for a free port five times")

    def stop(self) -> None:
        """Stop sshd and every session process it started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        sessions = descendants(proc.pid)
        _stop_process(proc)
        kill_pids(sessions)

    def close(self) -> None:
        """Stop sshd and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def regenerate_host_key(self) -> str:
        """Stop, replace the host key, start again on the same port; return the new public key."""
        self.stop()
        make_keypair(self.host_key_path)
        self.start()
        return self.host_key_pub

    def __enter__(self) -> Self:
        return self.start()

    # facts

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("sshd is not running")
        return self._proc.pid

    @property
    def host_key_pub(self) -> str:
        """The host's public key as an OpenSSH line: "ssh-ed25519 AAAA..."."""
        return _key_line(self.host_key_path)

    @property
    def host_key_fingerprint(self) -> str:
        return fingerprint(self.host_key_pub)

    @property
    def client_key_pub(self) -> str:
        return _key_line(self.client_key_path)

    @property
    def known_hosts_line(self) -> str:
        """A known_hosts line for this server: "[127.0.0.1]:PORT ssh-ed25519 AAAA..."."""
        return f"[{self.host}]:{self.port} {self.host_key_pub}"

    def write_known_hosts(self, path: Path) -> Path:
        path.write_text(self.known_hosts_line + "\n")
        return path

    def authorize(self, public_key_line: str) -> None:
        """Let one more public key log in as the login."""
        with self.authorized_keys_path.open("a") as handle:
            handle.write(public_key_line.strip() + "\n")

    def log_text(self) -> str:
        """Everything sshd and its session processes logged (all starts, appended)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 10.0) -> str:
        """Poll the log until pattern (a substring or regex) appears; return the whole log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            found = pattern in text if isinstance(pattern, str) else pattern.search(text)
            if found:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not in the sshd log after {timeout}s:\n{text}")
            time.sleep(POLL)

    async def asyncssh_connect(self, **overrides: Any) -> asyncssh.SSHClientConnection:
        """An asyncssh connection as the login with the client key, pinned to the host key."""
        options: dict[str, Any] = {
            "username": self.login,
            "client_keys": [str(self.client_key_path)],
            "known_hosts": asyncssh.import_known_hosts(self.known_hosts_line),
            "config": None,
            "agent_path": None,
        }
        options.update(overrides)
        return await asyncssh.connect(self.host, self.port, **options)

    # internals

    def _prepare(self) -> None:
        user = ensure_login_user(self.login)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        make_keypair(self.host_key_path)
        make_keypair(self.client_key_path, comment="bastion-test-client")
        self.authorized_keys_path.write_text("")
        self.authorize(self.client_key_pub)
        self.authorized_keys_path.chmod(0o644)
        self.files_dir.mkdir()
        os.chown(self.files_dir, user.pw_uid, user.pw_gid)
        self._prepared = True

    def _config(self, port: int) -> str:
        lines = [
            f"ListenAddress {self.host}:{port}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.dir / 'sshd.pid'}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            "StrictModes no",
            f"AllowUsers {self.login}",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "MaxStartups 1000",
            "MaxSessions 1000",
            "LoginGraceTime 30",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "AcceptEnv LANG LC_*",
            "X11Forwarding no",
        ]
        if openssh_version() >= (9, 8):
            lines.append("PerSourcePenalties no")  # failures in tests must not lock loopback out
        return "\n".join([*lines, *self.extra_config, ""])

    def _spawn_and_wait(self, port: int) -> subprocess.Popen[bytes]:
        self.config_path.write_text(self._config(port))
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        try:
            wait_for_banner(self.host, port, alive=lambda: proc.poll() is None)
            if proc.poll() is not None:  # someone else answered on the port
                raise RuntimeError("sshd died")
        except (RuntimeError, TimeoutError):
            _stop_process(proc)
            with self.log_path.open(errors="replace") as handle:
                handle.seek(log_start)
                log = handle.read()
            if any(failure in log for failure in _BIND_FAILURES):
                raise _PortTaken from None
            raise RuntimeError(f"sshd did not start (exit {proc.returncode}):\n{log}") from None
        return proc


def _key_line(private_key_path: Path) -> str:
    kind, blob, *_ = private_key_path.with_name(private_key_path.name + ".pub").read_text().split()
    return f"{kind} {blob}"


# --- askpass ---------------------------------------------------------------------------

_ASKPASS_PY = """\
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({socket_path!r})
prompt = sys.argv[1] if len(sys.argv) > 1 else ""
s.sendall(json.dumps({{"prompt": prompt}}).encode())
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(65536):
    data += chunk
answer = json.loads(data)["answer"]
if answer is None:
    sys.exit(1)
sys.stdout.write(answer + "\\n")
"""


class Askpass(ClosesOnExit):
    """An SSH_ASKPASS program answering ssh's prompts from a mapping or a function.

    The program (`script`) asks this object over a Unix socket, so an AnswerFn runs in the test
    process at the moment ssh asks (in a helper thread). Every prompt is recorded in `prompts`;
    an exception raised by an AnswerFn is kept in `errors` and the prompt goes unanswered.
    """

    def __init__(self, answers: Answers | None = None) -> None:
        self.answers: Answers = answers if answers is not None else {}
        self.prompts: list[str] = []
        self.errors: list[BaseException] = []
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()
        # A short private directory: Unix socket paths are limited to 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="askpass-"))
        self.socket_path = self.dir / "sock"
        self.script = self.dir / "askpass"
        program = self.dir / "askpass.py"
        program.write_text(_ASKPASS_PY.format(socket_path=str(self.socket_path)))
        self.script.write_text(
            f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {shlex.quote(str(program))}"
            ' "$@"\n'
        )
        self.script.chmod(0o755)
        self._closing = False
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.socket_path))
        self._server.listen(16)
        self._thread = threading.Thread(target=self._serve, name="askpass", daemon=True)
        self._thread.start()

    def env(self) -> dict[str, str]:
        """The environment variables that make ssh ask this program instead of a terminal."""
        return {
            "SSH_ASKPASS": str(self.script),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": "bastion-askpass:0",
        }

    def answer(self, prompt: str) -> str | None:
        """Record the prompt and return its answer (what the program prints), or None."""
        with self._lock:
            self.prompts.append(prompt)
            if callable(self.answers):
                return self.answers(prompt)
            keys = [key for key in self.answers if key in prompt]
            if not keys:
                return None
            key = max(keys, key=len)
            value = self.answers[key]
            if isinstance(value, str):
                return value
            used = self._used.get(key, 0)
            self._used[key] = used + 1
            return value[used] if used < len(value) else None

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as wake:
            wake.connect(str(self.socket_path))
        self._thread.join(5)
        self._server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                if self._closing:
                    return
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                data += chunk
        try:
            prompt = str(json.loads(data)["prompt"])
            reply = self.answer(prompt)
        except Exception as error:  # surfaced to the test through `errors`
            self.errors.append(error)
            reply = None
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"answer": reply}).encode())


# --- OpenSSH clients -------------------------------------------------------------------


class SshResult(subprocess.CompletedProcess[bytes]):
    """A finished ssh/scp/sftp run, with the prompts its askpass was asked."""

    prompts: list[str]

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")


def _client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SSH_AUTH_SOCK", "SSH_AGENT_PID"}}
    env.update(extra or {})
    return env


def _result(argv: Sequence[str], code: int, out: bytes, err: bytes, askpass: Askpass) -> SshResult:
    result = SshResult(list(argv), code, out, err)
    result.prompts = list(askpass.prompts)
    if askpass.errors:
        raise RuntimeError(f"an askpass answer function failed: {askpass.errors[0]!r}")
    return result


def _run_client(
    argv: Sequence[str], answers: Answers | None, input: bytes | None, timeout: float
) -> SshResult:
    with Askpass(answers) as askpass:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_client_env(askpass.env()),
            start_new_session=True,  # no controlling terminal: ssh can't prompt on the tty
        )
        try:
            out, err = proc.communicate(input, timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(list(argv), timeout, out, err) from None
        return _result(argv, proc.returncode, out, err, askpass)


async def _run_client_async(
    argv: Sequence[str], answers: Answers | None, input: bytes | None, timeout: float
) -> SshResult:
    with Askpass(answers) as askpass:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_client_env(askpass.env()),
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = await proc.communicate()
            raise subprocess.TimeoutExpired(list(argv), timeout, out, err) from None
        assert proc.returncode is not None
        return _result(argv, proc.returncode, out, err, askpass)


class OpenSSHClient:
    """Runs the real ssh, scp and sftp against one host:port as one login, non-interactively.

    Every run ignores user and system config (-F /dev/null) and the agent, offers only
    `identity` (or no key at all), checks host keys against `known_hosts` with
    StrictHostKeyChecking=`strict_host_key_checking`, and answers prompts through an Askpass
    (SSH_ASKPASS_REQUIRE=force) built from the run's `answers`. `flags` given to a run come
    before the built-in options, so an `-o Name=value` there wins (ssh keeps the first value).
    """

    def __init__(
        self,
        host: str,
        port: int,
        login: str,
        *,
        workdir: Path,
        identity: Path | None = None,
        known_hosts: Path | None = None,
        strict_host_key_checking: str = "yes",
        options: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.login = login
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        self.known_hosts = known_hosts or workdir / "known_hosts"
        self.known_hosts.touch()
        self.strict_host_key_checking = strict_host_key_checking
        self.options = list(options)
        self._batches = itertools.count()

    @classmethod
    def for_sshd(cls, sshd: Sshd, workdir: Path, **kwargs: Any) -> OpenSSHClient:
        """A client straight to sshd as its login, with its client key and pinned host key."""
        workdir.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("identity", sshd.client_key_path)
        kwargs.setdefault("known_hosts", sshd.write_known_hosts(workdir / "known_hosts"))
        return cls(sshd.host, sshd.port, sshd.login, workdir=workdir, **kwargs)

    def common_options(self, login: str | None = None) -> list[str]:
        """The options every ssh/scp/sftp run gets (after the run's own flags)."""
        opts = [
            "-F", "/dev/null",
            "-o", f"User={login if login is not None else self.login}",
            "-o", f"Port={self.port}",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"StrictHostKeyChecking={self.strict_host_key_checking}",
            "-o", "UpdateHostKeys=no",
            "-o", "CheckHostIP=no",
            "-o", "HashKnownHosts=no",
            "-o", "IdentityAgent=none",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=no",
            "-o", "ControlMaster=no",
            "-o", "ControlPath=none",
            "-o", "ConnectTimeout=15",
        ]  # fmt: skip
        if self.identity is not None:
            opts += ["-o", f"IdentityFile={self.identity}"]
        else:
            opts += ["-o", "PubkeyAuthentication=no"]
        for option in self.options:
            opts += ["-o", option]
        return opts

    def remote(self, path: str) -> str:
        """An scp operand for a path on the remote side: "HOST:PATH" (the login goes in -o User)."""
        return f"{self.host}:{path}"

    # argv builders

    def ssh_argv(
        self, command: str | None = None, *, flags: Sequence[str] = (), login: str | None = None
    ) -> list[str]:
        argv = ["ssh", *flags, *self.common_options(login), self.host]
        return [*argv, command] if command is not None else argv

    def scp_argv(
        self, *operands: str, flags: Sequence[str] = (), login: str | None = None
    ) -> list[str]:
        return ["scp", *flags, *self.common_options(login), *operands]

    def sftp_argv(
        self, batch: str | Sequence[str], *, flags: Sequence[str] = (), login: str | None = None
    ) -> list[str]:
        """sftp -b BATCHFILE; the BatchMode=no before -b keeps keyboard-interactive working."""
        text = batch if isinstance(batch, str) else "\n".join(batch)
        batch_file = self.workdir / f"sftp-batch-{next(self._batches)}"
        batch_file.write_text(text.rstrip("\n") + "\n")
        return ["sftp", *flags, *self.common_options(login), "-b", str(batch_file), self.host]

    # runs

    def run_ssh(
        self,
        command: str | None = None,
        *,
        flags: Sequence[str] = (),
        answers: Answers | None = None,
        input: bytes | None = None,
        timeout: float = 60.0,
        login: str | None = None,
    ) -> SshResult:
        """Run ssh (stdin from `input`, else /dev/null); raise TimeoutExpired after `timeout`."""
        return _run_client(
            self.ssh_argv(command, flags=flags, login=login), answers, input, timeout
        )

    def run_scp(
        self,
        *operands: str,
        flags: Sequence[str] = (),
        answers: Answers | None = None,
        timeout: float = 120.0,
        login: str | None = None,
    ) -> SshResult:
        """Run scp; write remote operands with `remote(path)`."""
        return _run_client(
            self.scp_argv(*operands, flags=flags, login=login), answers, None, timeout
        )

    def run_sftp(
        self,
        batch: str | Sequence[str],
        *,
        flags: Sequence[str] = (),
        answers: Answers | None = None,
        timeout: float = 120.0,
        login: str | None = None,
    ) -> SshResult:
        """Run `sftp -b` with the batch commands (one string, or one command per item)."""
        argv = self.sftp_argv(batch, flags=flags, login=login)
        return _run_client(argv, answers, None, timeout)

    async def run_ssh_async(
        self,
        command: str | None = None,
        *,
        flags: Sequence[str] = (),
        answers: Answers | None = None,
        input: bytes | None = None,
        timeout: float = 60.0,
        login: str | None = None,
    ) -> SshResult:
        """run_ssh without blocking the event loop (for servers running in the test's loop)."""
        argv = self.ssh_argv(command, flags=flags, login=login)
        return await _run_client_async(argv, answers, input, timeout)

    async def run_scp_async(
        self,
        *operands: str,
        flags: Sequence[str] = (),
        answers: Answers | None = None,
        timeout: float = 120.0,
        login: str | None = None,
    ) -> SshResult:
        argv = self.scp_argv(*operands, flags=flags, login=login)
        return await _run_client_async(argv, answers, None, timeout)

    async def run_sftp_async(
        self,
        batch: str | Sequence[str],
        *,
        flags: Sequence[str] = (),
        answers: Answers | None = None,
        timeout: float = 120.0,
        login: str | None = None,
    ) -> SshResult:
        argv = self.sftp_argv(batch, flags=flags, login=login)
        return await _run_client_async(argv, answers, None, timeout)

    def tmux(
        self,
        command: str | None = None,
        *,
        flags: Sequence[str] = (),
        answers: Answers | None = None,
        login: str | None = None,
        width: int = 120,
        height: int = 40,
    ) -> TmuxSession:
        """ssh in a tmux pane (a real terminal). With answers, prompts go to an Askpass;
        without, they appear in the pane for the test to type into."""
        askpass = Askpass(answers) if answers is not None else None
        env = _client_env(askpass.env() if askpass is not None else None)
        argv = self.ssh_argv(command, flags=flags, login=login)
        return TmuxSession(argv, env=env, width=width, height=height, askpass=askpass)


# --- tmux ------------------------------------------------------------------------------

_TMUX_CONF = """\
set -g remain-on-exit on
set -g default-shell /bin/sh
set -g status off
set -g history-limit 50000
"""


class TmuxSession(ClosesOnExit):
    """A command running in a detached pane of a private tmux server (own socket, no config).

    The pane stays after the command exits (remain-on-exit), so its last screen can still be
    read; the exit status is written to a file by the pane's shell (tmux 3.3 sometimes leaves the
    exited command unreaped, with no #{pane_dead_status}). Waits poll with deadlines.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        width: int = 120,
        height: int = 40,
        askpass: Askpass | None = None,
    ) -> None:
        self.argv = list(argv)
        self.askpass = askpass
        self.dir = Path(tempfile.mkdtemp(prefix="tmux-"))
        self.socket_path = self.dir / "sock"
        self._status_path = self.dir / "status"
        conf = self.dir / "tmux.conf"
        conf.write_text(_TMUX_CONF)
        self.target = "t:0.0"
        self._env = dict(env) if env is not None else _client_env()
        self._closed = False
        try:
            self._tmux(
                "-f", str(conf), "new-session", "-d", "-s", "t", "-x", str(width), "-y",
                str(height), self._shell_command(),
            )  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket_path), *args],
            capture_output=True,
            text=True,
            env=self._env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tmux {shlex.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def send_keys(self, *keys: str) -> None:
        """tmux send-keys with key names, e.g. send_keys("C-c") or send_keys("Enter")."""
        self._tmux("send-keys", "-t", self.target, *keys)

    def type_text(self, text: str, *, enter: bool = False) -> None:
        """Type text literally, optionally followed by Enter."""
        if text:
            self._tmux("send-keys", "-t", self.target, "-l", text)
        if enter:
            self.send_keys("Enter")

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def capture(self, *, history: bool = True) -> str:
        """The pane's text (with scrollback when history), wrapped lines joined."""
        args = ["capture-pane", "-p", "-J", "-t", self.target]
        return self._tmux(*([*args, "-S", "-"] if history else args))

    def _shell_command(self) -> str:
        status, partial = shlex.quote(str(self._status_path)), shlex.quote(f"{self._status_path}~")
        return f"{shlex.join(self.argv)}; echo $? > {partial}; mv {partial} {status}"

    def exit_status(self) -> int | None:
        """The command's exit status once it has exited (128+N for signal N), else None."""
        try:
            return int(self._status_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _found(self, pattern: str | re.Pattern[str]) -> tuple[bool, str]:
        screen = self.capture()
        found = pattern in screen if isinstance(pattern, str) else pattern.search(screen)
        return bool(found), screen

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 15.0) -> str:
        """Poll until pattern (substring or regex) is on the pane; return the pane text."""
        deadline = time.monotonic() + timeout
        while True:
            found, screen = self._found(pattern)
            if found:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the pane after {timeout}s:\n{screen}")
            time.sleep(POLL)

    async def wait_for_async(self, pattern: str | re.Pattern[str], timeout: float = 15.0) -> str:
        """wait_for without blocking the event loop between polls."""
        deadline = time.monotonic() + timeout
        while True:
            found, screen = self._found(pattern)
            if found:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the pane after {timeout}s:\n{screen}")
            await asyncio.sleep(POLL)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Poll until the command exits; return its exit status."""
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(self._still_running(timeout))
            time.sleep(POLL)
        return status

    async def wait_exit_async(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(self._still_running(timeout))
            await asyncio.sleep(POLL)
        return status

    def _still_running(self, timeout: float) -> str:
        return f"still running after {timeout}s:\n{self.capture()}"

    def close(self) -> None:
        """Kill the tmux server (and with it the command) and remove its files."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):
            pid = int(self._tmux("display-message", "-p", "#{pid}").strip() or 0)
            pane_pids = descendants(pid) if pid else []
            self._tmux("kill-server")
            kill_pids(pane_pids, grace=1.0)
        if self.askpass is not None:
            self.askpass.close()
        shutil.rmtree(self.dir, ignore_errors=True)
