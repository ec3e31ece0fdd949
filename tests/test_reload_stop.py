"""Reload without dropping sessions, through the real doors: a live SSH shell and a live asyncpg
session go on with the settings they started with while a new session sees the new ones; a bad
configuration or TLS key is refused and the running one stays; a rotated certificate serves new
handshakes only; a listener change needs a restart and says so."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from bastion.config import load_config
from bastion.pki import make_ssh_host_key, make_tls
from bastion.reload import STOPPING, file_digest, plan
from bastion.watch import WATCH_EVERY
from tests.harness import Bastion
from tests.nodes import running, until
from tests.realpg import PgDatabase, asyncpg_connect
from tests.realssh import Sshd

PASSWORD = "correct horse battery"
UNMASKED = """
[targets.shop]
max_session = "1h"
idle_timeout = "10h"
[targets.shop.masking]
enabled = false
"""
JANE = "SELECT email FROM customers WHERE id = 4711"


@pytest.fixture
def bastion(tmp_path: Path, shop: PgDatabase, sshd: Sshd) -> Iterator[Bastion]:
    """alice may read the shop (masking off) and use web-1 (a real sshd)."""
    b = Bastion(tmp_path / "bastion", UNMASKED, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_pg_target("shop", shop)
    b.grant("alice", "shop")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    edit_config(b, 'drain = "1s"', 'drain = "3s"')
    b.core.reconfigure(load_config(b.home / "bastion.toml"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def edit_config(b: Bastion, old: str, new: str) -> None:
    path = b.home / "bastion.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def reload(b: Bastion) -> str:
    assert b.server is not None
    return b.call(b.server.lifecycle.reload())


def served_certificate(port: int) -> bytes:
    """The DER certificate the PG door shows a new TLS handshake (SSLRequest, then TLS)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack("!ii", 8, 80877103))
        assert sock.recv(1) == b"S"
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(sock) as tls:
            found = tls.getpeercert(binary_form=True)
    assert found is not None
    return found


def test_a_reload_applies_to_new_sessions_and_live_ones_go_on(
    bastion: Bastion, tmp_path: Path
) -> None:
    b = bastion
    ssh = b.openssh("alice", tmp_path / "client")
    with ssh.tmux(login="alice+web-1", answers=b.answers("alice"), flags=["-t"]) as shell:
        shell.wait_for("$ ")

        async def sessions() -> tuple[str, str, str]:
            live = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
            try:
                before = await live.fetchval(JANE)
                edit_config(b, "masking]\nenabled = false", "masking]\nenabled = true")
                line = await asyncio.to_thread(reload, b)
                assert line == "reloaded: 1 setting(s) changed, applied to new sessions"
                fresh = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
                try:
                    masked = await fresh.fetchval(JANE)
                finally:
                    await fresh.close()
                return before, await live.fetchval(JANE), masked
            finally:
                await live.close()

        before, after, masked = asyncio.run(sessions())
        assert before == after == "jane.doe@example.com"  # the live session kept its settings
        assert masked == "j*******@example.com"  # a new session has the new masking
        shell.type_text("echo still-here", enter=True)
        shell.wait_for(re.compile(r"still-here\n"))
    [event] = b.events("config.reloaded")
    detail = json.loads(event.detail)
    assert detail.pop("config_sha256") == file_digest(b.home / "bastion.toml")
    assert detail == {"changed": ["targets.shop"], "needs_restart": []}
    assert not [s for s in b.store.sessions() if s.state == "interrupted"]


def test_a_reload_neither_cuts_nor_extends_a_live_session(bastion: Bastion) -> None:
    """Sessions keep the limits they started with: a shorter max_session does not end a live
    one (an admin ends it with `sessions kill`), a longer one does not let it run on."""
    b = bastion

    async def live_through() -> tuple[int, str]:
        live = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        try:
            edit_config(b, 'max_session = "1h"', 'max_session = "10m"')
            assert (await asyncio.to_thread(reload, b)).startswith("reloaded: 1 setting")
            b.clock.advance(timedelta(minutes=30))  # past the new limit, within its own
            await asyncio.sleep(2 * WATCH_EVERY)  # the watcher looks (and must not end it)
            alive = await live.fetchval("SELECT 1")
            edit_config(b, 'max_session = "10m"', 'max_session = "10h"')
            assert (await asyncio.to_thread(reload, b)).startswith("reloaded: 1 setting")
            b.clock.advance(timedelta(minutes=31))  # past the limit it started with
            ended_by = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
            with pytest.raises(ended_by) as ended:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    await live.fetchval("SELECT 1")
                    await asyncio.sleep(0.05)
            return alive, str(ended.value)
        finally:
            await live.close()

    alive, ended = asyncio.run(live_through())
    assert alive == 1 and ended
    # The client is told first; the row closes after (the door's last write).
    until(lambda: not b.store.sessions(open_only=True), "the session's row to close")
    [session] = b.store.sessions()
    assert (session.state, session.end_reason) == ("session_cap",
                                                   "sessions on shop last at most 1h")  # fmt: skip


def test_a_flood_of_reloads_runs_one_at_a_time(bastion: Bastion) -> None:
    b = bastion
    assert b.server is not None
    lifecycle = b.server.lifecycle

    async def flood() -> list[str]:
        return await asyncio.gather(*(lifecycle.reload() for _ in range(20)))

    lines = b.call(flood())
    assert lines == ["reloaded: no setting changed (TLS material re-read)"] * 20
    assert lifecycle.reloads == 20 and len(b.events("config.reloaded")) == 20


def test_a_bad_config_is_refused_and_the_running_one_stays(bastion: Bastion) -> None:
    b = bastion
    edit_config(b, 'drain = "3s"', 'drain = "3s"\nidle_timeout = 5')
    edit_config(b, "masking]\nenabled = false", "masking]\nenabled = true")
    line = reload(b)
    assert line.startswith("reload refused: ") and "sessions.idle_timeout" in line
    assert line.endswith("; the running configuration stays")
    [event] = b.events("config.reload_refused")
    assert "sessions.idle_timeout" in json.loads(event.detail)["error"]

    async def fetch() -> str:
        conn = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        try:
            return str(await conn.fetchval(JANE))
        finally:
            await conn.close()

    assert asyncio.run(fetch()) == "jane.doe@example.com"  # still unmasked: nothing applied


def test_a_listener_change_needs_a_restart_and_the_rest_applies(bastion: Bastion) -> None:
    b = bastion
    edit_config(b, f"port = {b.pg_port}", f"port = {b.pg_port + 1}")
    edit_config(b, 'drain = "3s"', 'drain = "3s"\nidle_timeout = "5m"')
    line = reload(b)
    assert line == "reloaded: listeners.postgres.port changed: needs a restart; the rest applied"
    assert b.core.config.listeners.postgres.port == b.pg_port  # the running value stays
    assert b.core.config.sessions.idle_timeout.total_seconds() == 300
    host_key = b.config.paths.ssh_host_key  # a new host key is read at the next start only
    host_key.unlink()
    host_key.with_name(host_key.name + ".pub").unlink()
    make_ssh_host_key(host_key)
    line = reload(b)
    assert line == ("reloaded: listeners.postgres.port, the SSH host key file changed: needs a"
                    " restart; the rest applied")  # fmt: skip


def test_a_rotated_certificate_serves_new_handshakes_and_a_bad_key_is_refused(
    bastion: Bastion, tmp_path: Path
) -> None:
    b = bastion
    paths = b.config.paths
    old = served_certificate(b.pg_port)
    fresh = make_tls(tmp_path / "rotated")

    async def around_the_rotation() -> str:
        live = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD), ssl="require")
        try:
            shutil.copyfile(fresh.server_cert, paths.tls_cert)
            shutil.copyfile(fresh.server_key, paths.tls_key)
            line = await asyncio.to_thread(reload, b)
            assert await live.fetchval("SELECT 1") == 1  # the live TLS session goes on
            return line
        finally:
            await live.close()

    assert asyncio.run(around_the_rotation()).startswith("reloaded: ")
    rotated = served_certificate(b.pg_port)
    assert rotated != old and rotated == ssl.PEM_cert_to_DER_cert(fresh.server_cert.read_text())
    paths.tls_key.write_text("not a key\n")
    line = reload(b)
    assert line.startswith("reload refused: paths.tls_key: ")
    assert served_certificate(b.pg_port) == rotated  # the running certificate stays


def test_a_plan_keeps_restart_only_values_and_names_changed_targets(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text("[listeners.ssh]\nport = 2200\n[targets.db]\napprovals = 1\n")
    running = load_config(path)
    path.write_text('[listeners.ssh]\nport = 2201\n[targets.db]\napprovals = 2\n[cluster]\n'
                    'node = "other"\n[grants]\nmin_reason_length = 20\n')  # fmt: skip
    found = plan(running, load_config(path))
    assert found.needs_restart == ("listeners.ssh.port", "cluster.node")
    assert found.changed == ("grants.min_reason_length", "targets.db")
    assert found.config.listeners.ssh.port == 2200 and found.config.cluster.node == ""
    assert found.config.grants.min_reason_length == 20
    assert found.config.targets["db"].approvals == 2


def test_export_sinks_and_retention_need_a_restart(tmp_path: Path) -> None:
    """Both start with serve (a worker per sink, the retention schedule): a reload that
    changed them names them and keeps what runs, rather than say "applied" and run the old."""
    path = tmp_path / "bastion.toml"
    feed = tmp_path / "feed.jsonl"
    path.write_text("")
    running = load_config(path)
    path.write_text(f'[export.siem]\nkind = "file"\npath = "{feed}"\n[retention]\n'
                    'events = "400d"\nrecordings = "90d"\nqueries = "90d"\n'
                    'archive_dir = "archive"\n')  # fmt: skip
    found = plan(running, load_config(path))
    assert "export" in found.needs_restart and "retention.events" in found.needs_restart
    assert found.config.export == () and not found.config.retention.enabled
    assert "needs a restart" in found.line()


# --- a graceful stop ----------------------------------------------------------------------


async def until_async(done: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Wait for observable state, bounded; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def until_running(pg: PgDatabase, query: str) -> None:
    deadline = time.monotonic() + 20
    while not await running(pg, query):
        assert time.monotonic() < deadline, f"{query} never ran"
        await asyncio.sleep(0.02)


def test_a_stop_drains_tells_and_then_ends_the_rest_as_node_stopping(
    bastion: Bastion, shop: PgDatabase, tmp_path: Path
) -> None:
    b = bastion
    server = b.server
    assert server is not None
    ssh = b.openssh("alice", tmp_path / "client")
    with ssh.tmux(login="alice+web-1", answers=b.answers("alice"), flags=["-t"]) as shell:
        shell.wait_for("$ ")

        async def drained() -> tuple[list[str], BaseException]:
            staying = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
            told: list[str] = []
            staying.add_log_listener(lambda _conn, message: told.append(message.message))
            leaving = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
            via = b.via_bastion("alice", "shop", PASSWORD)  # its code taken before the stop
            b._loop.call_soon_threadsafe(server.lifecycle.terminate)
            await until_async(lambda: b.core.stopping, "the drain to begin")
            with pytest.raises(asyncpg.CannotConnectNowError):  # 57P03: cancels only now
                await asyncpg_connect(via)
            await until_async(lambda: told, "the notice")
            assert await staying.fetchval("SELECT 1") == 1  # a live session goes on meanwhile
            await leaving.close()  # ends by itself during the drain
            await until_async(server._stopping.is_set, "the drain time to run out")
            sleeping = asyncio.ensure_future(staying.fetchval("SELECT pg_sleep(30)"))
            await until_running(shop, "SELECT pg_sleep(30)")  # the stop ends it mid-way
            await asyncio.to_thread(b.call, server.stop())
            b.server = None
            with pytest.raises(asyncpg.PostgresError) as ended:
                await sleeping
            await staying.close()
            return told, ended.value

        told, ended = asyncio.run(drained())
        assert told == ["this node is stopping; your session ends in 3 s"]
        # The FATAL's text (57P01 admin_shutdown) reaches asyncpg, which reports the close.
        assert STOPPING in str(ended)
        shell.wait_for("bastion: this node is stopping; your session ends in 3 s")
        shell.wait_for(f"bastion: {STOPPING}")
    by_protocol = sorted((s.protocol, s.state, s.end_reason) for s in b.store.sessions())
    assert by_protocol[0][:2] == ("postgres", "closed") and by_protocol[0][2] != STOPPING
    assert by_protocol[1:] == [("postgres", "interrupted", STOPPING),
                               ("ssh", "interrupted", STOPPING)]  # fmt: skip
    [stopped] = b.events("bastion.stopped")
    assert json.loads(stopped.detail)["sessions"] == {"drained": 1, "ended": 2}


def test_a_second_signal_ends_the_drain_at_once(bastion: Bastion) -> None:
    b = bastion
    server = b.server
    assert server is not None
    policy = b.core.config
    b.core.reconfigure(replace(policy, sessions=replace(policy.sessions, drain=timedelta(hours=1))))

    async def cut_short() -> list[str]:
        live = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        told: list[str] = []
        live.add_log_listener(lambda _conn, message: told.append(message.message))
        b._loop.call_soon_threadsafe(server.lifecycle.terminate)
        await until_async(lambda: told, "the notice")
        b._loop.call_soon_threadsafe(server.lifecycle.terminate)  # the second SIGTERM
        await until_async(server._stopping.is_set, "the drain to end, an hour early")
        await asyncio.to_thread(b.call, server.stop())
        b.server = None
        await live.close()
        return told

    assert asyncio.run(cut_short()) == ["this node is stopping; your session ends in 3600 s"]
    [session] = b.store.sessions()
    assert (session.state, session.end_reason) == ("interrupted", STOPPING)
    [stopped] = b.events("bastion.stopped")
    assert json.loads(stopped.detail)["sessions"] == {"drained": 0, "ended": 1}
