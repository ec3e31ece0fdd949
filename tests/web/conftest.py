"""A real bastion serving the web console over TLS (and the SSH door), on loopback, for the
console's tests: people of each role, a target of each kind, and a clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from bastion.audit import ChainKey, Store
from bastion.audit.chain import ChainedEvent
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity import totp
from bastion.identity.sealing import SecretBox
from bastion.pki import make_ssh_host_key, make_tls
from bastion.server import Server
from bastion.web.websession import COOKIE
from tests import doorstore
from tests.realssh import free_port

PASSWORDS = {"alice": "alice-long-passphrase-1", "bob": "bob-long-passphrase-22",
             "ada": "ada-admin-passphrase-333", "rita": "rita-reviewer-phrase-4444"}  # fmt: skip
ROLES = {"alice": "engineer", "bob": "engineer", "ada": "admin", "rita": "reviewer"}
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
NONCE_RE = re.compile(r'name="nonce" value="([^"]+)"')


@dataclass
class Console:
    """The bastion, its people's TOTP seeds, and how to reach its console."""

    home: Path
    clock: FakeClock
    store: Store
    core: Core
    server: Server
    ssl: ssl.SSLContext
    seeds: dict[str, str] = field(default_factory=dict)

    @property
    def web_port(self) -> int:
        return next(d.port for d in self.server.doors if d.name == "web")

    @property
    def ssh_port(self) -> int:
        return next(d.port for d in self.server.doors if d.name == "ssh")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}"

    def code(self, user: str) -> str:
        """A fresh TOTP code: the clock moves on one step first."""
        self.clock.advance(totp.PERIOD)
        return totp.code_for_step(self.seeds[user], totp.step_at(self.clock.now()))

    def http(self) -> aiohttp.ClientSession:
        """A client that trusts the bastion's CA and keeps cookies for 127.0.0.1."""
        connector = aiohttp.TCPConnector(ssl=self.ssl)
        jar = aiohttp.CookieJar(unsafe=True)
        return aiohttp.ClientSession(self.url, connector=connector, cookie_jar=jar)

    def events(self, kind: str) -> list[ChainedEvent]:
        return [e for e in self.store.events() if e.kind == kind]

    async def sign_in(self, http: aiohttp.ClientSession, user: str) -> str:
        """Sign in through the form as a browser does; returns the CSRF token of the page."""
        async with http.get("/signin") as page:
            nonce = NONCE_RE.search(await page.text())
        assert nonce is not None
        form = {"nonce": nonce.group(1), "username": user, "password": PASSWORDS[user],
                "code": self.code(user)}  # fmt: skip
        async with http.post("/signin", data=form) as done:
            assert done.status == 200 and done.url.path == "/access", await done.text()
            found = CSRF_RE.search(await done.text())
        assert found is not None
        return found.group(1)

    def cookie(self, http: aiohttp.ClientSession) -> str:
        return next(c.value for c in http.cookie_jar if c.key == COOKIE)


CONFIG = """\
[listeners.ssh]
port = {ssh}
[listeners.postgres]
enabled = false
port = {pg}
[listeners.web]
port = {web}
[targets.orders.masking]
subject_keys = ["public.customers.id"]
"""


def _enrol(core: Core, seeds: dict[str, str]) -> None:
    for name, password in PASSWORDS.items():
        enrolment = core.identity.enrol(name, ROLES[name], password, "test")
        query = urllib.parse.urlparse(enrolment.uri).query
        seeds[name] = urllib.parse.parse_qs(query)["secret"][0]


def _targets(core: Core, box: SecretBox) -> None:
    """web-1 (SSH) and orders (a database); the tests never connect to either."""
    for name, kind, port in (("web-1", "ssh", 1), ("orders", "postgres", 2)):
        core.store.add_target(name=name, kind=kind, host="127.0.0.1", port=port,
                              login="svc", database=name if kind == "postgres" else None,
                              secret_sealed=box.seal(b"unused", context=f"target:{name}"),
                              actor="test")  # fmt: skip


@contextlib.asynccontextmanager
async def running(home: Path, *, postgres: bool = False,
                  before: Callable[[Core, SecretBox], None] | None = None, extra: str = "",
                  ) -> AsyncIterator[Console]:  # fmt: skip
    """A bastion in `home` serving the console (and SSH, and the database door if asked)."""
    home.mkdir()
    text = CONFIG.format(ssh=free_port(), pg=free_port(), web=free_port())
    text = text.replace("enabled = false", f"enabled = {str(postgres).lower()}") + extra
    (home / "bastion.toml").write_text(text, encoding="utf-8")
    config = load_config(home / "bastion.toml")
    where = doorstore.current().place(home, config.paths.store)
    if isinstance(where, PgLocation):  # named in bastion.toml, as for the CLI
        text = doorstore.StorePlaces.configure(text, where, home)
        (home / "bastion.toml").write_text(text, encoding="utf-8")
        config = load_config(home / "bastion.toml")
    SecretBox.create_key_file(config.paths.secrets_key)
    make_ssh_host_key(config.paths.ssh_host_key)
    tls = make_tls(config.paths.tls_cert.parent)
    clock = FakeClock(datetime.now(UTC))
    box = SecretBox.load(config.paths.secrets_key)
    seeds: dict[str, str] = {}

    def made() -> tuple[Store, Core]:  # off the loop: the store's calls block
        store = Store.create(where, clock, ChainKey.of(box))
        core = Core(config, store, box, clock)
        _enrol(core, seeds)
        (before or _targets)(core, box)
        return store, core

    store, core = await asyncio.to_thread(made)
    server = Server(core)
    await server.start()
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    off_loop = doorstore.OffLoop(store)
    try:
        yield Console(home, clock, cast(Store, off_loop), core, server, context, seeds)
    finally:
        await server.stop()
        off_loop.shutdown()
        await asyncio.to_thread(core.shutdown)
        await asyncio.to_thread(store.close)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with running(tmp_path / "bastion") as found:
        yield found


def detail(event: ChainedEvent) -> dict[str, Any]:
    found = json.loads(event.detail) if isinstance(event.detail, str) else event.detail
    return dict(found or {})


def set_cookie_headers(response: Any) -> list[str]:
    return list(response.headers.getall("Set-Cookie", []))


@pytest.fixture
async def reviewed(tmp_path: Path) -> AsyncIterator[Console]:
    """A console over the review world: a week of sessions, findings and people."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports this module)

    async with running(tmp_path / "bastion", before=reviewed_world) as found:
        yield found


async def signed_in(console: Console, user: str) -> tuple[aiohttp.ClientSession, str]:
    """A client of the console signed in as `user`, and its CSRF token."""
    http = console.http()
    return http, await console.sign_in(http, user)
