"""Step-up against an attacker: a stolen or left-open admin session can change nothing once
its proof is older than [web] step_up; a fresh code goes through the shared TOTP check (used
once, wrong ones counted towards lockout, audited as at the doors) and counts for that one
sign-in of that one person; reviewers and engineers gain nothing from it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import aiohttp

from bastion.access.stepup import NEEDED, STEP_UP_ROLES
from bastion.clock import iso
from bastion.identity import totp
from bastion.web.app import build_app
from bastion.web.routes import ROUTES_KEY
from tests.web.conftest import PASSWORDS, Console, detail

SAMPLE = {"week": "2026-W47"}  # placeholder values for the walk over every route
GRANT = {"holder": "bob", "target": "web-1", "reason": "INC-7 on-call", "for": "1h"}


async def _json(http: aiohttp.ClientSession, path: str, csrf: str,
                body: dict[str, str]) -> tuple[int, Any]:  # fmt: skip
    async with http.post(path, json=body, headers={"X-CSRF-Token": csrf}) as r:
        return r.status, await r.json()


async def _signin(console: Console, http: aiohttp.ClientSession, user: str,
                  code: str | None = None) -> str:  # fmt: skip
    body = {"username": user, "password": PASSWORDS[user], "code": code or console.code(user)}
    async with http.post("/api/v1/signin", json=body) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["csrf_token"])


def _stale(console: Console) -> None:
    """Past the step-up window, well within the idle timeout (the session is still live)."""
    policy = console.core.config.web
    assert policy.step_up + timedelta(minutes=1) < policy.idle_timeout
    console.clock.advance(policy.step_up + timedelta(seconds=1))


def _grants(console: Console) -> int:
    return len(console.store.grant_rows(target=None, group=None, live_at=None))


def _now_code(console: Console, user: str) -> str:
    """The code of the current step, without moving the clock (to replay it)."""
    return totp.code_for_step(console.seeds[user], totp.step_at(console.clock.now()))


def step_up_routes(console: Console) -> list[tuple[str, str]]:
    declared = build_app(console.core)[ROUTES_KEY].declared
    return sorted(key for key, d in declared.items() if d.step_up)


async def test_a_session_older_than_the_window_cannot_make_any_admin_change(
    console: Console,
) -> None:
    routes = step_up_routes(console)
    writes = [k for k in routes if k[1].startswith(("/admin", "/api/v1/admin"))]
    assert len(writes) >= 20 and ("POST", "/live/kill") in routes
    assert ("POST", "/api/v1/break-glass/ack") in routes
    users_before = len(console.store.users())
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        status, made = await _json(http, "/api/v1/admin/grants", csrf, GRANT)
        assert status == 201, made  # right after sign-in: the sign-in is the proof
        _stale(console)
        for method, path in routes:
            assert method == "POST", path  # reading never asks for a fresh code
            body = {**GRANT, "name": "eve", "role": "admin", "id": "1", "session_id": "x",
                    "grant_id": "1", "fingerprint": "SHA256:x", "csrf": csrf}  # fmt: skip
            if path.startswith("/api/"):
                sent = http.post(path, json=body, headers={"X-CSRF-Token": csrf})
            else:  # a path's placeholders filled with values of their shape
                sent = http.post(re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m[1], "1"), path),
                                 data=body)  # fmt: skip
            async with sent as r:
                text = await r.text()
                assert r.status == 403 and NEEDED in text, (path, r.status, text[:300])
                if not path.startswith("/api/"):  # the page offers the form to prove it
                    assert 'action="/step-up"' in text and 'name="code"' in text
    assert _grants(console) == 1 and len(console.store.users()) == users_before
    assert console.events("web.stepped_up") == []


async def test_a_fresh_code_lets_the_admin_change_things_again_for_the_window(
    console: Console,
) -> None:
    async with console.http() as http:
        csrf = await _signin(console, http, "ada")
        _stale(console)
        status, refused = await _json(http, "/api/v1/admin/grants", csrf, GRANT)
        assert (status, refused["step_up"]) == (403, "/api/v1/step-up")
        status, proven = await _json(http, "/api/v1/step-up", csrf, {"code": console.code("ada")})
        assert status == 201 and proven["user"] == "ada", proven
        status, _ = await _json(http, "/api/v1/admin/grants", csrf, GRANT)
        assert status == 201
        _stale(console)
        status, _ = await _json(http, "/api/v1/admin/grants", csrf, GRANT)
        assert status == 403  # the window runs from the step-up, and ends
    [event] = console.events("web.stepped_up")
    assert (event.actor, detail(event)["door"]) == ("ada", "web")
    assert any(e.subject == "ada" and detail(e)["via"].startswith("web:")
               for e in console.events("auth.totp_ok"))  # fmt: skip
    assert _grants(console) == 1


async def test_a_code_already_used_is_refused(console: Console) -> None:
    async with console.http() as old, console.http() as new:
        old_csrf = await _signin(console, old, "ada")
        _stale(console)
        signin_code = console.code("ada")
        await _signin(console, new, "ada", signin_code)  # a second sign-in uses this code
        status, answer = await _json(old, "/api/v1/step-up", old_csrf, {"code": signin_code})
        assert status == 403 and "used already" in answer["error"]
        status, _ = await _json(old, "/api/v1/step-up", old_csrf, {"code": console.code("ada")})
        assert status == 201
        status, answer = await _json(old, "/api/v1/step-up", old_csrf,
                                     {"code": _now_code(console, "ada")})  # fmt: skip
        assert status == 403 and "used already" in answer["error"]  # a step-up's, once too
    failed = [detail(e) for e in console.events("auth.failed") if e.subject == "ada"]
    assert [f["reason"] for f in failed] == ["that code was used already"] * 2
    assert {f["protocol"] for f in failed} == {"web"}  # the doors' shape, the web's door
    assert len(console.events("web.stepped_up")) == 1


async def test_one_persons_proof_counts_for_no_other_session(console: Console) -> None:
    enrolment = console.core.identity.enrol("adam", "admin", "adam-admin-passphrase-55", "test")
    console.seeds["adam"] = enrolment.uri.split("secret=")[1].split("&")[0]
    PASSWORDS["adam"] = "adam-admin-passphrase-55"
    try:
        async with console.http() as ada, console.http() as ada2, console.http() as adam:
            csrf = await _signin(console, ada, "ada")
            csrf2 = await _signin(console, ada2, "ada")
            adam_csrf = await _signin(console, adam, "adam")
            _stale(console)
            for code in (console.code("adam"), console.code("bob")):  # someone else's code
                status, answer = await _json(ada, "/api/v1/step-up", csrf, {"code": code})
                assert status == 403 and answer["error"] == "wrong verification code"
            status, answer = await _json(ada, "/api/v1/step-up", csrf,
                                         {"code": console.code("ada"), "user": "adam"})  # fmt: skip
            assert status == 400  # the person is the one signed in
            status, _ = await _json(ada, "/api/v1/step-up", csrf, {"code": console.code("ada")})
            assert status == 201
            for http, token in ((ada2, csrf2), (adam, adam_csrf)):  # ada's other sign-in, adam
                status, answer = await _json(http, "/api/v1/admin/grants", token, GRANT)
                assert status == 403 and answer["error"] == NEEDED
            status, _ = await _json(ada, "/api/v1/admin/grants", csrf, GRANT)
            assert status == 201
    finally:
        PASSWORDS.pop("adam")
    [event] = console.events("web.stepped_up")
    assert event.actor == "ada"


async def test_a_reviewer_or_engineer_gains_nothing_from_step_up(console: Console) -> None:
    async with console.http() as alice, console.http() as rita:
        csrf = await _signin(console, alice, "alice")
        status, answer = await _json(alice, "/api/v1/step-up", csrf,
                                     {"code": console.code("alice")})  # fmt: skip
        assert status == 403 and "your role" in answer["error"]
        async with alice.post("/step-up", data={"csrf": csrf, "code": "1"}) as r:
            assert r.status == 403 and "your role" in await r.text()
        rcsrf = await _signin(console, rita, "rita")
        _stale(console)
        status, _ = await _json(rita, "/api/v1/step-up", rcsrf, {"code": console.code("rita")})
        assert status == 201  # reviewers acknowledge break-glass, a write that asks for it
        for path, body in (
            ("/api/v1/admin/grants", GRANT),
            ("/api/v1/admin/users", {"name": "eve", "role": "admin"}),
            ("/api/v1/live-sessions/kill", {"session_id": "x", "reason": "r"}),
        ):
            status, answer = await _json(rita, path, rcsrf, body)  # fmt: skip
            assert status == 403 and "your role (reviewer)" in answer["error"], path
    assert _grants(console) == 0 and console.store.find_user("eve") is None


async def test_wrong_step_up_codes_count_towards_lockout_and_end_the_session(
    console: Console,
) -> None:
    policy = console.core.config.lockout
    async with console.http() as http, console.http() as other:
        csrf = await _signin(console, http, "ada")
        _stale(console)
        answers = []
        for _ in range(policy.max_failures):
            status, answer = await _json(http, "/api/v1/step-up", csrf, {"code": "000000"})
            answers.append((status, answer["error"]))
        assert all(s == 403 for s, _ in answers)
        assert re.search(r"locked until .*; this sign-in has ended", answers[-1][1]), answers
        async with http.get("/api/v1/me") as r:
            assert r.status == 401  # whoever held the cookie may guess no further
        body = {"username": "ada", "password": PASSWORDS["ada"], "code": console.code("ada")}
        async with other.post("/api/v1/signin", json=body) as r:
            assert r.status == 401  # locked at every door, sign-in included
    assert [e for e in console.events("user.locked") if e.subject == "ada"]
    failed = [detail(e) for e in console.events("auth.failed") if e.subject == "ada"]
    assert failed[0]["reason"] == "wrong verification code"
    assert failed[0]["first_factor"] == "web session"
    reasons = [detail(e)["reason"] for e in console.events("web.signed_out")]
    assert reasons == ["locked: too many wrong codes"]
    assert "000000" not in str([e.detail for e in console.store.events()])


async def test_decisions_carry_their_own_code_and_ask_for_no_step_up(console: Console) -> None:
    """Approving or denying takes the decider's own fresh code, each time: no window."""
    asked = console.core.requests.request(
        user="alice", target="web-1", duration=timedelta(hours=1), reason="INC-9 replica lag",
        requested_by="alice", mode="read")  # fmt: skip
    async with console.http() as http:
        csrf = await _signin(console, http, "ada")
        _stale(console)
        body = {"id": str(asked.id), "code": "000000"}
        status, answer = await _json(http, "/api/v1/admin/requests/approve", csrf, body)
        assert status == 403 and answer["error"] == "wrong verification code"
        body = {"id": str(asked.id), "code": console.code("ada")}
        status, answer = await _json(http, "/api/v1/admin/requests/approve", csrf, body)
        assert status == 201, answer


async def test_the_api_says_which_calls_ask_for_it_and_until_when_the_proof_holds(
    console: Console,
) -> None:
    async with console.http() as http:
        async with http.get("/api/v1/openapi.json") as r:
            paths = (await r.json())["paths"]
        assert paths["/api/v1/admin/grants"]["post"]["x-step-up"] is True
        assert "x-step-up" not in paths["/api/v1/admin/requests/approve"]["post"]
        assert "x-step-up" not in paths["/api/v1/step-up"]["post"]
        await _signin(console, http, "ada")
        async with http.get("/api/v1/me") as r:
            until = (await r.json())["step_up_until"]
        assert until == iso(console.clock.now() + console.core.config.web.step_up)
        _stale(console)
        async with http.get("/api/v1/me") as r:
            assert (await r.json())["step_up_until"] is None


async def test_the_form_sends_the_admin_back_only_to_a_page_of_the_console(
    console: Console,
) -> None:
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        for back, expected in (("https://evil.example/admin/users", "/"),
                               ("//evil.example/admin/users", "/"),
                               ("/admin/users/disable", "/admin/users"),
                               ("/admin/targets/trust", "/admin/targets"),
                               ("/api/v1/admin/grants", "/")):  # fmt: skip
            _stale(console)
            form = {"csrf": csrf, "code": console.code("ada"), "back": back}
            async with http.post("/step-up", data=form, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (303, expected), back


# The writes open to admins or reviewers that carry a code of their own instead (a decision,
# a signature) or prove one (step-up itself). Anything else they may write asks for step-up.
OWN_CODE_ROUTES = {
    *(("POST", f"{prefix}/admin/{kind}/{verb}") for prefix in ("", "/api/v1")
      for kind in ("requests", "unmask-requests") for verb in ("approve", "deny")),
    ("POST", "/review/weeks/{week}/sign"), ("POST", "/api/v1/review/signoffs"),
    ("POST", "/step-up"), ("POST", "/api/v1/step-up"),
}  # fmt: skip


def test_every_write_open_only_to_admins_or_reviewers_asks_for_step_up(console: Console) -> None:
    """Passing or flagging a finding, acknowledging break-glass, any admin change: a stolen
    admin's or reviewer's session can do none of them past the window. Only the writes that
    carry their own code are exempt, and they are named here."""
    declared = build_app(console.core)[ROUTES_KEY].declared
    privileged = {key: d for key, d in declared.items()
                  if key[0] != "GET" and d.roles and d.roles <= STEP_UP_ROLES}  # fmt: skip
    assert ("POST", "/api/v1/review/findings") in privileged
    assert ("POST", "/review/weeks/{week}/findings/{finding}") in privileged
    exempt = {key for key, d in privileged.items() if not d.step_up}
    assert exempt == OWN_CODE_ROUTES
