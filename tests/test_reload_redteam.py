"""Red team of reload and stop: a reload never claims to apply what the running node keeps
(the metrics token read at start) and re-pins the certificate peers show for forwarded
cancels; a stop ends a session that was opening as it began."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from bastion.config import load_config
from bastion.console import websessions
from bastion.core import STOPPING_REFUSAL
from bastion.errors import Exit
from bastion.pgproxy.door import PgDoor
from bastion.pki import make_tls
from bastion.server import Server
from tests.harness import Bastion
from tests.realpg import PgDatabase, asyncpg_connect
from tests.realssh import free_port
from tests.test_metrics_access import TOKEN, get, serving, write_token
from tests.test_reload_stop import PASSWORD, UNMASKED, served_certificate, until_async

NEW_TOKEN = "another-metrics-token-9876543210"
# How asyncpg reports a connection the bastion ended (a FATAL, a close, mid-call or between).
ENDED = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


async def test_a_reload_that_changes_the_metrics_token_says_it_needs_a_restart(
    tmp_path: Path,
) -> None:
    """The token is read once at start: a reload must not say "applied" while the old (maybe
    leaked) token still opens /metrics and the new one does not."""
    write_token(tmp_path)
    (tmp_path / "metrics2.token").write_text(NEW_TOKEN + "\n")
    (tmp_path / "metrics2.token").chmod(0o600)
    async with serving(tmp_path, 'token_file = "metrics.token"') as (port, core):
        config = core.config.path
        config.write_text(config.read_text().replace('"metrics.token"', '"metrics2.token"'))
        server = Server(core)  # the lifecycle of a server on this core reads the same file
        line = await server.lifecycle.reload()
        assert line == "reloaded: metrics.token_file changed: needs a restart; the rest applied"
        assert core.config.metrics.token_file == "metrics.token"  # what is in force, said so
        url = f"http://127.0.0.1:{port}/metrics"
        assert (await get(url, TOKEN))[0] == 200


# --- a session that opens as the drain begins ----------------------------------------------


class SlowRelay:
    """A real TCP relay in front of the database that holds each connection until released:
    the bastion's upstream login waits there, after its session row is open."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        self.arrived = asyncio.Event()
        self.go = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.arrived.set()
        await self.go.wait()
        up_reader, up_writer = await asyncio.open_connection(self.db.host, self.db.port)
        self.writers.append(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self.server.wait_closed()


def test_a_session_opening_as_the_drain_begins_is_ended_and_its_row_closed(
    tmp_path: Path, shop: PgDatabase
) -> None:
    """decide() passed before the drain; the session row opened; the upstream login was still
    on its way when the drain found no live session and the stop began. The session must not
    start relaying after the stop ended the door's sessions: it is refused as every login is
    during a drain, its row closed as `refused` with that line (not left open for the next
    start to find)."""
    b = Bastion(tmp_path / "bastion", UNMASKED, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.start()
    server = b.server
    assert server is not None

    async def race() -> BaseException | None:
        relay = SlowRelay(shop)
        await relay.start()
        try:
            return await opening(relay)
        finally:
            await relay.close()

    async def opening(relay: SlowRelay) -> BaseException | None:
        b.add_pg_target("shop", replace(shop, port=relay.port))
        b.grant("alice", "shop")
        connecting = asyncio.ensure_future(
            asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD), timeout=60)
        )
        await asyncio.wait_for(relay.arrived.wait(), 20)  # the row is open, upstream waits
        b._loop.call_soon_threadsafe(server.lifecycle.terminate)
        await until_async(server._stopping.is_set, "the drain to end (nothing was live)")
        stopping = asyncio.ensure_future(asyncio.to_thread(b.call, server.stop(), 60))
        await until_async(lambda: not server._tasks, "the stop to reach the doors")
        relay.go.set()
        outcome: BaseException | None = None
        try:
            conn = await connecting
            with contextlib.suppress(*ENDED):
                for _ in range(200):  # a relaying session answers; an ended one does not
                    await conn.fetchval("SELECT 1")
                    await asyncio.sleep(0.05)
                outcome = AssertionError("the session relayed after the stop")
            conn.terminate()
        except ENDED as exc:
            outcome = exc
        await stopping
        b.server = None
        return outcome

    try:
        outcome = asyncio.run(race())
        assert not isinstance(outcome, AssertionError), outcome
        [session] = b.store.sessions()
        assert (session.state, session.end_reason) == ("refused", STOPPING_REFUSAL)
    finally:
        b.stop()


def test_a_rotated_certificate_is_the_one_forwarded_cancels_expect_of_peers(
    tmp_path: Path,
) -> None:
    """Nodes forward cancels to each other inside TLS, pinning their own (shared) certificate.
    After a rotation every node reloads: each must now expect the new certificate of its
    peers, or every forwarded cancel is refused ("another certificate") until a restart."""
    b = Bastion(tmp_path / "bastion", UNMASKED, postgres=True)
    b.start()
    try:
        assert b.server is not None
        [door] = [d for d in b.server.doors if isinstance(d, PgDoor)]
        fresh = make_tls(tmp_path / "rotated")
        shutil.copyfile(fresh.server_cert, b.config.paths.tls_cert)
        shutil.copyfile(fresh.server_key, b.config.paths.tls_key)
        assert b.call(b.server.lifecycle.reload()).startswith("reloaded: ")
        served = served_certificate(b.pg_port)  # what a peer's forwarded cancel is shown
        assert served == ssl.PEM_cert_to_DER_cert(fresh.server_cert.read_text())
        assert door.routes.pin == served
    finally:
        b.stop()


async def _reset_after_startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A database that drops the bastion's login half-way: a TCP reset, no error message."""
    await reader.read(1024)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_a_database_that_resets_the_login_leaves_no_open_row(
    tmp_path: Path, shop: PgDatabase
) -> None:
    """The session row is written before the upstream login; a login cut by a reset (not an
    error message) must close that row and forget the session's config, as any other failed
    login does: a row left open is a live session on the console until the next restart."""
    b = Bastion(tmp_path / "bastion", UNMASKED, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.start()

    async def attempt() -> None:
        server = await asyncio.start_server(_reset_after_startup, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            b.add_pg_target("shop", replace(shop, port=port))
            b.grant("alice", "shop")
            with pytest.raises((asyncpg.PostgresError, OSError)):
                await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        finally:
            server.close()
            await server.wait_closed()

    try:
        asyncio.run(attempt())
        [session] = b.store.sessions()
        assert session.state == "upstream_failed", session
        assert not b.core.started_with
    finally:
        b.stop()


def test_the_chained_digest_is_of_the_configuration_applied(tmp_path: Path) -> None:
    """`config.reloaded` names the SHA-256 of the file read, so the weekly review can tell
    which configuration ran. An admin who rewrites the file while the node reloads must not
    get one configuration applied and another's digest chained."""
    b = Bastion(tmp_path / "bastion")
    path = b.home / "bastion.toml"
    text = path.read_text(encoding="utf-8")
    versions = {n: text + f"\n[grants]\nmin_reason_length = {n}\n" for n in (11, 12)}
    by_digest = {hashlib.sha256(v.encode()).hexdigest(): n for n, v in versions.items()}
    path.write_text(versions[11], encoding="utf-8")
    b.start()
    done = threading.Event()

    def flip() -> None:  # the file is always whole (renamed over), never the same for long
        while not done.is_set():
            for n, version in versions.items():
                part = path.with_name(f".flip{n}")
                part.write_text(version, encoding="utf-8")
                os.replace(part, path)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        assert b.server is not None
        for _ in range(60):
            b.call(b.server.lifecycle.reload())
            chained = json.loads(b.events("config.reloaded")[-1].detail)["config_sha256"]
            assert by_digest[chained] == b.core.config.grants.min_reason_length
    finally:
        done.set()
        flipper.join(10)
        b.stop()


def console_certificate(port: int) -> bytes | None:
    """The DER certificate the console shows a new TLS handshake; None when none completes."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
                context.wrap_socket(sock) as tls:  # fmt: skip
            return tls.getpeercert(binary_form=True)
    except (ssl.SSLError, OSError):
        return None


def test_a_renewal_written_during_a_reload_never_applies_half(tmp_path: Path) -> None:
    """A renewal rewrites the certificate, then the key, while a reload runs. Whatever the
    reload read, it is applied whole or refused whole: the PostgreSQL door and the console
    serve the same certificate after it, and the console still completes handshakes (a
    mismatched pair loaded into its live context would break every one, /healthz too)."""
    b = Bastion(tmp_path / "bastion", postgres=True)
    web_port = free_port()
    config = b.home / "bastion.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[listeners.web]\nenabled = false",
                                   f'[listeners.web]\naddress = "127.0.0.1"\nport = {web_port}'),
                      encoding="utf-8")  # fmt: skip
    b.core.reconfigure(load_config(config))
    paths = b.config.paths
    pairs = [make_tls(tmp_path / name) for name in ("one", "two")]
    b.start()
    done = threading.Event()

    def renew() -> None:  # certificate first, then key, each renamed over the old
        while not done.is_set():
            for pair in pairs:
                for source, target in ((pair.server_cert, paths.tls_cert),
                                       (pair.server_key, paths.tls_key)):  # fmt: skip
                    part = target.with_name(f".{target.name}.new")
                    shutil.copyfile(source, part)
                    os.replace(part, target)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        assert b.server is not None
        for _ in range(60):
            b.call(b.server.lifecycle.reload())
            web = console_certificate(web_port)
            assert web is not None, "the console no longer completes a TLS handshake"
            assert web == served_certificate(b.pg_port)
    finally:
        done.set()
        renewer.join(10)
        b.stop()


def test_a_serve_file_linked_to_another_users_file_signals_nothing(tmp_path: Path) -> None:
    """Run as root, `bastion reload` signals a `bastion serve` owned by the serve file's
    owner. A serve file that is a symlink must not lend it the owner of what it points to:
    whoever can write the state directory would make root signal another user's process."""
    assert os.geteuid() == 0, "the suite runs as root (scripts/test installs its packages)"
    config = tmp_path / "bastion.toml"
    config.write_text('[cluster]\nnode = "n1"\n', encoding="utf-8")
    nobody = 65534
    argv = ["/bin/sh", "-c", "sleep 60; :", "bastion", "serve"]  # looks like one, is none
    with subprocess.Popen(argv, user=nobody, cwd="/") as other:
        try:
            elsewhere = tmp_path / "theirs"
            elsewhere.mkdir()
            target = elsewhere / "state.json"
            target.write_text(json.dumps({"pid": other.pid}))
            os.chown(target, nobody, nobody)
            (tmp_path / "bastion-serve.n1.json").symlink_to(target)
            done = subprocess.run([sys.executable, "-m", "bastion", "--config", str(config),
                                   "reload"], capture_output=True, text=True, timeout=60,
                                  check=False)  # fmt: skip
            assert other.poll() is None  # never sent SIGHUP (it would have ended)
            assert done.returncode == Exit.NOT_FOUND, done.stderr
        finally:
            other.kill()


def test_a_reload_never_extends_a_live_console_sign_in(tmp_path: Path) -> None:
    """A console sign-in is a live session too: raising [web] session_lifetime by a reload
    applies to sign-ins that start after it; one signed in before still ends when its own
    lifetime (12h) is over, however busy (a stolen cookie ignores the browser's max-age)."""
    b = Bastion(tmp_path / "bastion")
    b.add_user("alice", password=PASSWORD)
    before = websessions.open_session(b.core, "alice", "127.0.0.1")
    config = b.home / "bastion.toml"
    config.write_text(config.read_text(encoding="utf-8")
                      + '\n[web]\nsession_lifetime = "30d"\n', encoding="utf-8")  # fmt: skip
    try:
        b.clock.advance(timedelta(seconds=1))
        b.core.reconfigure(load_config(config))
        b.clock.advance(timedelta(seconds=1))
        after = websessions.open_session(b.core, "alice", "127.0.0.1")
        for _ in range(40):  # busy (a request every 20 minutes), for 13 hours and more
            b.clock.advance(timedelta(minutes=20))
            assert websessions.current(b.core, after.token) is not None
            websessions.current(b.core, before.token)
        assert websessions.current(b.core, before.token) is None  # its own 12h are over
    finally:
        b.release()


def test_a_refused_reload_chains_no_secret_from_the_file(tmp_path: Path) -> None:
    """A reload refused for a mistyped anchor sink is logged and chained; the chain is kept
    for years and shipped to the SIEM, so the refusal must not carry the sink's secret URL."""
    secret = "T0KEN-5ecret-0123456789"
    b = Bastion(tmp_path / "bastion")
    b.start()
    try:
        assert b.server is not None
        config = b.home / "bastion.toml"
        text = config.read_text(encoding="utf-8")
        bad = f'anchors = ["webhoook:https://hooks.example.com/services/{secret}"]'
        config.write_text(text.replace("[sessions]", f"[audit]\n{bad}\n[sessions]", 1),
                          encoding="utf-8")  # fmt: skip
        line = b.call(b.server.lifecycle.reload())
        assert line.startswith("reload refused: ") and "audit.anchors" in line
        [event] = b.events("config.reload_refused")
        served = b.server.lifecycle.file.read_text(encoding="utf-8")
        for said in (line, event.detail, served):
            assert secret not in said
    finally:
        b.stop()
