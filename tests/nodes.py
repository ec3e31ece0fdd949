"""Bastion nodes for tests: `bastion serve` processes as nodes of one store on PostgreSQL, each
with its own name, ports, spool, head file and log; the home they share (keys, TLS, people,
targets) is made with the door harness and its store put on PostgreSQL."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from bastion.audit import ChainKey, Store
from bastion.audit.location import PgLocation
from bastion.core import Core
from tests.harness import CONFIG, Bastion
from tests.realpg import PgDatabase
from tests.realssh import free_port


def until(done: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Wait for observable state, bounded; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def running(pg: PgDatabase, query: str) -> int:
    """How many backends of `pg`'s database are running `query` now (pg_stat_activity; other
    tests share the cluster)."""
    conn = await asyncpg.connect(pg.url, ssl=False)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE query = $1 AND state = 'active' AND datname = $2", query, pg.database
        )  # fmt: skip
    finally:
        await conn.close()
    return int(found)


def key_of(conn: asyncpg.Connection) -> tuple[int, int]:
    """The (pid, secret) the bastion gave this client, where asyncpg's own cancel reads them."""
    protocol = conn._protocol
    return int(protocol.backend_pid), int(protocol.backend_secret)


def send_to(port: int, packet: bytes) -> None:
    """One start-up packet (a CancelRequest, say) on a connection of its own; returns once the
    far end has closed it (the node has done whatever it will do with it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(packet)
        assert sock.recv(1) == b""


def store_table(location: PgLocation, head_file: str = "store.head") -> str:
    """The [store] table of a bastion.toml for `location` (its password file by path)."""
    assert location.password_file is not None
    return (f'\n[store]\nurl = "{location.url}"\npassword_file = "{location.password_file}"\n'
            f'head_file = "{head_file}"\n')  # fmt: skip


def pg_bastion(home: Path, location: PgLocation, extra_config: str = "") -> Bastion:
    """The door harness's Bastion (not started) with its store made on PostgreSQL at
    `location` instead of the SQLite file: people, targets and grants go there."""
    b = Bastion(home, store_table(location) + extra_config, postgres=True)
    b.core.shutdown()
    b.store.close()
    b.config.paths.store.unlink()
    b.store = Store.create(location, b.clock, ChainKey.of(b.box))
    b.core = Core(b.config, b.store, b.box, b.clock)
    return b


PORT_TRIES = 5


class PortTaken(AssertionError):
    """A node could not listen: a port chosen free was taken meanwhile."""


class ServeNode:
    """One `bastion serve` of a shared home: its own directory (config, spool, head file,
    anchors, log), its own ports; the home's keys, TLS and store. `extra` is appended to its
    config, `cluster` goes in its [cluster] table, `store` replaces its [store] table."""

    def __init__(self, home: Bastion, name: str, extra: str = "", *, cluster: str = "",
                 store: str = "") -> None:  # fmt: skip
        self.name = name
        self.dir = home.home / "nodes" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "bastion.toml"
        self.log = self.dir / "serve.log"
        paths = home.config.paths
        location = home.store.location
        assert location is not None
        self._rest = (
            f'[paths]\nrecordings = "spool"\nsecrets_key = "{paths.secrets_key}"\n'
            f'ssh_host_key = "{paths.ssh_host_key}"\ntls_cert = "{paths.tls_cert}"\n'
            f'tls_key = "{paths.tls_key}"\ntls_ca = "{paths.tls_ca}"\n'
            f'report_signing_key = "{paths.report_signing_key}"\n'
            f'[audit]\nanchors = ["file:{self.dir / "anchors.log"}"]\n'
            f'[cluster]\nnode = "{name}"\n{cluster}[logging]\nformat = "json"\n'
        ) + (store or store_table(location)) + extra  # fmt: skip
        self._new_ports()
        self.proc: subprocess.Popen[bytes] | None = None

    def _new_ports(self) -> None:
        """Ports free a moment ago, written into the config."""
        self.ssh_port, self.pg_port = free_port(), free_port()
        text = CONFIG.format(port=self.ssh_port, postgres="true", pg_port=self.pg_port)
        self.config.write_text(text + self._rest, encoding="utf-8")

    @property
    def spool(self) -> Path:
        return self.dir / "spool"

    def start(self, store: Store) -> ServeNode:
        """Serve, and return once this process has said in the store that it started."""
        self.launch()
        return self.started(store)

    def launch(self) -> None:
        """Start serving (see started())."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bastion", "--config", str(self.config), "serve"],
                stdout=log, stderr=log,
            )  # fmt: skip

    def started(self, store: Store) -> ServeNode:
        """Return once the launched process has said in the store that it started. A port
        taken since it was chosen (by another test's process) is given up for new ones, a
        few times at most."""
        for attempt in range(PORT_TRIES):
            try:
                until(lambda: self._started(store), f"node {self.name} to start", timeout=60)
                return self
            except PortTaken:
                if attempt == PORT_TRIES - 1:
                    raise
                self._new_ports()
                self.launch()
        return self

    def _started(self, store: Store) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            said = self.log.read_text()[-3000:]
            if "address already in use" in (said.splitlines() or [""])[-1]:
                raise PortTaken(said)
            raise AssertionError(f"node {self.name} exited: {said}")
        actor = f"serve:{self.proc.pid}"
        return any(e.kind == "bastion.started" and e.actor == actor for e in store.events())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL: crash it) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `bastion` command run with this node's config."""
        return subprocess.run(
            [sys.executable, "-m", "bastion", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def logged(self, event: str) -> list[dict[str, Any]]:
        """This node's JSON log lines for `event`."""
        lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [line for line in found if line.get("event") == event]
