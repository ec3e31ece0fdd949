"""The engineer's pages and API calls do what the CLI and SSH self-service do: unmask
requests with their consent document's hash, tickets after a fresh code, time left on grants;
and a flood of failed sign-ins from one address is turned away."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
from datetime import timedelta
from pathlib import Path

import aiohttp

from bastion.core import Core
from bastion.identity.sealing import SecretBox
from tests.realpg import PgDatabase
from tests.web.conftest import PASSWORDS, Console, detail, running


async def test_an_unmask_request_keeps_the_hash_of_its_consent_document(console: Console) -> None:
    document = b"%PDF-1.4 signed consent of customer 4711 to look at their record\n"
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        form = aiohttp.FormData()
        for name, value in (("csrf", csrf), ("target", "orders"), ("columns", "customers.email"),
                            ("subject", "customers.id=4711"),
                            ("reason", "customer asked for a copy of their data"),
                            ("consent_ref", "SUP-1234"), ("for", "")):  # fmt: skip
            form.add_field(name, value)
        form.add_field("document", document, filename="consent.pdf",
                       content_type="application/pdf")  # fmt: skip
        async with http.post("/unmask", data=form) as r:
            page = await r.text()
            assert r.status == 200 and "unmask request 1 filed" in page, page
        async with http.get("/api/v1/unmask-requests") as r:
            [mine] = await r.json()
    assert mine["user"] == mine["requested_by"] == "alice" and mine["state"] == "pending"
    assert mine["subject"] == "customers.id=4711" and mine["consent_ref"] == "SUP-1234"
    assert mine["consent_sha256"] == hashlib.sha256(document).hexdigest()


async def test_the_api_refuses_what_the_rules_refuse_in_one_line(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        headers = {"X-CSRF-Token": csrf}
        body = {"target": "orders", "columns": "customers.email", "subject": "users.id=1",
                "reason": "customer asked for a copy", "consent_ref": "SUP-1"}  # fmt: skip
        async with http.post("/api/v1/unmask-requests", json=body, headers=headers) as r:
            assert r.status == 400 and "not a subject key" in (await r.json())["error"]
        body = {"target": "nowhere", "for": "1h", "reason": "no such target here"}
        async with http.post("/api/v1/requests", json=body, headers=headers) as r:
            assert r.status in (400, 404) and "nowhere" in (await r.json())["error"]
        async with http.post("/api/v1/requests", data="target=x", headers=headers) as r:
            assert r.status == 400 and "application/json" in (await r.json())["error"]
        body = {"target": "orders", "code": "000000"}
        async with http.post("/api/v1/tickets", json=body, headers=headers) as r:
            assert r.status == 403  # no grant: refused before the code is spent
    assert not [e for e in console.events("auth.totp_failed") if e.subject == "alice"]


async def test_a_ticket_after_a_fresh_code_with_its_psql_command(console: Console) -> None:
    console.core.access.grant(user="alice", target="orders", duration=timedelta(hours=2),
                              mode="read", reason="month-end report", actor="ada")  # fmt: skip
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        headers = {"X-CSRF-Token": csrf}
        async with http.get("/api/v1/access") as r:
            [grant] = await r.json()
        assert grant["target"] == "orders" and 7100 < grant["seconds_left"] <= 7200
        body = {"target": "orders", "code": console.code("alice")}
        async with http.post("/api/v1/tickets", json=body, headers=headers) as r:
            made = await r.json()
            assert r.status == 201, made
        async with http.post("/api/v1/tickets", json=body, headers=headers) as r:
            assert r.status == 403 and "used already" in (await r.json())["error"]
    token = made["ticket"]
    assert re.fullmatch(r"bt_[A-Za-z0-9_-]{32}", token)
    port = console.core.config.listeners.postgres.port
    assert made["psql"] == (
        f'psql "host=127.0.0.1 port={port} user=alice dbname=orders'
        f' sslmode=verify-full sslrootcert=bastion-ca.pem password={token}"'
    )
    [row] = console.store.tickets(user="alice")
    assert row.target == "orders"
    assert token not in str([e.detail for e in console.store.events()])  # never in the trail
    async with console.http() as http, http.get("/bastion-ca.pem") as r:
        assert r.status == 200
        assert await r.read() == console.core.config.paths.tls_ca.read_bytes()


async def test_an_address_that_fails_too_often_is_turned_away(console: Console) -> None:
    async with console.http() as http:
        statuses = []
        for n in range(11):
            body = {"username": f"guess{n}", "password": "not-the-password-1", "code": "1"}
            async with http.post("/api/v1/signin", json=body) as r:
                statuses.append(r.status)
        body = {"username": "alice", "password": PASSWORDS["alice"],
                "code": console.code("alice")}  # fmt: skip
        async with http.post("/api/v1/signin", json=body) as r:
            assert r.status == 429 and "too many failed sign-ins" in (await r.json())["error"]
    assert statuses == [401] * 10 + [429]
    [blocked] = console.events("auth.source_blocked")
    assert blocked.actor == "web:127.0.0.1" and detail(blocked)["source"] == "127.0.0.1"


async def test_the_psql_command_opens_a_session_through_the_database_door(
    tmp_path: Path, pg: PgDatabase
) -> None:
    """Pasted as it is shown (in a directory holding the CA from /bastion-ca.pem), the
    command reaches the real database through the bastion, verified, once."""

    def target(core: Core, box: SecretBox) -> None:
        sealed = box.seal(pg.password.encode(), context="target:orders")
        core.store.add_target(name="orders", kind="postgres", host=pg.host, port=pg.port,
                              login=pg.user, database=pg.database, secret_sealed=sealed,
                              actor="test")  # fmt: skip
        core.access.grant(user="alice", target="orders", duration=timedelta(hours=1),
                          mode="read", reason="month-end report", actor="ada")  # fmt: skip

    async with running(tmp_path / "bastion", postgres=True, before=target) as console:
        async with console.http() as http:
            csrf = await console.sign_in(http, "alice")
            body = {"target": "orders", "code": console.code("alice")}
            async with http.post("/api/v1/tickets", json=body,
                                 headers={"X-CSRF-Token": csrf}) as r:  # fmt: skip
                made = await r.json()
            async with http.get("/bastion-ca.pem") as r:
                (tmp_path / "bastion-ca.pem").write_bytes(await r.read())
        argv = [*shlex.split(made["psql"]), "-XAt", "-c", "select 'through the bastion'"]
        for expected in (0, 2):  # the ticket works once
            psql = await asyncio.create_subprocess_exec(
                *argv, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={"PATH": os.environ["PATH"]})  # fmt: skip
            out, err = await psql.communicate()
            assert psql.returncode == expected, err.decode()
            if expected == 0:
                assert out.decode().strip() == "through the bastion"
        [opened] = console.events("session.opened")
        assert opened.actor == "alice" and opened.subject == "orders"
