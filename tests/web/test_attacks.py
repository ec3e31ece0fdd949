"""The console against an attacker: an engineer naming someone else, a stolen cookie after
sign-out everywhere, a page of another site posting, a TOTP code replayed between the web
and SSH, and a stranger probing for user names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import aiohttp
import asyncssh

from bastion.access.requests import Requests
from tests.web.conftest import PASSWORDS, Console, detail


async def _json(http: aiohttp.ClientSession, method: str, path: str, csrf: str | None = None,
                body: object = None) -> tuple[int, Any]:  # fmt: skip
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    async with http.request(method, path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def _api_csrf(console: Console, http: aiohttp.ClientSession, user: str) -> str:
    status, me = await _json(http, "POST", "/api/v1/signin", body={
        "username": user, "password": PASSWORDS[user], "code": console.code(user)})  # fmt: skip
    assert status == 200, me
    return str(me["csrf_token"])


async def test_an_engineer_cannot_act_or_read_as_someone_else(console: Console) -> None:
    console.core.access.grant(user="bob", target="web-1", duration=timedelta(hours=1),
                              mode="read", reason="bob's own work", actor="ada")  # fmt: skip
    async with console.http() as http:
        csrf = await _api_csrf(console, http, "alice")
        body = {"user": "bob", "target": "web-1", "for": "1h", "reason": "forging bob's id"}
        status, answer = await _json(http, "POST", "/api/v1/requests", csrf, body)
        assert status == 400 and "always the one signed in" in str(answer["error"])
        body = {"requested_by": "bob", "target": "web-1", "for": "1h", "reason": "forged filer"}
        status, _ = await _json(http, "POST", "/api/v1/requests", csrf, body)
        assert status == 400
        assert console.store.requests() == []
        for path in ("/api/v1/access?user=bob", "/api/v1/sessions?user=bob",
                     "/api/v1/requests?user=bob"):  # fmt: skip
            status, answer = await _json(http, "GET", path)
            assert status == 400, path
        status, grants = await _json(http, "GET", "/api/v1/access")
        assert status == 200 and grants == []  # bob's grant is not shown to alice
        body = {"target": "web-1", "for": "1h", "reason": "my own request, as alice"}
        status, made = await _json(http, "POST", "/api/v1/requests", csrf, body)
        assert status == 201 and made["user"] == "alice" and made["requested_by"] == "alice"
        bobs = Requests(console.store, console.core.config, console.clock).request(
            user="bob", target="orders", duration=timedelta(hours=1), mode="read",
            reason="bob's secret investigation", requested_by="bob")  # fmt: skip
        for page in ("/access", "/unmask"):
            async with http.get(f"{page}?filed={bobs.id}") as r:
                assert r.status == 200 and "bob" not in await r.text()


async def test_a_stolen_cookie_dies_with_sign_out_everywhere(console: Console) -> None:
    async with console.http() as laptop, console.http() as phone, console.http() as thief:
        await console.sign_in(laptop, "alice")
        thief.cookie_jar.update_cookies({"__Host-bastion": console.cookie(laptop)})
        async with thief.get("/api/v1/me") as r:
            assert r.status == 200  # the stolen copy works, until...
        csrf = await _api_csrf(console, phone, "alice")  # a second session of alice's
        status, ended = await _json(phone, "POST", "/api/v1/signout-everywhere", csrf)
        assert status == 200 and len(ended["signed_out"]) == 2
        async with thief.get("/api/v1/me") as r:
            assert r.status == 401
        async with thief.get("/access", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/signin"
    assert console.events("web.signed_out_everywhere")


async def test_a_page_of_another_site_cannot_post(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        form = {"csrf": csrf, "target": "web-1", "for": "1h", "reason": "cross-site request"}
        evil = {"Origin": "https://evil.example"}
        async with http.post("/access/request", data=form, headers=evil) as r:
            assert r.status == 403 and "another site" in await r.text()
        async with http.post("/api/v1/requests", json=form, headers={
                **evil, "X-CSRF-Token": csrf}) as r:  # fmt: skip
            assert r.status == 403
        # without the token, the same-site form is refused too (a form from elsewhere that
        # sends no Origin at all cannot know the token)
        del form["csrf"]
        async with http.post("/access/request", data=form) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        # a cross-site login form is refused: it cannot carry this browser's sign-in nonce
        async with http.post("/signin", data={"username": "alice", "nonce": "guessed",
                             "password": PASSWORDS["alice"], "code": console.code("alice")},
                             allow_redirects=False) as r:  # fmt: skip
            assert r.status == 403
    assert console.store.requests() == []


class CodeClient(asyncssh.SSHClient):
    """Answers the bastion's verification prompt with one given code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def kbdint_auth_requested(self) -> str:
        return ""

    def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        return [self.code] if prompts else []


async def _ssh_login(console: Console, user: str, code: str) -> bool:
    """A self-service SSH login (no target) with password and `code`: True when it got in."""
    client = CodeClient(code)
    host_key = asyncssh.read_public_key(f"{console.core.config.paths.ssh_host_key}.pub")
    known: Any = ([host_key], [], [])
    try:
        conn = await asyncssh.connect(
            "127.0.0.1", console.ssh_port, username=user, password=PASSWORDS[user],
            known_hosts=known, client_factory=lambda: client, agent_path=None, config=None,
            client_keys=None, preferred_auth="password,keyboard-interactive")  # fmt: skip
    except asyncssh.PermissionDenied:
        return False
    conn.close()
    await conn.wait_closed()
    return True


async def test_a_totp_code_is_used_once_across_the_web_and_ssh(console: Console) -> None:
    code = console.code("alice")
    async with console.http() as http:
        status, _ = await _json(http, "POST", "/api/v1/signin", body={
            "username": "alice", "password": PASSWORDS["alice"], "code": code})  # fmt: skip
        assert status == 200
    assert not await _ssh_login(console, "alice", code)  # the web spent it
    replayed = [e for e in console.events("auth.totp_failed") if detail(e)["why"] == "replayed"]
    assert replayed and detail(replayed[-1])["via"].startswith("ssh:")
    code = console.code("alice")
    assert await _ssh_login(console, "alice", code)
    async with console.http() as http:
        status, answer = await _json(http, "POST", "/api/v1/signin", body={
            "username": "alice", "password": PASSWORDS["alice"], "code": code})  # fmt: skip
        assert status == 401 and "used already" in str(answer["error"])
    assert detail(console.events("auth.totp_ok")[-1])["via"].startswith("ssh:")


async def test_unknown_names_and_wrong_passwords_answer_alike(console: Console) -> None:
    async with console.http() as http:
        answers = []
        for user, password in (("nobody", "whatever-password-1"), ("alice", "wrong-password-22"),
                               ("", "empty-user-name-333")):  # fmt: skip
            async with http.post("/api/v1/signin", json={
                    "username": user, "password": password, "code": "123456"}) as r:  # fmt: skip
                answers.append((r.status, await r.read()))
        assert answers[0] == answers[1] == answers[2]
        assert answers[0][0] == 401
    failed = console.events("auth.password_failed")
    subjects = {e.subject for e in failed}  # a durable write for each; no name as typed
    assert "alice" in subjects and "nobody" not in subjects
    assert any(s.startswith("unknown:") for s in subjects)


async def test_wrong_codes_lock_the_account_for_every_door(console: Console) -> None:
    policy = console.core.config.lockout
    async with console.http() as http:
        for _ in range(policy.max_failures):
            status, _ = await _json(http, "POST", "/api/v1/signin", body={
                "username": "bob", "password": PASSWORDS["bob"], "code": "000000"})  # fmt: skip
            assert status == 401
        status, answer = await _json(
            http,
            "POST",
            "/api/v1/signin",
            body={"username": "bob", "password": PASSWORDS["bob"], "code": console.code("bob")},
        )
        assert status == 401 and "wrong user name" in str(answer["error"])  # locked: no hint
    assert [e for e in console.events("user.locked") if e.subject == "bob"]
    assert not await _ssh_login(console, "bob", console.code("bob"))


async def test_fetch_metadata_from_another_site_is_refused(console: Console) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "alice")
        form = {"csrf": csrf, "target": "web-1", "for": "1h", "reason": "cross-site request"}
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": "null"}):  # fmt: skip
            async with http.post("/access/request", data=form, headers=headers) as r:
                assert r.status == 403, headers
        same = {"Sec-Fetch-Site": "same-origin", "Origin": "null"}  # as Chromium sends it
        async with http.post("/access/request", data=form, headers=same) as r:
            assert r.status == 200
    assert len(console.store.requests()) == 1
