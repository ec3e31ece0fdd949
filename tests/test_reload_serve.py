"""A real `bastion serve` process: `bastion reload` (SIGHUP) prints the outcome and exits non-zero
when refused, with a live database session going on; SIGTERM drains it (/healthz 503
"stopping", new connections refused, the live session told), then ends what is left."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from bastion.audit import Store
from bastion.clock import SystemClock
from bastion.errors import Exit
from bastion.identity import totp
from bastion.pki import make_tls
from bastion.reload import STOPPING
from tests.harness import Bastion
from tests.nodes import until
from tests.realpg import PgDatabase, psycopg_connect
from tests.realssh import free_port

PASSWORD = "correct horse battery"


class Serving:
    """`bastion serve` of a home where alice reads orders-prod; the console on a port."""

    def __init__(self, home: Path, pg: PgDatabase) -> None:
        b = Bastion(home, postgres=True)
        b.add_user("alice", password=PASSWORD)
        b.add_pg_target("orders-prod", pg)
        b.grant("alice", "orders-prod")
        b.release()
        self.b, self.web_port = b, free_port()
        self.config = home / "bastion.toml"
        self.edit("[listeners.web]\nenabled = false",
                  f"[listeners.web]\nenabled = true\nport = {self.web_port}")  # fmt: skip
        self.edit('drain = "1s"', 'drain = "4s"')
        self.step = totp.step_at(datetime.now(UTC)) - 1  # the oldest code still taken
        self.proc = b.serve_process()

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert old in text
        self.config.write_text(text.replace(old, new, 1), encoding="utf-8")

    def login(self) -> PgDatabase:
        """alice through the door, with the next code (each login its own step)."""
        self.step += 1
        code = totp.code_for_step(self.b.seeds["alice"], self.step)
        return PgDatabase("127.0.0.1", self.b.pg_port, "orders-prod", "alice", PASSWORD + code)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bastion", "--config", str(self.config),
                               *args], capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip

    def health(self) -> tuple[int, dict[str, object]]:
        context = ssl.create_default_context(cafile=str(self.b.config.paths.tls_ca))
        url = f"https://127.0.0.1:{self.web_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def sessions(self) -> list[tuple[str, str | None]]:
        store = Store.open(self.b.store_at, SystemClock())
        try:
            return [(s.state, s.end_reason) for s in store.sessions()]
        finally:
            store.close()


@pytest.fixture
def serving(tmp_path: Path, pg: PgDatabase) -> Iterator[Serving]:
    node = Serving(tmp_path / "bastion", pg)
    try:
        yield node
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()


def test_bastion_reload_prints_the_outcome_and_a_refusal_exits_non_zero(
    serving: Serving,
) -> None:
    with psycopg_connect(serving.login(), autocommit=True) as live:
        serving.edit("[listeners.ssh]", "[grants]\nmin_reason_length = 20\n[listeners.ssh]")
        done = serving.cli("reload")
        assert done.returncode == Exit.OK, done.stderr
        assert done.stdout == "bastion: reloaded: 1 setting(s) changed, applied to new sessions\n"
        serving.edit("min_reason_length = 20", 'min_reason_length = "twenty"')
        done = serving.cli("reload")
        assert done.returncode == Exit.CONFIG
        assert done.stderr.startswith("bastion: reload refused: ")
        assert "grants.min_reason_length" in done.stderr and "\n" not in done.stderr[:-1]
        assert live.execute("SELECT 1").fetchone() == (1,)  # the live session never noticed
    with psycopg_connect(serving.login(), autocommit=True) as fresh:  # new ones still open
        assert fresh.execute("SELECT 2").fetchone() == (2,)
    assert serving.proc.poll() is None
    serving.proc.send_signal(signal.SIGHUP)  # the signal itself, as systemd's ExecReload
    serving.proc.send_signal(signal.SIGTERM)
    assert serving.proc.wait(30) == 0
    done = serving.cli("reload")  # no server: said in one line
    assert done.returncode == Exit.NOT_FOUND and "no `bastion serve` is running" in done.stderr


def test_sigterm_drains_then_ends_the_live_session_as_node_stopping(serving: Serving) -> None:
    status, body = serving.health()
    assert (status, body["status"]) == (200, "ok")
    late = serving.login()  # its code taken now, used after the stop began
    with psycopg_connect(serving.login(), autocommit=True) as live:
        told: list[str] = []
        live.add_notice_handler(lambda diag: told.append(str(diag.message_primary)))
        serving.proc.send_signal(signal.SIGTERM)
        until(lambda: serving.health()[0] == 503, "/healthz to say stopping")
        assert serving.health()[1]["status"] == "stopping"
        with pytest.raises(psycopg.OperationalError):
            psycopg_connect(late, autocommit=True).close()
        assert live.execute("SELECT 1").fetchone() == (1,)  # goes on while the node drains
        assert told == ["this node is stopping; your session ends in 4 s"]
        assert serving.proc.wait(30) == 0
        with pytest.raises(psycopg.OperationalError, match="node stopping"):
            live.execute("SELECT 2")
    assert serving.sessions() == [("interrupted", STOPPING)]


def test_a_rotated_certificate_reaches_the_console_after_bastion_reload(
    serving: Serving, tmp_path: Path
) -> None:
    paths = serving.b.config.paths
    fresh = make_tls(tmp_path / "rotated")
    shutil.copyfile(fresh.server_cert, paths.tls_cert)
    shutil.copyfile(fresh.server_key, paths.tls_key)
    done = serving.cli("reload")
    assert done.stdout == "bastion: reloaded: no setting changed (TLS material re-read)\n"
    context = ssl.create_default_context(cafile=str(fresh.ca_cert))  # only the new CA
    sock = socket.create_connection(("127.0.0.1", serving.web_port), timeout=10)
    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        assert tls.getpeercert() is not None  # verified against the rotated CA


def test_a_planted_serve_file_signals_nothing(tmp_path: Path) -> None:
    """A serve file naming another process (stale, or written by someone with the state
    directory) is refused: `bastion reload` signals only a `bastion serve`."""
    config = tmp_path / "bastion.toml"
    config.write_text('[cluster]\nnode = "n1"\n', encoding="utf-8")
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            (tmp_path / "bastion-serve.n1.json").write_text(json.dumps({"pid": other.pid}))
            done = subprocess.run([sys.executable, "-m", "bastion", "--config", str(config),
                                   "reload"], capture_output=True, text=True, timeout=60,
                                  check=False)  # fmt: skip
            assert done.returncode == Exit.NOT_FOUND
            assert "no `bastion serve` is running for this configuration" in done.stderr
            assert other.poll() is None  # never sent SIGHUP (it would have ended)
        finally:
            other.kill()
