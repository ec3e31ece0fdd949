"""The console's security properties over plain HTTP(S): TLS, cookie flags, session fixation,
headers, CSRF, idle and absolute lifetimes, sign-out, the role allow-list and the audit trail."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from bastion.config import Listener
from bastion.console import websessions
from bastion.web import NoCertificate, WebDoor
from bastion.web.app import build_app
from bastion.web.routes import ANYONE, ROUTES_KEY, UndeclaredRoute
from bastion.web.websession import COOKIE
from tests.web.conftest import PASSWORDS, Console, detail, set_cookie_headers

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL

PAGES = ("/access", "/unmask", "/sessions", "/ticket")


async def test_the_console_speaks_tls_with_the_certificate_from_init(console: Console) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", console.web_port, ssl=console.ssl,
                                                   server_hostname="127.0.0.1")  # fmt: skip
    peer = writer.get_extra_info("peercert")
    assert peer is not None  # verified against the bastion's own CA
    writer.close()
    await writer.wait_closed()
    async with aiohttp.ClientSession() as plain:  # no TLS: no answer at all
        with pytest.raises(aiohttp.ClientError):
            await plain.get(f"http://127.0.0.1:{console.web_port}/signin")


async def test_without_a_certificate_only_loopback_is_served(console: Console,
                                                             tmp_path: Path) -> None:  # fmt: skip
    console.core.config.paths.tls_cert.rename(tmp_path / "moved.pem")
    door = WebDoor(Listener(True, "0.0.0.0", port=0), console.core)  # noqa: S104
    with pytest.raises(NoCertificate, match="only over TLS"):
        await door.start()
    await door.stop()


async def test_sign_in_sets_a_fresh_strict_cookie(console: Console) -> None:
    async with console.http() as http:
        planted = "attacker-chosen-session-value"
        http.cookie_jar.update_cookies({COOKIE: planted}, response_url=URL(console.url))
        async with http.get("/signin") as page:
            pre = SimpleCookie(set_cookie_headers(page)[0])
            nonce = next(iter(pre.values())).value
        form = {"nonce": nonce, "username": "alice", "password": PASSWORDS["alice"],
                "code": console.code("alice")}  # fmt: skip
        async with http.post("/signin", data=form, allow_redirects=False) as done:
            assert done.status == 303 and done.headers["Location"] == "/access"
            headers = [h for h in set_cookie_headers(done) if h.startswith(COOKIE + "=")]
        assert len(headers) == 1
        cookie = SimpleCookie(headers[0])[COOKIE]
        assert cookie.value not in (planted, nonce) and len(cookie.value) >= 40
        assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict"
        assert cookie["path"] == "/" and not cookie["domain"]
        first = console.cookie(http)
        await console.sign_in(http, "alice")  # signing in again: a new cookie, the old one ends
        second = console.cookie(http)
        assert second != first
    async with console.http() as other:
        other.cookie_jar.update_cookies({COOKIE: first})
        async with other.get("/api/v1/me") as r:
            assert r.status == 401
    signed_in = console.events("web.signed_in")
    assert len(signed_in) == 2 and signed_in[0].actor == "alice"
    assert detail(signed_in[0])["door"] == "web"
    ended = console.events("web.signed_out")
    assert [detail(e)["reason"] for e in ended] == ["replaced by a new sign-in"]
    oks = [detail(e)["via"] for e in console.events("auth.totp_ok")]
    assert oks and all(via.startswith("web:127.0.0.1") for via in oks)


async def test_every_answer_carries_the_security_headers(console: Console) -> None:
    async with console.http() as http:
        await console.sign_in(http, "alice")
        for path in ("/signin", *PAGES, "/admin/users", "/no/such/page", "/api/v1/me",
                     "/api/v1/admin/users", "/static/console.css"):  # fmt: skip
            async with http.get(path, allow_redirects=False) as r:
                csp = r.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
                assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
                assert r.headers["Referrer-Policy"] == "no-referrer"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["X-Frame-Options"] == "DENY"
                assert "Strict-Transport-Security" in r.headers
                if r.content_type == "text/html":
                    assert "<script" not in await r.text() and " style=" not in await r.text()


async def test_writes_without_the_csrf_token_are_refused(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        form = {"target": "web-1", "for": "1h", "reason": "needs the csrf token"}
        for sent in ({}, {"csrf": "wrong"}, {"csrf": ""}):
            async with http.post("/access/request", data={**form, **sent}) as r:
                assert r.status == 403 and "no valid CSRF token" in await r.text()
        async with http.post("/api/v1/requests", json=form) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        async with http.post("/signout") as r:  # sign-out too: no forced sign-out
            assert r.status == 403
        assert console.store.requests() == []
        async with http.post("/api/v1/requests", json=form, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 201
        async with http.post("/access/request", data={**form, "csrf": csrf,
                                                      "target": "orders"}) as r:  # fmt: skip
            assert r.status == 200 and "request" in await r.text()
    assert len(console.store.requests()) == 2


async def test_idle_and_absolute_lifetimes_on_the_clock(console: Console) -> None:
    policy = console.core.config.web
    async with console.http() as http:
        await console.sign_in(http, "alice")
        console.clock.advance(policy.idle_timeout - timedelta(seconds=1))
        async with http.get("/api/v1/me") as r:
            assert r.status == 200  # in use: the idle time starts again
        console.clock.advance(policy.idle_timeout - timedelta(seconds=1))
        async with http.get("/api/v1/me") as r:
            assert r.status == 200
        console.clock.advance(policy.idle_timeout)
        async with http.get("/api/v1/me") as r:
            assert r.status == 401
        await console.sign_in(http, "alice")
        steps = int(policy.session_lifetime / (policy.idle_timeout / 2)) + 1
        statuses = []
        for _ in range(steps):
            console.clock.advance(policy.idle_timeout / 2)
            async with http.get("/api/v1/me") as r:
                statuses.append(r.status)
        assert statuses[-1] == 401 and statuses[:-2] == [200] * (steps - 2)
    reasons = [detail(e)["reason"] for e in console.events("web.signed_out")]
    assert reasons == ["idle", "lifetime over"]


async def test_a_signed_out_cookie_no_longer_works(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        kept = console.cookie(http)
        async with http.post("/signout", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/signin"
    async with console.http() as replay:
        replay.cookie_jar.update_cookies({COOKIE: kept})
        async with replay.get("/api/v1/me") as r:
            assert r.status == 401
        async with replay.get("/sessions", allow_redirects=False) as r:
            assert r.status == 303
    [event] = console.events("web.signed_out")
    assert event.actor == "alice" and detail(event)["reason"] == "signed out"


async def test_a_disabled_person_is_signed_out_at_the_next_request(console: Console) -> None:
    async with console.http() as http:
        await console.sign_in(http, "alice")
        await console.core.run(console.store.disable_user, "alice", "ada", "left the company")
        async with http.get("/api/v1/me") as r:
            assert r.status == 401


async def test_roles_are_an_allow_list_on_every_route(console: Console) -> None:
    async with console.http() as anonymous:
        for path in PAGES:
            async with anonymous.get(path, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/signin"
        async with anonymous.get("/api/v1/access") as r:
            assert r.status == 401
    for user, admin_status in (("alice", 403), ("rita", 403), ("ada", 200)):
        async with console.http() as http:
            await console.sign_in(http, user)
            async with http.get("/admin/users") as r:
                assert r.status == admin_status, user
                if admin_status == 403:
                    assert "your role" in await r.text()
            async with http.get("/api/v1/admin/users") as r:
                assert r.status == admin_status, user
            for path in PAGES:
                async with http.get(path) as r:
                    assert r.status == 200, (user, path)
    routes = build_app(console.core).get(ROUTES_KEY)
    assert routes is not None
    for (method, path), declared in routes.declared.items():
        assert declared.public or declared.roles, (method, path)
        if path.startswith("/admin") or path.startswith("/api/v1/admin"):
            assert declared.roles == {"admin"}


async def test_a_route_without_declared_roles_cannot_exist(console: Console) -> None:
    app = build_app(console.core)

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="secret")

    with pytest.raises(UndeclaredRoute):
        app[ROUTES_KEY].add("GET", "/sneaky", sneaky, (), summary="no roles, not public")
    with pytest.raises(UndeclaredRoute):
        app[ROUTES_KEY].add("GET", "/sneaky", sneaky, ANYONE, public=True, summary="both")
    app.router.add_get("/sneaky", sneaky)  # straight into the router, around the list
    server = TestServer(app)
    with pytest.raises(UndeclaredRoute, match="GET /sneaky has no declared roles"):
        await server.start_server()
    await server.close()


async def test_the_api_is_described_by_its_openapi_document(console: Console) -> None:
    async with console.http() as http, http.get("/api/v1/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "post" in paths["/api/v1/requests"] and "get" in paths["/api/v1/access"]
    assert paths["/api/v1/admin/users"]["get"]["x-roles"] == ["admin"]
    body = paths["/api/v1/requests"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["additionalProperties"] is False
    routes = build_app(console.core)[ROUTES_KEY]
    api = {(m.lower(), p) for (m, p), d in routes.declared.items() if d.api}
    listed = {(m, p) for p, ops in paths.items() for m in ops}
    assert listed == api - {("get", "/api/v1/openapi.json")}


async def test_no_secret_reaches_the_audit_trail(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        cookie = console.cookie(http)
        wrong = {"username": "alice", "password": "a-wrong-password-1", "code": "654321"}
        async with http.post("/api/v1/signin", json=wrong) as r:
            assert r.status == 401
    trail = "\n".join(f"{e.actor} {e.subject} {e.detail}" for e in console.store.events())
    for secret in (PASSWORDS["alice"], "a-wrong-password-1", cookie, csrf,
                   console.seeds["alice"]):  # fmt: skip
        assert secret not in trail
    stored = (await console.core.run(websessions.listed, console.core, "alice"))[0]
    assert stored.csrf_token == csrf and cookie not in str(stored)  # only the cookie's hash
