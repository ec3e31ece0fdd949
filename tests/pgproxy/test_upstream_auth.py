"""The bastion logs in to a target only by the methods the target allows (SCRAM-SHA-256 unless
told otherwise), and never gives the service role's password to a server that has not proven
itself: a real PostgreSQL per pg_hba method, and a hostile fake server on raw sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from bastion.config import load_config
from bastion.errors import Exit
from bastion.pgproxy import upstream
from bastion.pgproxy.door import PgDoor
from tests import test_cli
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.realpg import PgCluster, PgDatabase, psycopg_connect, random_password, unique_name

pristine = test_cli.pristine  # the CLI tests' fixtures: one `bastion init`, copied per test
bst = test_cli.bst
SECRET = "s3rvice-r0le-secret-Zq8"
Script = Callable[["Fake"], Awaitable[None]]


def auth(code: int, data: bytes = b"") -> bytes:
    """An Authentication message ('R') as a server sends it."""
    return b"R" + struct.pack("!II", 8 + len(data), code) + data


READY = b"K" + struct.pack("!IIi", 12, 1234, 5678) + b"Z" + struct.pack("!I", 5) + b"I"


class Fake:
    """One connection to the hostile server: it reads what the bastion sends, keeps every byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = bytearray()
        self.startup_len = 0

    async def startup(self) -> None:
        head = await self.reader.readexactly(4)
        body = await self.reader.readexactly(struct.unpack("!I", head)[0] - 4)
        self.received += head + body
        self.startup_len = len(self.received)

    async def message(self) -> tuple[bytes, bytes]:
        head = await self.reader.readexactly(5)
        body = await self.reader.readexactly(struct.unpack("!I", head[1:])[0] - 4)
        self.received += head + body
        return head[:1], body

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def scram_first(self) -> str:
        """Offer SCRAM, read the client-first message, answer server-first; the nonce."""
        self.send(auth(10, b"SCRAM-SHA-256\0\0"))
        kind, body = await self.message()
        assert kind == b"p"
        data = body[body.index(b"\0") + 5 :].decode()
        nonce = dict(p.split("=", 1) for p in data.split(",")[2:])["r"]
        salt = base64.b64encode(b"0123456789abcdef").decode()
        self.send(auth(11, f"r={nonce}srv,s={salt},i=4096".encode()))
        return nonce

    async def drain_rest(self) -> None:
        """Keep reading until the bastion hangs up, so nothing it sends is missed."""
        try:
            while data := await self.reader.read(65536):
                self.received += data
        except ConnectionError:
            pass


async def ask_cleartext(fake: Fake) -> None:
    fake.send(auth(3))


async def ask_md5(fake: Fake) -> None:
    fake.send(auth(5, b"salt"))


async def trust_without_asking(fake: Fake) -> None:
    fake.send(auth(0) + READY)


async def ok_after_client_first(fake: Fake) -> None:
    fake.send(auth(10, b"SCRAM-SHA-256\0\0"))
    await fake.message()
    fake.send(auth(0) + READY)


async def ok_after_client_final(fake: Fake) -> None:
    await fake.scram_first()
    await fake.message()  # the client's proof
    fake.send(auth(0) + READY)


async def wrong_server_signature(fake: Fake) -> None:
    await fake.scram_first()
    await fake.message()
    wrong = base64.b64encode(b"\x01" * 32).decode()
    fake.send(auth(12, f"v={wrong}".encode()) + auth(0) + READY)


async def cleartext_after_scram(fake: Fake) -> None:
    await fake.scram_first()
    await fake.message()
    fake.send(auth(3))


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[Script], Awaitable[tuple[str, bytes]]]]:
    """Runs one login against a fake server playing `script`; (the refusal, the bytes it got
    after the start-up message)."""
    servers: list[asyncio.Server] = []

    async def attempt(script: Script) -> tuple[str, bytes]:
        fakes: list[Fake] = []
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            fake = Fake(reader, writer)
            fakes.append(fake)
            try:
                await fake.startup()
                await script(fake)
                await fake.drain_rest()
            except asyncio.IncompleteReadError as exc:
                fake.received += exc.partial
            finally:
                writer.close()
                done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(upstream.UpstreamError) as refused:
            up = await upstream.connect("127.0.0.1", port, user="svc", password=SECRET,
                                        database="orders", params={})  # fmt: skip
            up.close()
        await asyncio.wait_for(done.wait(), 10)
        return refused.value.message, bytes(fakes[0].received[fakes[0].startup_len :])

    yield attempt
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (ask_cleartext, "cleartext password, which this target does not allow"),
        (ask_md5, "md5 password, which this target does not allow"),
        (trust_without_asking, "without authenticating"),
        (ok_after_client_first, "without proving it knows the password"),
        (ok_after_client_final, "without proving it knows the password"),
        (wrong_server_signature, "failed SCRAM server verification"),
        (cleartext_after_scram, "asked to authenticate twice"),
    ],
)
async def test_an_impostor_gets_no_password_and_no_session(
    hostile: Callable[[Script], Awaitable[tuple[str, bytes]]], script: Script, expected: str
) -> None:
    message, received = await hostile(script)
    assert expected in message
    assert SECRET.encode() not in received
    if script in (ask_cleartext, ask_md5, trust_without_asking):
        assert received == b""  # refused before answering anything


def _role(cluster: PgCluster, method: str) -> PgDatabase:
    """A login role whose TCP logins use `method` (an md5 verifier stored for md5)."""
    role, password = unique_name(method), random_password()
    cluster.create_role(role, password)
    if method == "md5":
        cluster.set_password(role, password, encryption="md5")
    cluster.set_role_auth(role, method)
    return PgDatabase(cluster.host, cluster.port, "postgres", role, password, cluster)


async def _login(db: PgDatabase, methods: tuple[str, ...] | None) -> upstream.Upstream:
    if methods is None:  # the default: what a target without upstream_auth gets
        return await upstream.connect(db.host, db.port, user=db.user, password=db.password,
                                      database=db.database, params={})  # fmt: skip
    return await upstream.connect(db.host, db.port, user=db.user, password=db.password,
                                  database=db.database, params={}, auth=methods)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "shown"),
    [("md5", "an md5 password"), ("password", "a cleartext password"),
     ("trust", "without authenticating")],
)  # fmt: skip
async def test_a_real_server_asking_less_than_scram_is_refused_unless_the_target_allows_it(
    pg_private: PgCluster, method: str, shown: str
) -> None:
    db = _role(pg_private, method)
    with pytest.raises(upstream.UpstreamError, match=shown):
        await _login(db, None)
    up = await _login(db, ("scram-sha-256", method))
    try:
        assert await upstream.simple_rows(up, "SELECT current_user AS me") == [{"me": db.user}]
    finally:
        up.close()


async def test_scram_checks_the_real_servers_signature(pg_private: PgCluster) -> None:
    db = _role(pg_private, "scram-sha-256")
    start = pg_private.log_offset()
    up = await _login(db, None)
    up.close()
    assert "method=scram-sha-256" in pg_private.log_text(start)
    with pytest.raises(upstream.UpstreamError, match="refused the bastion's service role"):
        await _login(db.replace(password="not-the-password"), None)


def test_the_door_refuses_an_md5_target_by_default_and_says_why(
    tmp_path: Path, pg_private: PgCluster
) -> None:
    db = pg_private.fresh_orders()
    pg_private.set_password(db.user, db.password, encryption="md5")
    pg_private.set_role_auth(db.user, "md5")
    b = alice_on(tmp_path / "bastion", db).start()
    try:
        with pytest.raises(psycopg.OperationalError, match="does not allow"):
            psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD))
        [failed] = b.events("session.upstream_failed")
        assert "asked for method 5" in str(failed.detail)
    finally:
        b.stop()


def test_a_configured_ca_means_verify_full_and_weak_targets_are_named(tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text('[targets.a]\ntls_ca = "ca.pem"\n[targets.b]\nupstream_auth = ["md5"]\n'
                      '[targets.c]\ntls = "require"\ntls_ca = "ca.pem"\n')  # fmt: skip
    loaded = load_config(config)
    assert loaded.target_policy("a").tls == "verify-full"
    assert loaded.target_policy("a").database_warnings() == []
    assert loaded.target_policy("c").tls == "require"  # said explicitly: kept, but warned
    assert "certificate" in loaded.target_policy("c").database_warnings()[0]
    weak = loaded.target_policy("b").database_warnings()
    assert "no TLS" in weak[0] and "md5" in weak[1]
    assert loaded.target_policy("zz").upstream_auth == ("scram-sha-256",)


def test_a_failed_upstream_login_leaves_no_cancel_key(tmp_path: Path, pg: PgDatabase) -> None:
    """The door hands out a cancel key before it logs in upstream; a login that fails there
    must take it back, or every failure leaves a key (and its session) in the map for good."""
    b = alice_on(tmp_path / "bastion", pg.replace(password="not-the-service-password")).start()
    try:
        assert b.server is not None
        door = next(d for d in b.server.doors if isinstance(d, PgDoor))
        for _ in range(3):
            with pytest.raises(psycopg.OperationalError, match="refused the bastion"):
                psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD))
        assert len(b.events("session.upstream_failed")) == 3
        assert door.by_key == {} and door.live == {}
    finally:
        b.stop()


def test_target_show_and_list_warn_about_a_database_without_tls(bst: test_cli.Bastion) -> None:
    bst.json("target", "add-postgres", "reports", "--host", "127.0.0.1", "--database",
             "reports", "--user", "svc", "--password-stdin", input="pw\n")  # fmt: skip
    shown = bst.run("target", "show", "reports", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["tls"] == "off" and data["upstream_auth"] == ["scram-sha-256"]
    assert "warning: reports: no TLS to the database" in shown.stderr
    listed = bst.run("target", "list")
    assert listed.returncode == 0 and "warning: reports: no TLS" in listed.stderr


def test_serve_warns_at_start_up_about_a_database_without_tls(
    tmp_path: Path, pg: PgDatabase
) -> None:
    with capture_logs() as logs:
        b = alice_on(tmp_path / "bastion", pg).start()
        b.stop()
    warned = [e for e in logs if e["event"] == "target.weak_transport"]
    assert [e["target"] for e in warned] == ["orders-prod"]
    assert warned[0]["log_level"] == "warning" and "no TLS" in warned[0]["warning"]


def test_masking_show_logs_in_as_the_door_does(
    bst: test_cli.Bastion, pg_private: PgCluster
) -> None:
    """The CLI reads a target's catalog with the service role's password, and harden logs in
    with an admin's: the same allow-list applies, so a server asking for md5 gets neither."""
    db = _role(pg_private, "md5")
    bst.json("target", "add-postgres", "md5db", "--host", db.host, "--port", str(db.port),
             "--database", db.database, "--user", db.user, "--password-stdin",
             input=db.password + "\n")  # fmt: skip
    refused = bst.run("masking", "show", "md5db")
    test_cli.assert_error(refused, Exit.UNREACHABLE, "md5 password, which this target does not")
    harden = bst.run("target", "harden", "md5db", "--admin-user", db.user, "--password-stdin",
                     "--dry-run", input=db.password + "\n")  # fmt: skip
    test_cli.assert_error(harden, Exit.UNREACHABLE, "md5 password, which this target does not")
