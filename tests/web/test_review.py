"""The reviewer's console over HTTP: who sees what, CSRF on the review and sign writes, and a
recording shown only once its viewing is in the audit chain."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from bastion.console import reviewer
from bastion.web.security import CSP, CSP_WASM, add_headers
from tests.reals3 import MotoS3
from tests.web.conftest import Console, detail, running, signed_in
from tests.web.review_world import WEEK


async def get_json(http: aiohttp.ClientSession, path: str) -> tuple[int, object]:
    async with http.get(path) as answer:
        return answer.status, await answer.json()


async def test_an_engineer_sees_only_their_own_sessions_and_recordings(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "bob")
    async with http:
        status, found = await get_json(http, "/api/v1/review/sessions")
        assert status == 200 and isinstance(found, dict)
        assert [s["id"] for s in found["items"]] == ["s-bob"]
        status, refused = await get_json(http, "/api/v1/review/sessions?user=alice")
        assert status == 403 and "only their own" in str(refused)
        status, mine = await get_json(http, "/api/v1/review/recording?session=s-bob")
        assert status == 200 and isinstance(mine, dict) and "cat /etc/shadow" in mine["asciicast"]
        for path in ("/api/v1/review/recording?session=s-alice",
                     "/api/v1/review/commands?session=s-alice"):  # fmt: skip
            status, other = await get_json(http, path)
            assert (status, other) == (404, {"error": "no session with id s-alice"})
        async with http.get("/review/sessions/s-alice") as page:
            assert page.status == 404 and "ls /srv" not in await page.text()
        async with http.get("/review/sessions") as page:
            text = await page.text()
            assert "s-bob" in text and "s-alice" not in text
    viewings = reviewed.events("recording.replayed")
    assert [(e.actor, e.session_id) for e in viewings] == [("bob", "s-bob")]


async def test_an_engineer_sees_nothing_of_the_weekly_reviews_or_the_logs(
    reviewed: Console,
) -> None:
    http, csrf = await signed_in(reviewed, "alice")
    async with http:
        for path in ("/api/v1/review/weeks", f"/api/v1/review/findings?week={WEEK}",
                     "/api/v1/review/queries", "/api/v1/review/consents"):  # fmt: skip
            status, body = await get_json(http, path)
            assert status == 403 and "your role (engineer) may not use this" in str(body), path
        for path in ("/review/weeks", f"/review/weeks/{WEEK}", "/review/queries",
                     "/review/consents"):  # fmt: skip
            async with http.get(path) as page:
                text = await page.text()
                assert page.status == 403 and "unusual_hours" not in text, path
        headers = {"X-CSRF-Token": csrf}
        async with http.post(
            "/api/v1/review/signoffs",
            headers=headers,
            json={"week": WEEK, "code": reviewed.code("alice")},
        ) as r:
            assert r.status == 403
        async with http.get("/review/sessions") as page:
            assert "Weekly reviews" not in await page.text()  # not in the navigation either
    assert reviewed.store.report_week(WEEK).signed_at is None


async def test_the_review_and_sign_writes_want_the_csrf_token(reviewed: Console) -> None:
    [first, _] = [f.id for f in reviewed.store.report_findings(WEEK)]
    http, csrf = await signed_in(reviewed, "ada")
    async with http:
        form = {"verdict": "ok", "note": "looked at it"}
        async with http.post(f"/review/weeks/{WEEK}/findings/{first}", data=form) as r:
            assert r.status == 403 and "no valid CSRF token" in await r.text()
        async with http.post(f"/review/weeks/{WEEK}/findings/{first}",
                             data={**form, "csrf": "forged"}) as r:  # fmt: skip
            assert r.status == 403
        async with http.post(f"/review/weeks/{WEEK}/sign", data={"code": "123456"}) as r:
            assert r.status == 403
        body = {"week": WEEK, "finding": first, "verdict": "ok", "note": "fine"}
        async with http.post("/api/v1/review/findings", json=body) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]
        assert {f.state for f in reviewed.store.report_findings(WEEK)} == {"open"}
        async with http.post(f"/review/weeks/{WEEK}/findings/{first}",
                             data={**form, "csrf": csrf}) as r:  # fmt: skip
            assert r.status == 200 and f"finding {first} marked" in await r.text()
    states = {f.id: (f.state, f.reviewed_by, f.note) for f in reviewed.store.report_findings(WEEK)}
    assert states[first] == ("ok", "ada", "looked at it")


async def test_the_api_reviews_and_signs_as_the_cli_does(reviewed: Console) -> None:
    ids = [f.id for f in reviewed.store.report_findings(WEEK)]
    http, csrf = await signed_in(reviewed, "ada")
    headers = {"X-CSRF-Token": csrf}
    async with http:
        sign = {"week": WEEK, "code": reviewed.code("ada")}
        async with http.post("/api/v1/review/signoffs", json=sign, headers=headers) as r:
            assert r.status == 409 and "2 open findings" in (await r.json())["error"]
        for fid, verdict in zip(ids, ("ok", "flag"), strict=True):
            body = {"week": WEEK, "finding": fid, "verdict": verdict, "note": "seen"}
            async with http.post("/api/v1/review/findings", json=body, headers=headers) as r:
                assert r.status == 201 and (await r.json())["state"] == verdict
        wrong = {"week": WEEK, "code": "000000"}
        async with http.post("/api/v1/review/signoffs", json=wrong, headers=headers) as r:
            assert r.status == 403 and "code" in (await r.json())["error"]
        sign = {"week": WEEK, "code": reviewed.code("ada")}
        async with http.post("/api/v1/review/signoffs", json=sign, headers=headers) as r:
            done = await r.json()
            assert r.status == 201 and done["signed_by"] == "ada", done
        status, weeks = await get_json(http, "/api/v1/review/weeks")
        assert status == 200 and isinstance(weeks, list)
        assert [(w["week"], w["signed_by"], w["findings_open"]) for w in weeks] == [
            (WEEK, "ada", 0)]  # fmt: skip
    assert reviewed.store.report_week(WEEK).signed_by == "ada"


async def test_a_reviewer_reads_the_query_log_and_the_consent_ledger(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        status, found = await get_json(http, "/api/v1/review/queries?text=customers")
        assert status == 200 and isinstance(found, dict)
        assert [q["sql"] for q in found["items"]] == ["SELECT email FROM customers"]
        status, ledger = await get_json(http, "/api/v1/review/consents")
        assert (status, ledger) == (200, {"items": [], "next": None})
        status, hits = await get_json(http, "/api/v1/review/sessions?text=shadow")
        assert status == 200 and isinstance(hits, dict)
        assert [s["id"] for s in hits["items"]] == ["s-bob"]
        async with http.get("/review/queries?user=alice") as page:
            assert page.status == 200 and "SELECT email FROM customers" in await page.text()
        async with http.get("/review/sessions/s-db") as page:
            assert "select 1" in await page.text()  # a database session: its statements
    listed = [detail(e) for e in reviewed.events("queries.listed")]
    assert listed and listed[0]["filters"]["grep"] == "customers"


def refuse_viewings(console: Console) -> None:
    """An insider's trigger: the store refuses every recording.* event."""
    with sqlite3.connect(console.core.config.paths.store) as conn:
        conn.execute("CREATE TRIGGER hide BEFORE INSERT ON audit_events WHEN NEW.kind LIKE"
                     " 'recording.%' BEGIN SELECT RAISE(ABORT, 'no trace wanted');"
                     " END")  # fmt: skip


async def test_a_recording_is_sent_only_after_its_viewing_is_chained(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        status, opened = await get_json(http, "/api/v1/review/recording?session=s-alice")
        assert status == 200 and isinstance(opened, dict)
        [viewing] = reviewed.events("recording.replayed")
        assert (viewing.actor, viewing.session_id, viewing.subject) == ("rita", "s-alice", "alice")
        assert detail(viewing) == {"target": "web-1", "via": "web console"}
        refuse_viewings(reviewed)
        async with http.get("/api/v1/review/recording?session=s-alice") as r:
            body = await r.read()
        assert r.status == 503 and b"the recording is not shown" in body
        assert b"ls /srv" not in body and b"asciicast" not in body
    assert len(reviewed.events("recording.replayed")) == 1


async def test_only_the_replay_page_lets_the_player_run_webassembly(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        async with http.get("/review/sessions/s-alice") as r:
            text = await r.text()
            assert r.headers["Content-Security-Policy"] == CSP_WASM
        scripts = re.findall(r"<script[^>]*>(.*?)</script>", text, re.S)
        assert scripts == ["", ""] and " style=" not in text  # two files, no inline code
        assert re.findall(r'<script src="([^"]+)"', text) == [
            "/player/asciinema-player.min.js", "/static/replay.js"]  # fmt: skip
        for path in ("/review/sessions", f"/review/weeks/{WEEK}", "/review/queries",
                     "/api/v1/review/recording?session=s-alice",
                     "/player/asciinema-player.min.js", "/static/replay.js"):  # fmt: skip
            async with http.get(path) as r:
                assert r.status == 200, path
                assert r.headers["Content-Security-Policy"] == CSP, path
        async with http.get("/player/package.json") as r:
            assert r.status == 404  # only the player's two files are served from vendor/


async def test_a_page_may_ask_for_the_webassembly_policy_and_no_other() -> None:
    """A handler that sets any other policy (a looser one, say) has it replaced by CSP."""
    for asked, sent in (("script-src * 'unsafe-inline'", CSP), (CSP_WASM, CSP_WASM), ("", CSP)):
        response = web.Response(headers={"Content-Security-Policy": asked})
        await add_headers(make_mocked_request("GET", "/review/sessions/x"), response)
        assert response.headers["Content-Security-Policy"] == sent


async def test_the_core_decides_who_signs_as_on_the_cli(reviewed: Console) -> None:
    """The console adds no rule of its own: the reviewer role (a security lead) passes a
    finding as on the CLI (bastion/access/reviews.py), and the decision is the core's event."""
    [first, _] = [f.id for f in reviewed.store.report_findings(WEEK)]
    http, csrf = await signed_in(reviewed, "rita")
    async with http:
        async with http.get(f"/review/weeks/{WEEK}") as page:
            assert page.status == 200 and "unusual_hours" in await page.text()
        form = {"verdict": "ok", "note": "seen", "csrf": csrf}
        async with http.post(f"/review/weeks/{WEEK}/findings/{first}", data=form) as page:
            assert page.status == 200
    assert not reviewed.events("report.review_refused")
    states = {f.id: f.state for f in reviewed.store.report_findings(WEEK)}
    assert states[first] == "ok"


async def test_a_recording_too_large_for_the_browser_is_refused_before_any_reading(
    reviewed: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reviewer, "MAX_BROWSER_RECORDING", 100)  # bytes; the file holds more
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        status, refused = await get_json(http, "/api/v1/review/recording?session=s-alice")
        assert status == 400 and "bastion replay s-alice" in str(refused)
    assert reviewed.events("recording.replayed") == []


HOSTILE = ("", " ", "9999-12-31", "0001-01-01", "2026-02-30", "x" * 600,
           "\uff12\uff10\uff12\uff16-01-01",
           "2026-11-16T09:00:00", "'; DROP TABLE sessions; --", "../../etc/passwd", "-1",
           "٣", "99999999999999999999", "%00", "<script>", "s-alice")  # fmt: skip
READS = {"/api/v1/review/sessions": reviewer.SESSION_QUERY,
         "/api/v1/review/queries": reviewer.QUERY_QUERY,
         "/api/v1/review/consents": reviewer.CONSENT_QUERY,
         "/api/v1/review/findings": ("week",),
         "/api/v1/review/commands": ("session", "cursor"),
         "/api/v1/review/recording": ("session",)}  # fmt: skip


async def test_hostile_search_parameters_are_refused_in_one_line(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        for path, names in READS.items():
            for name in names:
                for value in HOSTILE:
                    async with http.get(path, params={name: value}) as r:
                        assert r.status in (200, 400, 404), (path, name, value, r.status)
                        assert "error" in await r.json() or r.status == 200
        for page in ("/review/sessions", "/review/queries"):
            async with http.get(page, params={"since": "9999-12-31", "until": "9999-12-31"}) as r:
                assert r.status == 400 and "<script>" not in await r.text()


async def test_the_console_plays_a_recording_from_the_object_store(tmp_path: Path) -> None:
    """The spool copies uploaded and gone: the player gets the recording from the bucket,
    still only for who may read it, and still only once the viewing is chained."""
    from tests.web.review_world import reviewed_world  # noqa: PLC0415 (it imports conftest)

    with MotoS3(tmp_path) as moto:
        moto.start()
        credentials = moto.write_credentials(tmp_path / "s3.credentials")
        config = moto.config(credentials=str(credentials))
        async with running(tmp_path / "bastion", before=reviewed_world, extra=config) as found:
            spool = found.core.config.paths.recordings
            deadline = asyncio.get_running_loop().time() + 60  # a safety net, not a timing
            while list(spool.rglob("*.cast")):  # uploaded at start, checked, then removed
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            http, _ = await signed_in(found, "bob")
            async with http:
                status, mine = await get_json(http, "/api/v1/review/recording?session=s-bob")
                assert status == 200 and isinstance(mine, dict), mine
                assert "cat /etc/shadow" in mine["asciicast"]
                status, other = await get_json(http, "/api/v1/review/recording?session=s-alice")
                assert (status, other) == (404, {"error": "no session with id s-alice"})
            viewings = found.events("recording.replayed")
            assert [(e.actor, e.session_id) for e in viewings] == [("bob", "s-bob")]
