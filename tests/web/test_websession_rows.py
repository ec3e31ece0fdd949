"""An admin with the store file but not the secrets key, against the console's sign-ins: a row
made for another admin, an own row moved to another admin, a step-up proof pushed forward,
a lifetime stretched. Each row is refused like a missing session; nothing is written under
anyone's name."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from structlog.testing import capture_logs

from bastion.clock import iso
from bastion.console import websessions
from bastion.web.websession import COOKIE
from tests.web.conftest import Console

GRANT = {"holder": "bob", "target": "web-1", "reason": "INC-9 on-call", "for": "1h"}
ZED = ("zed", "admin", "zed-long-passphrase-55")


def _edit(console: Console, sql: str, params: tuple[Any, ...]) -> None:
    """What someone with the store file and sqlite3 does: write rows, no key needed."""
    db = sqlite3.connect(console.core.config.paths.store)
    with db:
        db.execute(sql, params)
    db.close()


def _user_id(console: Console, name: str) -> int:
    return next(u.id for u in console.store.users() if u.name == name)


def _token_column(console: Console) -> str:
    db = sqlite3.connect(console.core.config.paths.store)
    names = [r[1] for r in db.execute("PRAGMA table_info(web_sessions)")]
    db.close()
    return "token_mac" if "token_mac" in names else "token_sha256"


async def _write(http: aiohttp.ClientSession, csrf: str) -> int:
    async with http.post("/api/v1/admin/grants", json=GRANT,
                         headers={"X-CSRF-Token": csrf}) as r:  # fmt: skip
        return r.status


async def _me(http: aiohttp.ClientSession) -> int:
    async with http.get("/api/v1/me") as r:
        return r.status


def _nothing_written_as(console: Console, name: str) -> None:
    assert not [e for e in console.store.events() if e.actor == name]
    assert not console.store.grant_rows(target=None, group=None, live_at=None)


async def test_a_row_made_in_the_store_for_another_admin_is_no_session(console: Console) -> None:
    console.core.identity.enrol(*ZED, "test")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = iso(console.clock.now())
    column = _token_column(console)
    _edit(console, f"INSERT INTO web_sessions (id, {column}, user_id, csrf_token, client_addr,"
          " started_at, last_seen_at, proven_at) VALUES (?,?,?,?,?,?,?,?)",
          (str(uuid.uuid4()), hashlib.sha256(token.encode()).hexdigest(), _user_id(console, "zed"),
           csrf, "10.9.9.9", now, now, now))  # fmt: skip
    async with console.http() as http:
        http.cookie_jar.update_cookies({COOKIE: token})
        async with http.get("/api/v1/me") as r:
            assert r.status == 401 and "MAC" not in await r.text()  # as if there were none
        assert await _write(http, csrf) in (401, 403)
    _nothing_written_as(console, "zed")


async def _own_row_edited(console: Console, edit: Callable[[str], None]) -> None:
    """ada signs in; her row is edited in the store; her cookie then opens nothing."""
    console.core.identity.enrol(*ZED, "test")
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        assert await _me(http) == 200
        session_id = console.events("web.signed_in")[-1].session_id
        assert session_id is not None
        edit(session_id)
        assert await _me(http) == 401
        assert await _write(http, csrf) in (401, 403)
    _nothing_written_as(console, "zed")


async def test_an_own_row_moved_to_another_admin_is_refused(console: Console) -> None:
    def move(session_id: str) -> None:
        _edit(console, "UPDATE web_sessions SET user_id = ? WHERE id = ?",
              (_user_id(console, "zed"), session_id))  # fmt: skip

    with capture_logs() as logs:
        await _own_row_edited(console, move)
    refused = [e for e in logs if e["event"] == "web.session_refused"]
    assert refused and all(e["user"] == "zed" and "key's MAC" in e["why"] for e in refused)


async def test_a_step_up_proof_pushed_forward_is_refused(console: Console) -> None:
    policy = console.core.config.web

    def prove(session_id: str) -> None:
        console.clock.advance(policy.step_up + timedelta(seconds=1))
        _edit(console, "UPDATE web_sessions SET proven_at = ? WHERE id = ?",
              (iso(console.clock.now()), session_id))  # fmt: skip

    await _own_row_edited(console, prove)
    assert not console.events("grant.created")


async def test_a_lifetime_stretched_in_the_store_is_refused(console: Console) -> None:
    policy = console.core.config.web

    def stretch(session_id: str) -> None:
        console.clock.advance(policy.session_lifetime + timedelta(minutes=1))
        now = iso(console.clock.now())
        _edit(console, "UPDATE web_sessions SET started_at = ?, last_seen_at = ?, proven_at = ?"
              " WHERE id = ?", (now, now, now, session_id))  # fmt: skip

    await _own_row_edited(console, stretch)


async def test_an_untouched_session_lives_on_through_use_and_step_up(console: Console) -> None:
    """The MAC is rewritten with each use and each fresh code: the real session carries on."""
    async with console.http() as http:
        csrf = await console.sign_in(http, "ada")
        for _ in range(3):
            console.clock.advance(timedelta(minutes=2))  # past the touch interval each time
            assert await _me(http) == 200
        assert await _write(http, csrf) == 201
        console.clock.advance(console.core.config.web.step_up + timedelta(seconds=1))
        assert await _write(http, csrf) == 403  # stale proof: the step-up form is asked for
        async with http.post("/api/v1/step-up", json={"code": console.code("ada")},
                             headers={"X-CSRF-Token": csrf}) as r:  # fmt: skip
            assert r.status == 201, await r.text()
        assert await _write(http, csrf) == 201
        assert [s.user for s in websessions.listed(console.core, "ada")] == ["ada"]
