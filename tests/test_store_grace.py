"""A node that cannot reach its store for longer than [cluster] store_grace fails closed: it ends
every live session it serves with one line, refuses logins at every door with one line, and
/healthz says the store is unreachable and since when; when the store answers again it
recovers by itself. The store is made unreachable for real: another process holds SQLite's
write lock (BEGIN EXCLUSIVE), so the watcher's look, which must commit, cannot complete. The
grace runs on the bastion's clock (a FakeClock), so the test never waits for it."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bastion.config import load_config
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD
from tests.realpg import PgDatabase, psycopg_connect, run_psql
from tests.realssh import Sshd, free_port

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""
LOST = "this bastion lost its audit store for more than 600 s; the session is over"
REFUSED = "this bastion cannot reach its audit store (since "


def wait_until(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not callable(predicate) or not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.05)


def with_web(b: Bastion) -> int:
    """Turn the harness's web console on (before start), on a free port."""
    port = free_port()
    path = b.home / "bastion.toml"
    text = path.read_text().replace("[listeners.web]\nenabled = false\n",
                                    f"[listeners.web]\nport = {port}\n")  # fmt: skip
    path.write_text(text)
    b.config = b.core.config = load_config(path)
    return port


def get(b: Bastion, url: str, body: dict[str, str] | None = None) -> tuple[int, Any]:
    """A request to the console over its TLS (pinned to the bastion's CA): status and JSON."""
    context = ssl.create_default_context(cafile=b.config.paths.tls_ca)
    data = None if body is None else json.dumps(body).encode()
    assert url.startswith("https://")
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - https
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_node_that_loses_its_store_fails_closed_and_recovers(tmp_path: Path, sshd: Sshd,
                                                               pg: PgDatabase) -> None:  # fmt: skip
    # A long grace, so the test's own clock steps (30 s a login) are far from it.
    b = Bastion(tmp_path / "bastion", '[cluster]\nstore_grace = "10m"\n', postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.add_pg_target("orders-prod", pg)
    b.grant("alice", "orders-prod")
    web = with_web(b)
    health = f"https://localhost:{web}/healthz"
    b.start()
    locker = None
    try:
        ssh = b.openssh("alice", tmp_path / "client")
        database = psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD),
                                   autocommit=True)  # fmt: skip
        assert database.execute("SELECT 1").fetchone() == (1,)
        with ssh.tmux(login="alice+web-1", answers=b.answers("alice"), flags=["-t"]) as tmux:
            tmux.wait_for("$ ")
            assert len(b.store.sessions(open_only=True)) == 2  # a database one, a shell
            assert get(b, health)[1]["store"] == {"reachable": True}
            locker = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(b.config.paths.store)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
            assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
            wait_until(lambda: b.core.grace.misses >= 1)  # the look cannot commit
            assert not b.core.grace.lost  # within the grace: the session goes on
            b.clock.advance(601)
            tmux.wait_for(LOST)
        with pytest.raises(psycopg.OperationalError, match=LOST):  # both doors' sessions
            database.execute("SELECT 1")
        database.close()
        status, said = get(b, health)
        assert status == 503 and said["status"] == "failing"
        assert said["store"]["reachable"] is False and said["store"]["since"]
        # Every door refuses a new login with the one line, before touching the store.
        refused = ssh.run_ssh("echo should-not-run", login="alice+web-1",
                              answers=b.answers("alice"))  # fmt: skip
        assert refused.returncode == 255 and REFUSED in refused.err
        assert "should-not-run" not in refused.out
        psql = run_psql(b.via_bastion("alice", "web-1", "pw"), "-c", "SELECT 1")
        assert psql.returncode != 0 and REFUSED in psql.stderr, psql.stderr
        status, said = get(b, f"https://localhost:{web}/api/v1/signin",
                           {"username": "alice", "password": "x", "code": "123456"})  # fmt: skip
        assert status == 503 and said["error"].startswith(REFUSED)
        # The store answers again: the node recovers by itself.
        assert locker.stdin is not None
        locker.stdin.write(b"\n")
        locker.stdin.flush()
        locker.wait(10)
        wait_until(lambda: not b.core.grace.lost)
        status, said = get(b, health)
        assert status == 200 and said["store"] == {"reachable": True}
        wait_until(lambda: [s.state for s in b.store.sessions()] == ["store_lost"] * 2)
        wait_until(lambda: b.events("cluster.store_lost"))  # chained once the store is back
        assert [e.subject for e in b.events("cluster.store_lost")] == [b.core.node]
        back = ssh.run_ssh("echo back-again", login="alice+web-1", answers=b.answers("alice"))
        assert back.returncode == 0 and "back-again" in back.out, back.err
    finally:
        if locker is not None:
            if locker.poll() is None:
                locker.kill()
            locker.communicate(timeout=10)  # reaped, and its pipes closed
        b.stop()
