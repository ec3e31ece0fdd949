"""Hostile clients before login on both doors, as a process: python -m tests.flood PG SSH N.

Also the bastion they flood, and real users' logins through it (tests/test_flood.py and
bench/flood.py share them).

N raw-socket slots per door keep connections open and misbehaving until the process is
told to stop (SIGTERM): on the PostgreSQL door, password messages that claim 64 MiB and
stream junk, start-up packets sent a byte at a time, cancel requests with made-up keys,
and sockets that say nothing; on the SSH door, silence, a banner sent a byte at a time,
and a packet that claims 2 GiB. Each slot reconnects, after a pause, whenever the door
ends its connection. Slots come from 127.0.1.x loopback addresses, a few per address
(as a flood from many hosts would). It prints "ready" once every slot has connected,
then a JSON line of counts when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import psycopg

from bastion import pgwire as pw
from bastion.identity import totp
from tests.harness import Bastion
from tests.realpg import PgDatabase
from tests.realssh import Sshd

PER_ADDRESS = 8  # below the doors' default of 10 logins in progress per address
PAUSE = 0.5  # seconds before a slot reconnects
CANCEL_PAUSE = 0.05  # seconds between a cancel slot's requests
SLOW_BYTE = 2.0  # seconds between a slow sender's bytes
JUNK = b"\0" * 16384

Misbehave = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def raise_fd_limit() -> None:
    """As many open files as the hard limit allows (a flood is many sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _drain_until_closed(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def pg_oversized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A password message that claims 64 MiB, then up to 4 MiB of junk, then waiting."""
    writer.write(pw.startup_message({"user": "mallory", "database": "orders-prod"}))
    await reader.read(1)  # the door asks for a password (or ends the connection)
    writer.write(b"p" + struct.pack("!i", 64 * 1024 * 1024))
    for _ in range(256):
        writer.write(JUNK)
        await writer.drain()
    await _drain_until_closed(reader)


async def pg_slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A start-up packet a byte at a time: it never finishes within the grace time."""
    for byte in pw.startup_message({"user": "mallory", "database": "orders-prod"}):
        writer.write(bytes((byte,)))
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            if not await asyncio.wait_for(reader.read(1), SLOW_BYTE):
                return
    await _drain_until_closed(reader)


async def pg_cancel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A cancel request with a made-up key (the door closes at once)."""
    writer.write(pw.cancel_request(int.from_bytes(os.urandom(3)) + 1, os.urandom(4)))
    await _drain_until_closed(reader)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _drain_until_closed(reader)


async def ssh_slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for byte in b"SSH-2.0-flood_a_byte_at_a_time\r\n":
        writer.write(bytes((byte,)))
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            if not await asyncio.wait_for(reader.read(4096), SLOW_BYTE):
                return
    await _drain_until_closed(reader)


async def ssh_oversized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-flood\r\n" + struct.pack("!I", 2**31) + JUNK)
    await _drain_until_closed(reader)


# (share of the slots, behaviour, pause before reconnecting)
PG_MIX: tuple[tuple[float, Misbehave, float], ...] = (
    (0.2, pg_oversized, PAUSE), (0.3, pg_slow, PAUSE), (0.1, pg_cancel, CANCEL_PAUSE),
    (0.4, silent, PAUSE),
)  # fmt: skip
SSH_MIX: tuple[tuple[float, Misbehave, float], ...] = (
    (0.5, silent, PAUSE), (0.3, ssh_slow, PAUSE), (0.2, ssh_oversized, PAUSE),
)  # fmt: skip


class Flood:
    """The slots of both doors, and what happened to them."""

    def __init__(self, pg_port: int, ssh_port: int, per_door: int) -> None:
        self.plan: list[tuple[int, Misbehave, float, str]] = []
        for port, mix in ((pg_port, PG_MIX), (ssh_port, SSH_MIX)):
            slot = 0
            for share, behave, pause in mix:
                for _ in range(round(share * per_door)):
                    address = f"127.0.1.{slot // PER_ADDRESS + 1}"
                    self.plan.append((port, behave, pause, address))
                    slot += 1
        self.counts: Counter[str] = Counter()
        self.connected = 0
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._slot(*p, stop)) for p in self.plan]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _slot(self, port: int, behave: Misbehave, pause: float, address: str,
                    stop: asyncio.Event) -> None:  # fmt: skip
        first = True
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(address, 0))  # fmt: skip
            except OSError:
                self.counts["connect failed"] += 1
                await asyncio.sleep(pause)
                continue
            self.counts[f"{behave.__name__} connections"] += 1
            if first:
                first = False
                self.connected += 1
                if self.connected == len(self.plan):
                    self.ready.set()
            try:
                await behave(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                self.counts[f"{behave.__name__} reset"] += 1
            finally:
                writer.close()
            await asyncio.sleep(pause)


class FloodProcess:
    """`python -m tests.flood` against a bastion's two doors, as its own process."""

    def __init__(self, pg_port: int, ssh_port: int, per_door: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.flood", str(pg_port), str(ssh_port), str(per_door)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the flood did not start: {line!r}")

    def stop(self) -> dict[str, int]:
        """End every hostile connection; what happened to them."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        lines = out.strip().splitlines()
        found: dict[str, int] = json.loads(lines[-1]) if lines and lines[-1][:1] == "{" else {}
        return found


PASSWORD = "correct horse battery"
# Fewer seats than hostile connections, so the doors have to shed load to let users in.
CONFIG = """
[ssh]
max_logins_in_progress = 400
[postgres]
max_logins_in_progress = 400
[targets.orders-prod.masking]
enabled = false
"""


def flooded_home(home: Path, sshd: Sshd, pg: PgDatabase, pairs: int = 1) -> Bastion:
    """alice reaches web-1 over SSH, bob reaches orders-prod over the PostgreSQL door (and
    alice1, bob1, ... for more logins than two codes a user per 30 s allow)."""
    b = Bastion(home, CONFIG, postgres=True)
    b.add_target("web-1", sshd)
    b.add_pg_target("orders-prod", pg)
    for i in range(pairs):
        ssh_user, pg_user = (f"alice{i or ''}", f"bob{i or ''}")
        b.add_user(ssh_user)
        b.grant(ssh_user, "web-1")
        b.add_user(pg_user, key=False, password=PASSWORD)
        b.grant(pg_user, "orders-prod")
    return b


USED: dict[tuple[int, str], int] = {}  # (bastion, user) -> the last step whose code was used


def real_code(b: Bastion, user: str) -> str:
    """A fresh code for the served bastion, which runs on the real clock: this step's, or
    the next one's (accepted for clock skew) when this step's was used already."""
    step = max(totp.step_at(datetime.now(UTC)), USED.get((id(b), user), -1) + 1)
    USED[id(b), user] = step
    return totp.code_for_step(b.seeds[user], step)


def pg_login(b: Bastion, user: str = "bob") -> float:
    """Seconds for bob to log in with password + code and run a statement."""
    began = time.monotonic()
    with psycopg.connect(host="127.0.0.1", port=b.pg_port, dbname="orders-prod", user=user,
                         password=PASSWORD + real_code(b, user), sslmode="disable",
                         connect_timeout=30) as conn:  # fmt: skip
        assert conn.execute("SELECT 1").fetchone() == (1,)
    return time.monotonic() - began


def ssh_login(b: Bastion, user: str = "alice") -> float:
    """Seconds for alice to log in with key + code and run a command on web-1."""

    class Answer(asyncssh.SSHClient):
        def kbdint_auth_requested(self) -> str:
            return ""

        def kbdint_challenge_received(
            self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
        ) -> list[str]:
            return [real_code(b, user)] if prompts else []

    async def run() -> float:
        began = time.monotonic()
        key = asyncssh.read_private_key(b.keys[user])
        async with asyncssh.connect(
            "127.0.0.1", b.port, username=f"{user}+web-1", client_keys=[key],
            known_hosts=b.known_hosts(), client_factory=Answer, agent_path=None, config=None,
            preferred_auth="publickey,keyboard-interactive", login_timeout=60,
        ) as conn:  # fmt: skip
            done = await conn.run("echo in", check=True)
            assert done.stdout == "in\n"
        return time.monotonic() - began

    return asyncio.run(run())


async def _main(pg_port: int, ssh_port: int, per_door: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    flood = Flood(pg_port, ssh_port, per_door)
    runner = asyncio.create_task(flood.run(stop))
    await flood.ready.wait()
    print("ready", flush=True)
    await runner
    print(json.dumps(dict(flood.counts)), flush=True)


def main() -> None:
    raise_fd_limit()
    pg_port, ssh_port, per_door = (int(a) for a in sys.argv[1:4])
    asyncio.run(_main(pg_port, ssh_port, per_door))


if __name__ == "__main__":
    main()
