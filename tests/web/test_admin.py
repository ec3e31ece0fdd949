"""The admin's pages and API over HTTP: only admins reach them, every write needs its CSRF
token, decisions follow the two-person rule with the decider's own fresh TOTP code, a new
TOTP seed is shown once and lands in no log or stored row, a target's host key is pinned only
as confirmed, and disabling a person offboards them."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bastion.identity import totp
from bastion.web.app import build_app
from bastion.web.routes import ROUTES_KEY
from bastion.web.security import CSRF_REFUSED
from tests.realssh import Sshd
from tests.web.conftest import CSRF_RE, Console

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL

REASON = "deploy hotfix for INC-42"


def admin_routes(console: Console) -> list[tuple[str, str]]:
    routes = build_app(console.core)[ROUTES_KEY]
    found = sorted(key for key in routes.declared
                   if key[1].startswith(("/admin", "/api/v1/admin")))  # fmt: skip
    assert len(found) >= 30, found
    return found


async def api(http: aiohttp.ClientSession, csrf: str, path: str,
              body: dict[str, str]) -> tuple[int, Any]:  # fmt: skip
    async with http.post(f"/api/v1{path}", json=body, headers={"X-CSRF-Token": csrf}) as r:
        return r.status, await r.json()


def seed_of(uri: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]


async def test_an_engineer_or_reviewer_is_refused_on_every_admin_route(console: Console) -> None:
    routes = admin_routes(console)
    users_before = len(console.store.users())
    for user in ("alice", "rita"):
        async with console.http() as http:
            csrf = await console.sign_in(http, user)
            for method, path in routes:
                body = {"name": "eve", "role": "admin", "holder": user, "target": "web-1",
                        "reason": REASON, "for": "1h", "id": "1", "code": "000000"}  # fmt: skip
                kwargs: dict[str, Any] = {"headers": {"X-CSRF-Token": csrf}}
                if method == "POST":
                    kwargs["json" if path.startswith("/api/") else "data"] = (
                        body if path.startswith("/api/") else {**body, "csrf": csrf}
                    )
                async with http.request(method, path, **kwargs) as r:
                    assert r.status == 403, (user, method, path, r.status)
                    assert "your role" in await r.text()
    assert len(console.store.users()) == users_before
    assert console.store.grant_rows(target=None, group=None, live_at=None) == []


async def test_every_admin_write_needs_its_csrf_token(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        for method, path in admin_routes(console):
            if method != "POST":
                continue
            for headers in ({}, {"X-CSRF-Token": "forged-" + csrf[7:]}):
                if path.startswith("/api/"):
                    sent = http.post(path, json={"name": "eve", "role": "admin"},
                                     headers=headers)  # fmt: skip
                else:
                    token = headers.get("X-CSRF-Token", "")
                    sent = http.post(path, data={"name": "eve", "role": "admin", "csrf": token})
                async with sent as r:
                    assert r.status == 403, (path, headers)
                    assert CSRF_REFUSED in await r.text(), path
    assert console.store.find_user("eve") is None


async def test_a_new_user_is_enrolled_with_a_qr_code_shown_once_and_stored_nowhere(
    console: Console, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        form = {"csrf": csrf, "name": "carol", "role": "engineer",
                "password": "carol-long-passphrase-5"}  # fmt: skip
        async with http.post("/admin/users", data=form) as r:
            assert r.status == 200 and r.url.path == "/admin/users"
            assert r.headers["Cache-Control"] == "no-store"
            page = await r.text()
        image = re.search(r'<img src="(data:image/svg\+xml[^"]+)"[^>]*id="qr"', page)
        assert image is not None, page
        svg = urllib.parse.unquote(image.group(1).split(",", 1)[1])
        assert svg.startswith("<svg") and "<script" not in svg
        uri = re.search(r'id="otpauth">([^<]+)<', page)
        assert uri is not None
        seed = seed_of(uri.group(1).replace("&amp;", "&"))
        # the same enrolment through the API, for a reset: a new seed, shown once again
        status, reset = await api(http, csrf, "/admin/users/reset-totp", {"name": "carol"})
        assert status == 201 and reset["qr_svg"].startswith("data:image/svg+xml")
        new_seed = seed_of(reset["otpauth_uri"])
        assert new_seed != seed
    async with console.http() as carol:  # the seed shown works, and only the newest
        body = {"username": "carol", "password": form["password"],
                "code": totp.code_for_step(seed, totp.step_at(console.clock.now()))}  # fmt: skip
        async with carol.post("/api/v1/signin", json=body) as r:
            assert r.status == 401
        body["code"] = totp.code_for_step(new_seed, totp.step_at(console.clock.now()))
        async with carol.post("/api/v1/signin", json=body) as r:
            assert r.status == 200, await r.text()
    files = [p for p in console.home.rglob("*") if p.is_file()]
    for secret in (seed, new_seed):
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
        for event in console.store.events():
            assert secret not in f"{event.detail}", event.kind
        out, err = capfd.readouterr()
        assert secret not in out + err and secret not in caplog.text


async def test_an_admin_cannot_approve_their_own_request(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        status, mine = await api(http, csrf, "/requests",
                                 {"target": "web-1", "for": "1h", "reason": REASON})  # fmt: skip
        assert status == 201 and mine["state"] == "pending"
        number = str(mine["id"])
        status, refused = await api(http, csrf, "/admin/requests/approve",
                                    {"id": number, "code": console.code("ada")})  # fmt: skip
        assert status == 403 and "another admin" in refused["error"]
        form = {"csrf": csrf, "number": number, "code": console.code("ada")}
        async with http.post("/admin/requests/approve", data=form) as r:
            assert r.status == 400 and "another admin" in await r.text()
        async with http.get("/admin/requests") as r:
            assert "yours: another admin decides" in await r.text()
        status, made = await api(http, csrf, "/admin/users", {
            "name": "otto", "role": "admin", "password": "otto-admin-passphrase-6"})  # fmt: skip
        assert status == 201
    assert console.store.request(int(number)).state == "pending"
    assert console.store.grants(user="ada") == []
    console.seeds["otto"] = seed_of(made["otpauth_uri"])
    async with console.http() as http:  # a second admin, with their own code, may
        body = {"username": "otto", "password": "otto-admin-passphrase-6",
                "code": console.code("otto")}  # fmt: skip
        async with http.post("/api/v1/signin", json=body) as r:
            ocsrf = (await r.json())["csrf_token"]
        status, done = await api(http, ocsrf, "/admin/requests/approve",
                                 {"id": number, "code": console.code("otto")})  # fmt: skip
        assert status == 201 and done["state"] == "approved", done
    assert [g.target for g in console.store.grants(user="ada")] == ["web-1"]


async def test_a_decision_takes_the_deciders_own_fresh_code(console: Console) -> None:
    async with console.http() as alice:
        acsrf = await console.sign_in(alice, "alice")
        _, asked = await api(alice, acsrf, "/requests",
                             {"target": "web-1", "for": "2h", "reason": REASON})  # fmt: skip
        number = str(asked["id"])
        status, _ = await api(alice, acsrf, "/admin/requests/approve",
                              {"id": number, "code": console.code("alice")})  # fmt: skip
        assert status == 403
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        status, wrong = await api(http, csrf, "/admin/requests/approve",
                                  {"id": number, "code": console.code("alice")})  # fmt: skip
        assert status == 403, wrong  # alice's code is not ada's
        code = console.code("ada")
        status, done = await api(http, csrf, "/admin/requests/approve",
                                 {"id": number, "code": code, "for": "30m"})  # fmt: skip
        assert status == 201 and done["state"] == "approved", done
        denial = {"id": number, "code": code, "reason": "changed my mind"}
        status, again = await api(http, csrf, "/admin/requests/deny", denial)
        assert status == 403 and "used already" in again["error"]
        async with http.get("/api/v1/admin/grants") as r:
            [grant] = await r.json()
    assert grant["holder"] == "alice" and grant["target"] == "web-1"
    assert [e.actor for e in console.events("request.approved")] == ["ada"]


async def test_an_unmask_approval_names_the_consent_it_checked(console: Console) -> None:
    async with console.http() as alice:
        acsrf = await console.sign_in(alice, "alice")
        status, asked = await api(alice, acsrf, "/unmask-requests", {
            "target": "orders", "columns": "customers.email", "subject": "customers.id=4711",
            "reason": "customer asked for a copy of their data",
            "consent_ref": "SUP-1234"})  # fmt: skip
        assert status == 201, asked
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        async with http.get("/api/v1/admin/pending") as r:
            [waiting] = (await r.json())["unmask_requests"]
        assert waiting["id"] == asked["id"] and not waiting["yours"]
        number = str(asked["id"])
        status, refused = await api(http, csrf, "/admin/unmask-requests/approve",
                                    {"id": number, "code": console.code("ada"),
                                     "consent_ref": "SUP-9999"})  # fmt: skip
        assert status == 400 and "consent reference" in refused["error"]
        form = {"csrf": csrf, "number": number, "code": console.code("ada"),
                "consent_ref": "SUP-1234"}  # fmt: skip
        async with http.post("/admin/unmask-requests/approve", data=form) as r:
            assert r.status == 200 and f"unmask request {number} approved" in await r.text()
    assert console.store.unmask(asked["id"]).state == "approved"


async def test_grants_for_users_and_groups_listed_live_and_to_come_and_revoked(
    console: Console,
) -> None:
    console.store.add_group("oncall", "test")
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        status, now = await api(http, csrf, "/admin/grants", {
            "holder": "alice", "target": "web-1", "for": "2h", "reason": REASON,
            "ticket": "INC-42"})  # fmt: skip
        assert status == 201 and now["state"] == "active", now
        later = (console.clock.now().replace(microsecond=0).isoformat()
                 .replace("+00:00", "Z"))  # fmt: skip
        status, refused = await api(http, csrf, "/admin/grants", {
            "holder": "group:oncall", "target": "orders", "from": later, "until": later,
            "reason": REASON})  # fmt: skip
        assert status == 400 and "until" in refused["error"]
        form = {"csrf": csrf, "holder": "group:oncall", "target": "orders", "mode": "read",
                "for": "1h", "from": "2099-01-01T09:00Z", "reason": REASON}  # fmt: skip
        async with http.post("/admin/grants", data=form) as r:
            page = await r.text()
            assert r.status == 200 and "group:oncall may reach orders" in page, page
        async with http.get("/api/v1/admin/grants") as r:
            listed = await r.json()
        assert [(g["holder"], g["state"]) for g in listed] == [
            ("alice", "active"), ("group:oncall", "scheduled")]  # fmt: skip
        status, gone = await api(http, csrf, "/admin/grants/revoke", {"id": str(now["id"])})
        assert status == 201 and gone["state"] == "revoked"
        async with http.get("/api/v1/admin/grants") as r:
            assert [g["holder"] for g in await r.json()] == ["group:oncall"]


async def test_disable_offboards_and_unlock_and_no_self_disable(console: Console) -> None:
    async with console.http() as alice:
        await console.sign_in(alice, "alice")
        async with console.http() as http:
            csrf = await console.sign_in(http, "ada")
            status, _ = await api(http, csrf, "/admin/grants", {
                "holder": "alice", "target": "web-1", "for": "2h", "reason": REASON})  # fmt: skip
            assert status == 201
            status, refused = await api(http, csrf, "/admin/users/disable", {"name": "ada"})
            assert status == 403 and "yourself" in refused["error"]
            form = {"csrf": csrf, "name": "alice", "reason": "left the company"}
            async with http.post("/admin/users/disable", data=form) as r:
                page = await r.text()
                assert r.status == 200 and "alice disabled; 1 grant(s) revoked" in page, page
            status, done = await api(http, csrf, "/admin/users/unlock", {"name": "bob"})
            assert status == 201 and done["unlocked"]
            async with http.get("/api/v1/admin/users") as r:
                states = {u["name"]: u["state"] for u in await r.json()}
        assert states["alice"] == "disabled" and states["bob"] == "active"
        async with alice.get("/api/v1/me") as r:
            assert r.status == 401  # her web session ended too
    assert console.store.grants(user="alice", live_at=console.clock.now()) == []


async def test_an_ssh_target_is_pinned_only_with_the_fingerprint_confirmed(
    console: Console, sshd: Sshd
) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        body = {"name": "web-2", "host": sshd.host, "port": str(sshd.port), "login": sshd.login,
                "private_key": "not a key"}  # fmt: skip
        status, refused = await api(http, csrf, "/admin/targets/ssh", body)
        assert status == 400 and "private key" in refused["error"]
        body["private_key"] = Path(sshd.client_key_path).read_text(encoding="utf-8")
        form = {**body, "csrf": csrf}
        async with http.post("/admin/targets/ssh", data=form) as r:
            assert r.url.path == "/admin/targets/trust" and r.status == 200
            page = await r.text()
        assert sshd.host_key_fingerprint in page
        assert console.store.target("web-2").host_key is None
        guess = {"name": "web-2", "fingerprint": "SHA256:not-this-one"}
        status, wrong = await api(http, csrf, "/admin/targets/trust", guess)
        assert status == 403 and "not trusted" in wrong["error"]
        assert console.store.target("web-2").host_key is None
        token = CSRF_RE.search(page)
        assert token is not None
        confirm = {"csrf": token.group(1), "name": "web-2",
                   "fingerprint": sshd.host_key_fingerprint}  # fmt: skip
        async with http.post("/admin/targets/trust", data=confirm) as r:
            assert r.status == 200 and "pinned" in await r.text()
        async with http.get("/api/v1/admin/targets") as r:
            listed = {t["name"]: t for t in await r.json()}
        assert listed["web-2"]["host_key"] == sshd.host_key_pub.strip()
        assert "secret" not in str(listed)
        status, gone = await api(http, csrf, "/admin/targets/remove", {"name": "web-2"})
        assert status == 201 and gone["removed"]


async def test_a_postgres_target_keeps_its_password_sealed(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        form = {"csrf": csrf, "pg_name": "billing", "pg_host": "127.0.0.1", "pg_port": "5432",
                "pg_user": "svc_billing", "pg_database": "billing",
                "pg_password": "pg-target-secret-77"}  # fmt: skip
        async with http.post("/admin/targets/postgres", data=form) as r:
            assert r.status == 200 and "postgres target billing added" in await r.text()
        status, refused = await api(http, csrf, "/admin/targets/postgres", {
            "name": "b2", "host": "127.0.0.1", "port": "99999", "user": "svc",
            "database": "b", "password": "x"})  # fmt: skip
        assert status == 400 and "not a TCP port" in refused["error"]
    assert console.store.target("billing").database == "billing"
    for path in console.home.rglob("*"):
        if path.is_file():
            assert b"pg-target-secret-77" not in path.read_bytes(), path
