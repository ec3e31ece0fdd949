"""SSH door figures vs direct and ProxyJump; run: .venv/bin/python -m bench.ssh [--quick] [--keep]

Options: --bulk-only (the bulk transfers alone), --mb N (file size), --runs N (runs per bulk
case), --tools scp,cat,tar,tar-up (which bulk cases).

Prints, in one run against the same private OpenSSH sshd (figures only, no assertions):
  bulk scp download   MB/s direct, through OpenSSH ProxyJump (a second sshd) and through the
                      bastion, timed from the first byte on disk to scp's exit (login excluded)
  exec cat            `ssh host cat FILE` direct, through ProxyJump and through the bastion
                      (the bastion records it: stdout, stderr and stdin, hashed per stream)
  tar down / tar up   `ssh host tar cf - FILE > out` and `ssh host tar xf - < archive` (stdin
                      recorded), the same three ways, timed from the first byte written
  keystroke rtt       one byte to `cat` on a raw PTY shell and back, p50/p99, direct vs bastion
  connect+exec        full login (bastion: key + TOTP) and `true`, median, direct vs bastion
  idle memory         bastion RSS growth per idle interactive session at 200 (quick: 50)
The bastion runs as its own `python -m bastion serve` process; each login takes a fresh TOTP
code from a pool of enrolled users. MB = 2**20 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from bastion.identity import totp
from bench._common import (
    MIB,
    ServedBastion,
    cpu_seconds,
    median,
    percentile,
    ratio,
    rss_bytes,
    run_loop,
    write_text_file,
)
from tests.harness import Bastion
from tests.realssh import Askpass, Sshd, openssh_version, wait_for_banner

TARGET = "web-1"
LOOPBACK = "127.0.0.1"
LOGIN_CONCURRENCY = 8  # the door allows 10 unauthenticated connections per source
TRANSFER_TIMEOUT = 600.0
POLL = 0.002
IDLE_CPU_SECONDS = 3.0
KEYSTROKE_BLOCKS = 10
KEYSTROKE_WARMUP = 50

Connect = Callable[[], Awaitable[asyncssh.SSHClientConnection]]


@dataclass(frozen=True)
class Sizes:
    file_mb: int
    sessions: int
    keystrokes: int = 1000
    logins: int = 20
    bulk_runs: int = 3


@dataclass
class UserPool:
    """Enrolled users with their keys and seeds; hands out a not-yet-used code per login.

    A code is single use per user and step, and the bastion accepts ±1 step, so each user
    gives up to two logins per 30 s step (the current step's code, then the next one's).
    """

    seeds: dict[str, str]
    key_paths: dict[str, Path]
    last_step: dict[str, int] = field(default_factory=dict)
    _keys: dict[str, asyncssh.SSHKey] = field(default_factory=dict)
    _turn: int = 0

    def take(self) -> tuple[str, Path, str]:
        """(user, private key path, code) for one login."""
        now = totp.step_at(datetime.now(UTC))
        names = list(self.seeds)
        for offset in range(len(names)):
            user = names[(self._turn + offset) % len(names)]
            step = max(now, self.last_step.get(user, now - 1) + 1)
            if step <= now + 1:
                self._turn = (self._turn + offset + 1) % len(names)
                self.last_step[user] = step
                return user, self.key_paths[user], totp.code_for_step(self.seeds[user], step)
        raise RuntimeError("every user's fresh codes are used up this step; enrol more users")

    def key(self, user: str) -> asyncssh.SSHKey:
        if user not in self._keys:
            self._keys[user] = asyncssh.read_private_key(self.key_paths[user])
        return self._keys[user]


@dataclass
class Rig:
    work: Path
    target: Sshd
    jump: Sshd
    bastion: ServedBastion
    bastion_port: int
    bastion_known: Any
    users: UserPool
    client_config: Path
    remote_file: Path
    size: int
    archive: Path  # a tar of remote_file, made on this machine (the target's own tar)


# --- setting up -----------------------------------------------------------------------


def client_config(rig_dir: Path, key: Path, known_hosts: Path) -> Path:
    """An ssh_config for every OpenSSH run; ProxyJump passes -F on to the jump's own ssh."""
    path = rig_dir / "ssh_config"
    path.write_text(
        "Host *\n"
        f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  UpdateHostKeys no\n  CheckHostIP no\n"
        f"  IdentityAgent none\n  IdentitiesOnly yes\n  IdentityFile {key}\n"
        "  ControlMaster no\n  ControlPath none\n  ConnectTimeout 15\n  LogLevel ERROR\n"
    )
    return path


def build_home(work: Path, target: Sshd, users: int) -> tuple[Bastion, UserPool]:
    """A bastion home with `users` engineers granted the target; released, not started."""
    b = Bastion(work / "bastion")
    try:
        b.add_target(TARGET, target)
        for index in range(users):
            b.add_user(f"u{index}")
            b.grant(f"u{index}", TARGET)
    finally:
        b.release()
    return b, UserPool(dict(b.seeds), dict(b.keys))


def log_summary(served: ServedBastion, exit_code: int | None) -> None:
    """One line on the bastion's log and exit, then its first warnings or errors."""
    lines, levels, worst = served.log_problems()
    counts = ", ".join(f"{n} {level}" for level, n in sorted(levels.items()))
    print(f"{'bastion log':<22}{lines} lines ({counts or 'empty'}); exit status {exit_code}")
    for line in worst:
        print(f"  {line}")


@contextlib.contextmanager
def rig(sizes: Sizes, keep: bool) -> Iterator[Rig]:
    """Target and jump sshd, a served bastion with its users, the file; all removed after."""
    work = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    target, jump = Sshd(), Sshd()
    served: ServedBastion | None = None
    try:
        target.start()
        jump.start()
        jump.authorize(target.client_key_pub)
        remote_file = target.files_dir / "bulk.txt"
        write_text_file(remote_file, sizes.file_mb * MIB)
        b, pool = build_home(work, target, sizes.sessions + 40)
        served = ServedBastion(b.home / "bastion.toml", work / "bastion.log").start()
        wait_for_banner(LOOPBACK, b.port, alive=served.alive)
        public = Path(f"{b.config.paths.ssh_host_key}.pub").read_text().split()
        known = work / "known_hosts"
        bastion_line = f"[{LOOPBACK}]:{b.port} {public[0]} {public[1]}"
        known.write_text("\n".join([target.known_hosts_line, jump.known_hosts_line,
                                    bastion_line, ""]))  # fmt: skip
        archive = work / "bulk.tar"
        subprocess.run(["tar", "cf", str(archive), "-C", str(target.files_dir), "bulk.txt"],
                       check=True)  # fmt: skip
        yield Rig(work, target, jump, served, b.port, b.known_hosts(), pool,
                  client_config(work, target.client_key_path, known), remote_file,
                  sizes.file_mb * MIB, archive)  # fmt: skip
    finally:
        if served is not None:
            log_summary(served, served.stop())
        target.close()
        jump.close()
        if keep:
            print(f"(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


# --- OpenSSH runs ---------------------------------------------------------------------


def openssh_argv(
    r: Rig, way: str, tool: str, login: str = "", key: Path | None = None
) -> list[str]:
    """ssh or scp options for one way in: direct, proxyjump or bastion."""
    port_flag = "-P" if tool == "scp" else "-p"
    argv = [tool, "-F", str(r.client_config)]
    if way == "bastion":
        return [*argv, "-o", "BatchMode=no", "-o", f"IdentityFile={key}", "-o", f"User={login}",
                port_flag, str(r.bastion_port)]  # fmt: skip
    argv += ["-o", "BatchMode=yes", "-o", f"User={r.target.login}"]
    if way == "proxyjump":
        argv += ["-J", f"{r.jump.login}@{LOOPBACK}:{r.jump.port}"]
    return [*argv, port_flag, str(r.target.port)]


def client_env(askpass: Askpass) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SSH_AUTH_SOCK", "SSH_AGENT_PID"}}
    return env | askpass.env()


def timed_download(argv: Sequence[str], env: dict[str, str], dest: Path, size: int,
                   *, to_stdout: bool, stdin: Path | None = None,
                   errors: Path | None = None) -> float:  # fmt: skip
    """Run a transfer; seconds from the first byte landing in `dest` to the client's exit."""
    dest.unlink(missing_ok=True)
    errors = errors or dest.with_suffix(".err")
    with (errors.open("wb") as err,
          dest.open("wb") if to_stdout else open(os.devnull, "wb") as out,
          stdin.open("rb") if stdin else open(os.devnull, "rb") as source):  # fmt: skip
        proc = subprocess.Popen(list(argv), stdin=source, stdout=out, stderr=err,
                                env=env, start_new_session=True)  # fmt: skip
        first: float | None = None
        deadline = time.monotonic() + TRANSFER_TIMEOUT
        try:
            while proc.poll() is None:
                if first is None and dest.exists() and dest.stat().st_size > 0:
                    first = time.perf_counter()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{argv[0]} still running after {TRANSFER_TIMEOUT}s")
                time.sleep(POLL)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    end = time.perf_counter()
    got = dest.stat().st_size if dest.exists() else 0
    if proc.returncode != 0 or got != size or first is None:
        raise RuntimeError(f"{' '.join(argv)} -> exit {proc.returncode}, {got} of {size} bytes:"
                           f" {errors.read_text(errors='replace').strip()}")  # fmt: skip
    dest.unlink()
    return end - first


def download(r: Rig, way: str, tool: str) -> float:
    """One transfer of the file by `way`: scp (SFTP), `ssh cat`, tar down or tar up; MB/s."""
    dest = r.work / f"{way}-{tool}.out"
    login, key, code = "", None, ""
    if way == "bastion":
        user, key, code = r.users.take()
        login = f"{user}+{TARGET}"
    argv = openssh_argv(r, way, "scp" if tool == "scp" else "ssh", login, key)
    size, stdin, to_stdout = r.size, None, tool != "scp"
    if tool == "scp":
        argv += [f"{LOOPBACK}:{r.remote_file}", str(dest)]
    elif tool == "cat":
        argv += [LOOPBACK, f"cat {r.remote_file}"]
    elif tool == "tar":
        argv += [LOOPBACK, f"tar cf - -C {r.remote_file.parent} {r.remote_file.name}"]
        size = r.archive.stat().st_size
    else:  # tar up: the archive on stdin, unpacked on the target; dest is the file it writes
        up = r.remote_file.parent / "up"
        dest, stdin, to_stdout = up / r.remote_file.name, r.archive, False
        argv += [LOOPBACK, f"mkdir -p {up} && tar xf - -C {up}"]
    with Askpass({"Verification code": code}) as askpass:
        seconds = timed_download(argv, client_env(askpass), dest, size, to_stdout=to_stdout,
                                 stdin=stdin, errors=r.work / f"{way}-{tool}.err")  # fmt: skip
    return size / MIB / seconds


@dataclass
class Bulk:
    rates: dict[str, float]  # median MB/s per way in
    bastion_cpu: float  # seconds of bastion CPU per bastion run


def bulk(r: Rig, tool: str, ways: Sequence[str], runs: int) -> Bulk:
    """Median MB/s per way (ways interleaved per run), and bastion CPU seconds per run."""
    rates: dict[str, list[float]] = {way: [] for way in ways}
    cpu = 0.0
    for _ in range(runs):
        for way in ways:
            os.sync()  # each run starts with no earlier run's writes still going to the disk
            before = cpu_seconds(r.bastion.pid)
            rates[way].append(download(r, way, tool))
            if way == "bastion":
                cpu += cpu_seconds(r.bastion.pid) - before
    return Bulk({way: median(found) for way, found in rates.items()}, cpu / runs)


# --- asyncssh clients -----------------------------------------------------------------


class TotpClient(asyncssh.SSHClient):
    """Answers the bastion's "Verification code: " prompt once."""

    def __init__(self, code: str) -> None:
        self.code: str | None = code

    def kbdint_auth_requested(self) -> str:
        return ""

    def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if not prompts:
            return []
        code, self.code = self.code, None
        return None if code is None else [code]


class Tty(asyncssh.SSHClientSession[bytes]):
    """A terminal session whose output is collected; waiters poll `buf` on each arrival."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.buf += data
        self.arrived.set()

    async def wait_for(self, needle: bytes, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.buf:
                self.arrived.clear()
                await self.arrived.wait()


async def connect_bastion(r: Rig) -> asyncssh.SSHClientConnection:
    user, _, code = r.users.take()
    conn: asyncssh.SSHClientConnection = await asyncssh.connect(
        LOOPBACK, r.bastion_port, username=f"{user}+{TARGET}", client_keys=[r.users.key(user)],
        known_hosts=r.bastion_known, client_factory=lambda: TotpClient(code), agent_path=None,
        config=None, preferred_auth="publickey,keyboard-interactive",
    )  # fmt: skip
    return conn


WAYS = ("direct", "bastion")


def connectors(r: Rig) -> dict[str, Connect]:
    return {"direct": r.target.asyncssh_connect, "bastion": lambda: connect_bastion(r)}


async def open_tty(conn: asyncssh.SSHClientConnection) -> tuple[Any, Tty]:
    """An interactive shell on a PTY, once its prompt has appeared."""
    chan, session = await conn.create_session(Tty, term_type="xterm", term_size=(80, 24),
                                              encoding=None)  # fmt: skip
    assert isinstance(session, Tty)
    await session.wait_for(b"$ ")
    return chan, session


async def start_echo(conn: asyncssh.SSHClientConnection) -> tuple[Any, Tty]:
    """A PTY shell turned into `stty raw -echo; cat`: each byte typed comes straight back."""
    chan, tty = await open_tty(conn)
    chan.write(b"stty raw -echo; echo RE''ADY; exec cat\n")
    await tty.wait_for(b"READY\n")
    await asyncio.sleep(0.2)
    return chan, tty


async def round_trips(chan: Any, tty: Tty, samples: int) -> list[float]:
    """Milliseconds from writing one byte to reading it back, `samples` times."""
    times: list[float] = []
    for _ in range(samples):
        tty.buf.clear()
        started = time.perf_counter()
        chan.write(b"x")
        await tty.wait_for(b"x", timeout=10)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def keystrokes(r: Rig, samples: int) -> dict[str, list[float]]:
    """Round trips direct and through the bastion, in alternating blocks (fair to noise)."""
    ways = connectors(r)
    async with await ways["direct"]() as direct, await ways["bastion"]() as bastion:
        echoes = {"direct": await start_echo(direct), "bastion": await start_echo(bastion)}
        for chan, tty in echoes.values():
            await round_trips(chan, tty, KEYSTROKE_WARMUP)
        times: dict[str, list[float]] = {way: [] for way in echoes}
        for _ in range(KEYSTROKE_BLOCKS):
            for way, (chan, tty) in echoes.items():
                times[way] += await round_trips(chan, tty, samples // KEYSTROKE_BLOCKS)
        for chan, _ in echoes.values():
            chan.close()
    return times


async def setup_times(connect: Connect, count: int) -> list[float]:
    """Milliseconds for a full login plus `true` (sequential; closing not timed)."""
    times: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        conn = await connect()
        await conn.run("true", check=True)
        times.append((time.perf_counter() - started) * 1000)
        conn.close()
        await conn.wait_closed()
    return times


@dataclass
class Idle:
    rss_before: int
    rss_after: int
    open_seconds: float  # to log in and open every session (LOGIN_CONCURRENCY at a time)
    cpu_share: float  # of one core, used by the bastion while the sessions sit idle


async def idle_session(r: Rig, gate: asyncio.Semaphore) -> asyncssh.SSHClientConnection:
    async with gate:
        conn = await connect_bastion(r)
    try:
        await open_tty(conn)
    except BaseException:
        conn.close()
        raise
    return conn


async def idle_memory(r: Rig, count: int) -> Idle:
    """Bastion RSS before and with `count` idle interactive sessions open; idle CPU."""
    gate = asyncio.Semaphore(LOGIN_CONCURRENCY)
    await asyncio.sleep(1)
    before = rss_bytes(r.bastion.pid)
    started = time.perf_counter()
    opened = await asyncio.gather(*(idle_session(r, gate) for _ in range(count)),
                                  return_exceptions=True)  # fmt: skip
    open_seconds = time.perf_counter() - started
    conns = [c for c in opened if isinstance(c, asyncssh.SSHClientConnection)]
    try:
        failures = [c for c in opened if isinstance(c, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} of {count} sessions failed: {failures[0]!r}")
        await asyncio.sleep(2)  # recordings flush, buffers settle
        cpu, wall = cpu_seconds(r.bastion.pid), time.perf_counter()
        await asyncio.sleep(IDLE_CPU_SECONDS)
        share = (cpu_seconds(r.bastion.pid) - cpu) / (time.perf_counter() - wall)
        return Idle(before, rss_bytes(r.bastion.pid), open_seconds, share)
    finally:
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)


@dataclass
class Interactive:
    setup: dict[str, list[float]]
    rtt: dict[str, list[float]]
    idle: Idle


async def interactive(r: Rig, sizes: Sizes) -> Interactive:
    ways = connectors(r)
    setup = {way: await setup_times(connect, sizes.logins) for way, connect in ways.items()}
    await asyncio.sleep(1)  # let the last logins' sessions finish closing
    rtt = await keystrokes(r, sizes.keystrokes)
    idle = await idle_memory(r, sizes.sessions)
    return Interactive(setup, rtt, idle)


# --- report ---------------------------------------------------------------------------


BULK_CASES = {  # tool: (label, what)
    "scp": ("bulk scp download", "from first byte; SFTP, not recorded"),
    "cat": ("exec cat (recorded)", "ssh host cat FILE, every stream recorded"),
    "tar": ("tar down (recorded)", "ssh host tar cf - FILE > out"),
    "tar-up": ("tar up (recorded)", "ssh host tar xf - < archive, stdin recorded"),
}


def bulk_row(label: str, run: Bulk, runs: int, what: str) -> tuple[str, str]:
    """direct / proxyjump / bastion MB/s and the ratios, for one bulk case."""
    rate = run.rates
    return (label, f"direct {rate['direct']:.0f} MB/s   proxyjump {rate['proxyjump']:.0f} MB/s"
            f"   bastion {rate['bastion']:.0f} MB/s   bastion/proxyjump"
            f" {ratio(rate['bastion'], rate['proxyjump'])}   bastion/direct"
            f" {ratio(rate['bastion'], rate['direct'])}   (median of {runs}; {what};"
            f" bastion CPU {run.bastion_cpu:.2f} s/run)")  # fmt: skip


def report(sizes: Sizes, found: Interactive | None, runs: dict[str, Bulk]) -> None:
    major, minor = openssh_version()
    print(f"ssh bench ({sizes.file_mb} MB file, {os.cpu_count()}-core machine shared by client,"
          f" bastion and sshd; OpenSSH {major}.{minor}, asyncssh {asyncssh.__version__},"
          " client's default ciphers, bastion offers AES only; MB = 2**20 bytes)")  # fmt: skip

    rows = [bulk_row(BULK_CASES[tool][0], run, sizes.bulk_runs, BULK_CASES[tool][1])
            for tool, run in runs.items()]  # fmt: skip
    if found is not None:
        rows += interactive_rows(sizes, found)
    for label, text in rows:
        print(f"{label:<22}{text}")


def interactive_rows(sizes: Sizes, found: Interactive) -> list[tuple[str, str]]:
    rows = []
    d, b = ((percentile(found.rtt[w], 50), percentile(found.rtt[w], 99)) for w in WAYS)
    rows.append(("keystroke rtt p50/p99", f"direct {d[0]:.2f}/{d[1]:.2f} ms   bastion"
                 f" {b[0]:.2f}/{b[1]:.2f} ms   +{b[0] - d[0]:.2f}/+{b[1] - d[1]:.2f} ms"
                 f"   ({sizes.keystrokes} samples each, PTY shell running cat)"))  # fmt: skip
    sd, sb = (median(found.setup[w]) for w in WAYS)
    rows.append(("connect+exec median", f"direct {sd:.1f} ms   bastion {sb:.1f} ms"
                 f"   +{sb - sd:.1f} ms   ({sizes.logins} logins each; bastion: key + TOTP +"
                 " upstream login)"))  # fmt: skip
    idle = found.idle
    per = (idle.rss_after - idle.rss_before) / MIB / sizes.sessions
    rows.append(("idle session memory", f"{per:.3f} MB per session at {sizes.sessions} sessions"
                 f" (bastion RSS {idle.rss_before / MIB:.0f} -> {idle.rss_after / MIB:.0f} MB;"
                 f" opened in {idle.open_seconds:.1f} s, {LOGIN_CONCURRENCY} logins at a time;"
                 f" idle CPU {idle.cpu_share:.0%} of a core)"))  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ssh",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="32 MB file, 50 idle sessions")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument(
        "--bulk-only",
        action="store_true",
        help="only the bulk transfers (no keystrokes, logins or idle memory)",
    )
    parser.add_argument("--mb", type=int, default=0, help="file size in MB (default 256; quick 32)")
    parser.add_argument("--runs", type=int, default=0, help="runs per bulk case (5; quick 3)")
    parser.add_argument(
        "--tools", default="scp,cat,tar,tar-up", help="bulk cases to run, comma-separated"
    )
    args = parser.parse_args(argv)
    sizes = Sizes(32, 50) if args.quick else Sizes(256, 200, keystrokes=2000, bulk_runs=5)
    if args.mb:
        sizes = replace(sizes, file_mb=args.mb)
    if args.runs:
        sizes = replace(sizes, bulk_runs=args.runs)
    tools = [tool for tool in args.tools.split(",") if tool]
    with rig(sizes, args.keep) as r:
        found = None if args.bulk_only else run_loop(interactive(r, sizes))
        ways = ("direct", "proxyjump", "bastion")
        runs = {tool: bulk(r, tool, ways, sizes.bulk_runs) for tool in tools}
        report(sizes, found, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
