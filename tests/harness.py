"""A real bastion for door tests: its own home, store and doors, served from a thread."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from bastion.audit import ChainKey, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import Config, load_config
from bastion.core import Core
from bastion.identity import totp
from bastion.identity.sealing import SecretBox
from bastion.pki import make_ssh_host_key, make_tls
from bastion.server import ServeError, Server
from tests import doorstore
from tests.realpg import PgDatabase
from tests.realssh import OpenSSHClient, Sshd, free_port, make_keypair

T = TypeVar("T")

# A stop (SIGTERM to `bastion serve`) drains live sessions for 1 s, not the minute a node waits.
CONFIG = """\
[sessions]
drain = "1s"
[listeners.ssh]
port = {port}
[listeners.postgres]
enabled = {postgres}
port = {pg_port}
[listeners.web]
enabled = false
"""


class Bastion:
    """A bastion home with users, targets and grants, and its doors served from a thread.

    Its clock is a FakeClock that starts at the real time; each `code()` moves it on by one
    TOTP step, so every login in a test gets a fresh single-use code without waiting.
    """

    def __init__(self, home: Path, extra_config: str = "", *, postgres: bool = False) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self._postgres, self._extra_config = postgres, extra_config
        self.store_at: Path | PgLocation = home / "bastion.db"
        self.port = free_port()
        self.pg_port = free_port()
        self.config = self._write_config()
        self.store_at = doorstore.current().place(home, self.config.paths.store)
        if isinstance(self.store_at, PgLocation):  # named in bastion.toml for the CLI too
            self.config = self._write_config()
        SecretBox.create_key_file(self.config.paths.secrets_key)
        self.host_key_fingerprint = make_ssh_host_key(self.config.paths.ssh_host_key)
        self.tls = make_tls(self.config.paths.tls_cert.parent)
        self.clock = FakeClock(datetime.now(UTC))
        self.box = SecretBox.load(self.config.paths.secrets_key)
        self.store = Store.create(self.store_at, self.clock, ChainKey.of(self.box))
        self.core = Core(self.config, self.store, self.box, self.clock)
        self.seeds: dict[str, str] = {}
        self.keys: dict[str, Path] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: Server | None = None

    @classmethod
    def with_alice(cls, home: Path, sshd: Sshd) -> Bastion:
        """The usual set-up: alice, with a key, granted web-1 (sshd, host key pinned)."""
        b = cls(home)
        b.add_user("alice")
        b.add_target("web-1", sshd)
        b.grant("alice", "web-1")
        return b

    # -- running ------------------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the bastion's loop and wait for it."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self) -> Bastion:
        """Serve the doors from a thread. Ports were free when the home was made; one taken
        since by another test's process is given up for new ones (a few times at most)."""
        self._thread.start()
        for attempt in range(5):
            self.server = Server(self.core)
            try:
                self.call(self.server.start())
                return self
            except ServeError as exc:
                if "address already in use" not in str(exc) or attempt == 4:
                    raise
                self._move_to_free_ports()
        return self

    def _write_config(self) -> Config:
        """bastion.toml with this bastion's ports, read back."""
        text = CONFIG.format(port=self.port, postgres=str(self._postgres).lower(),
                             pg_port=self.pg_port) + self._extra_config  # fmt: skip
        text = doorstore.StorePlaces.configure(text, self.store_at, self.home)
        (self.home / "bastion.toml").write_text(text, encoding="utf-8")
        return load_config(self.home / "bastion.toml")

    def _move_to_free_ports(self) -> None:
        self.port, self.pg_port = free_port(), free_port()
        self.config = self.core.config = self._write_config()

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
            self.server = None
        self.call(self._cancel_leftovers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self.core.shutdown()
        self.store.close()

    def release(self) -> None:
        """Give up the in-process bastion without starting it (a test serves it elsewhere)."""
        self._loop.close()
        self.core.shutdown()
        self.store.close()

    def serve_process(self) -> subprocess.Popen[bytes]:
        """`bastion serve` on this home as its own process (after release()), every door
        listening: its `bastion.started` event, chained once the last door listens, is in
        the store (the SSH banner alone says nothing of the database door)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion", "--config", str(self.home / "bastion.toml"),
             "serve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until_started(self.store_at, self.clock, proc)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return proc

    async def _cancel_leftovers(self) -> None:
        """Let connections finish closing, then cancel what is left (tests end abruptly)."""
        await asyncio.sleep(0.2)
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        # Transports closed just now close their sockets in a callback of a later loop turn;
        # stopping the loop first would leave those sockets to the garbage collector.
        await asyncio.sleep(0.05)

    # -- people, targets, grants ------------------------------------------------------

    def add_user(self, name: str, role: str = "engineer", *, key: bool = True,
                 password: str | None = None) -> None:  # fmt: skip
        keys: list[str] = []
        if key:
            path = make_keypair(self.home / f"{name}_ed25519", comment=name)
            self.keys[name] = path
            keys.append(Path(f"{path}.pub").read_text())
        enrolment = self.core.identity.enrol(name, role, password, "test", ssh_keys=keys)
        query = urllib.parse.urlparse(enrolment.uri).query
        self.seeds[name] = urllib.parse.parse_qs(query)["secret"][0]

    def add_target(self, name: str, sshd: Sshd, *, trust: bool = True) -> None:
        key = asyncssh.read_private_key(sshd.client_key_path)
        sealed = self.box.seal(key.export_private_key("openssh"), context=f"target:{name}")
        self.store.add_target(name=name, kind="ssh", host=sshd.host, port=sshd.port,
                              login=sshd.login, database=None, secret_sealed=sealed,
                              actor="test")  # fmt: skip
        if trust:
            self.store.set_host_key(name, sshd.host_key_pub, sshd.host_key_fingerprint, "test")

    def add_pg_target(self, name: str, db: PgDatabase) -> None:
        """A database target: the test cluster's database, reached as its service role."""
        sealed = self.box.seal(db.password.encode(), context=f"target:{name}")
        self.store.add_target(name=name, kind="postgres", host=db.host, port=db.port,
                              login=db.user, database=db.database, secret_sealed=sealed,
                              actor="test")  # fmt: skip

    def via_bastion(self, user: str, target: str, password: str) -> PgDatabase:
        """Connection settings for `user` through the bastion, with a fresh code appended."""
        return PgDatabase("127.0.0.1", self.pg_port, target, user, password + self.code(user))

    def grant(self, user: str, target: str, hours: float = 2, mode: str = "read") -> int:
        made = self.core.access.grant(user=user, target=target,
                                      duration=timedelta(hours=hours), mode=mode,
                                      reason="testing the doors", actor="test")  # fmt: skip
        return made.id

    def pg_secret(self, user: str, password: str) -> str:
        """What psql sends as the password: the password followed by a fresh code."""
        return password + self.code(user)

    def code(self, user: str) -> str:
        """A fresh TOTP code: the wall clock steps on one TOTP period first (a step, not time
        passing: the store's grace, measured on the monotonic reading, sees no gap)."""
        self.clock.set(self.clock.now() + timedelta(seconds=totp.PERIOD))
        return totp.code_for_step(self.seeds[user], totp.step_at(self.clock.now()))

    # -- clients ------------------------------------------------------------------------

    def openssh(self, user: str, workdir: Path, **kwargs: Any) -> OpenSSHClient:
        """OpenSSH clients pointed at the bastion, pinned to its host key, with user's key."""
        workdir.mkdir(parents=True, exist_ok=True)
        known = workdir / "known_hosts"
        public = Path(f"{self.config.paths.ssh_host_key}.pub").read_text().split()
        known.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")
        kwargs.setdefault("identity", self.keys.get(user))
        return OpenSSHClient("127.0.0.1", self.port, user, workdir=workdir, known_hosts=known,
                             **kwargs)  # fmt: skip

    def answers(self, user: str) -> Any:
        """An askpass answer function giving a fresh code whenever the bastion asks."""

        def answer(prompt: str) -> str | None:
            return self.code(user) if "Verification code" in prompt else None

        return answer

    def known_hosts(self) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[Any]]:
        """asyncssh's pinned form of the bastion's own host key."""
        return ([asyncssh.read_public_key(f"{self.config.paths.ssh_host_key}.pub")], [], [])

    def events(self, kind: str | None = None) -> list[Any]:
        found = self.store.events()
        return [e for e in found if kind is None or e.kind == kind]


def wait_until_started(
    where: Path | PgLocation,
    clock: FakeClock,
    proc: subprocess.Popen[bytes],
    deadline: float = 60,
) -> None:
    """Poll the store until `proc` (a `bastion serve`) has chained its bastion.started event;
    fails at once if it exits first. The deadline is a safety net, not a timing assertion."""
    actor, seen = f"serve:{proc.pid}", 0
    store = Store.open(where, clock)
    try:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise AssertionError(f"bastion serve exited with {proc.returncode} at start")
            events = store.events(after=seen)
            if any(e.kind == "bastion.started" and e.actor == actor for e in events):
                return
            seen = events[-1].seq if events else seen
            time.sleep(0.05)
    finally:
        store.close()
    raise AssertionError(f"bastion serve did not chain bastion.started within {deadline}s")


def env_without_agent() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}


def proc_kib(pid: int, field: str) -> int:
    """A memory figure of a process in KiB, from /proc: VmRSS now, VmHWM at its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")
