"""The audit log over HTTP: the chain's events searched by time, kind, actor, subject, session
and severity, newest first, paged by seq; engineers refused; hostile filters refused or
matched as text; a detail's markup shown as text; each search chained as reviewer activity
that the weekly review shows; the chain's state from the last verification recorded."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bastion.access.viewing import Viewer
from bastion.clock import iso, parse_iso
from bastion.console import events
from bastion.errors import Denied, UsageError
from bastion.reports.gather import gather
from bastion.reports.model import Verification
from bastion.reports.week import week_of, zone
from tests.test_cli import assert_ok, run_bastion
from tests.web.conftest import Console, detail, signed_in

SCRIPT = '<script>alert("pwned")</script>'


async def found(http: aiohttp.ClientSession, **query: str) -> dict[str, Any]:
    async with http.get("/api/v1/events", params=query) as answer:
        body = await answer.json()
        assert answer.status == 200, body
        assert isinstance(body, dict)
        return body


async def ask_for_access(console: Console, reason: str) -> None:
    """alice asks for access through the API (a real request.created event)."""
    http, csrf = await signed_in(console, "alice")
    async with http:
        body = {"target": "web-1", "for": "1h", "reason": reason}
        async with http.post("/api/v1/requests", json=body, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 201, await r.text()


def searches(console: Console) -> list[dict[str, Any]]:
    return [detail(e) for e in console.events("queries.listed")
            if detail(e)["filters"].get("via") == "audit log"]  # fmt: skip


async def test_a_reviewer_filters_by_kind_actor_subject_session_severity_and_time(
    reviewed: Console,
) -> None:
    await ask_for_access(reviewed, "deploy the hotfix")
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        everything = await found(http)
        seqs = [e["seq"] for e in everything["items"]]
        assert seqs == sorted(seqs, reverse=True) and 0 < len(seqs) <= events.PAGE
        assert everything["chain"]["head_seq"] >= seqs[0]
        closed = await found(http, kind="session.closed")
        assert {e["kind"] for e in closed["items"]} == {"session.closed"}
        assert {e["session_id"] for e in closed["items"]} == {"s-alice", "s-bob", "s-db"}
        prefixed = await found(http, kind="session.")
        kinds = {e["kind"] for e in prefixed["items"]}
        assert {"session.opened", "session.closed"} <= kinds
        assert all(k.startswith("session.") for k in kinds)
        assert (await found(http, kind="session"))["items"] == []  # exact: no such kind
        by_alice = await found(http, actor="alice")
        assert by_alice["items"] and {e["actor"] for e in by_alice["items"]} == {"alice"}
        asked = await found(http, kind="request.created", subject="alice")
        [request] = asked["items"]
        assert request["detail"]["reason"] == "deploy the hotfix"
        one = await found(http, session="s-alice")
        assert {e["session_id"] for e in one["items"]} == {"s-alice"}
        assert all(e["replay"] for e in one["items"])  # recorded, and rita may replay it
        database = await found(http, session="s-db")
        assert database["items"] and not any(e["replay"] for e in database["items"])
        loud = await found(http, severity="warning")
        assert {e["severity"] for e in loud["items"]} <= {"warning", "high"}
        at = parse_iso(request["at"])
        window = await found(http, since=iso(at), until=iso(at + timedelta(microseconds=1)))
        assert request["seq"] in [e["seq"] for e in window["items"]]
        assert all(e["at"] == request["at"] for e in window["items"])
        later = await found(http, since=iso(at + timedelta(microseconds=1)), kind="request.")
        assert later["items"] == []


async def test_pages_follow_the_seq_cursor_without_a_gap_or_a_repeat(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "ada")
    async with http:
        head = reviewed.store.chain_head()[0]
        seen: list[int] = []
        page = await found(http, limit="7")
        while True:
            assert len(page["items"]) <= 7
            seen += [e["seq"] for e in page["items"]]
            if page["next"] is None:
                break
            page = await found(http, limit="7", cursor=page["next"])
    # each page's own reading is chained above the first page's head: never shown in it
    assert seen == list(range(head, 0, -1))


async def test_an_engineer_is_refused_the_audit_log(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "alice")
    async with http:
        async with http.get("/api/v1/events") as r:
            assert r.status == 403 and "your role (engineer)" in (await r.json())["error"]
        async with http.get("/review/events?kind=session.") as r:
            assert r.status == 403 and "session.closed" not in await r.text()
        async with http.get("/access") as r:
            assert 'href="/review/events"' not in await r.text()  # not offered either
    assert searches(reviewed) == []
    with pytest.raises(Denied):  # the use case refuses on its own, whatever calls it
        events.search(reviewed.core, Viewer.user("alice", "engineer"), {})


HOSTILE_REFUSED = (
    {"kind": "session.closed' OR '1'='1"}, {"kind": "%"}, {"kind": "x" * 65},
    {"actor": "a" * 5_000}, {"actor": "a" * 10_000}, {"subject": "s" * 257},
    {"session": "../../etc/passwd"},
    {"cursor": "-1"}, {"cursor": "1e5"}, {"cursor": "abc"}, {"cursor": "9" * 40},
    {"limit": "0"}, {"limit": "201"}, {"limit": "100000"}, {"limit": "-5"},
    {"severity": "critical"}, {"since": "2026-13-45"}, {"since": "yesterday"},
    {"until": "2026-12-07T25:00:00.000000Z"}, {"offset": "10"},
)  # fmt: skip
HOSTILE_ANSWERED = (
    {"actor": "alice' OR 1=1 --"}, {"subject": "'; DROP TABLE audit_events; --"},
    {"actor": "%"}, {"actor": "_"}, {"subject": SCRIPT}, {"cursor": "9" * 18},
)  # fmt: skip


async def test_hostile_filters_are_refused_or_matched_as_text(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        for query in HOSTILE_REFUSED:
            async with http.get("/api/v1/events", params=query) as r:
                assert r.status == 400, (query, await r.text())
        async with http.get("/api/v1/events?kind=session.&kind=auth.") as r:
            assert r.status == 400 and "more than once" in await r.text()
        for query in HOSTILE_ANSWERED:
            answer = await found(http, **query)
            assert answer["items"] == [] or query == {"cursor": "9" * 18}, query
        for query in ({"cursor": "abc"}, {"actor": "a" * 5_000}, {"kind": "%"},
                      {"limit": "201"}, {"since": "yesterday"}):  # fmt: skip
            async with http.get("/review/events", params=query) as r:
                text = await r.text()
                assert r.status == 400 and 'class="error"' in text, query
                assert "a" * 300 not in text
    assert reviewed.store.verify_chain().ok  # nothing was written but the readings
    assert len(searches(reviewed)) == len(HOSTILE_ANSWERED)  # a refused search shows nothing


async def test_an_events_detail_is_escaped_json_text(reviewed: Console) -> None:
    await ask_for_access(reviewed, SCRIPT)
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        async with http.get("/review/events", params={"kind": "request.created"}) as r:
            text = await r.text()
            assert r.status == 200
        [asked] = (await found(http, kind="request.created"))["items"]
    assert SCRIPT not in text and "<script" not in text  # no script at all on the page
    assert r"&lt;script&gt;alert(\&quot;pwned\&quot;)&lt;/script&gt;" in text  # JSON, escaped
    assert f'<details class="detail" id="detail-{asked["seq"]}">' in text
    assert '<pre class="json">{\n  &quot;approvals_needed&quot;' in text  # pretty, sorted
    assert asked["detail"]["reason"] == SCRIPT  # the API gives the value itself, as JSON


async def test_each_search_is_reviewer_activity_in_the_weekly_review(reviewed: Console) -> None:
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        shown = await found(http, kind="session.", actor="alice", limit="5")
        async with http.get("/review/events", params={"severity": "warning"}) as r:
            assert r.status == 200
    first, second = searches(reviewed)
    seqs = [e["seq"] for e in shown["items"]]
    assert first == {"filters": {"via": "audit log", "kind": "session.", "actor": "alice",
                                 "limit": 5}, "rows": len(seqs),
                     "seqs": [min(seqs), max(seqs)]}  # fmt: skip
    assert second["filters"] == {"via": "audit log", "severity": "warning", "limit": 50}
    [event, _] = [e for e in reviewed.events("queries.listed")
                  if detail(e)["filters"].get("via") == "audit log"]  # fmt: skip
    assert event.actor == "rita"
    config = reviewed.core.config
    policy = config.reports
    day = parse_iso(event.at).astimezone(zone(policy.timezone)).date()
    week = week_of(day, policy.timezone, policy.week_starts)
    report = gather(reviewed.store, config, week, now=week.end + timedelta(days=1),
                    verification=Verification("intact", 0))  # fmt: skip
    rows = [row for row in report.tables["reviewers"].rows if row[2] == "queries.listed"]
    ours = [str(row[3]) for row in rows if row[1] == "rita" and "audit log" in str(row[3])]
    assert ours == [
        f"audit log (actor=alice, kind=session., limit=5): {len(seqs)} rows shown",
        f"audit log (limit=50, severity=warning): {second['rows']} rows shown",
    ]


async def test_the_chain_state_is_the_last_verification_recorded(console: Console) -> None:
    http, _ = await signed_in(console, "rita")
    async with http:
        async with http.get("/review/events") as r:
            page = await r.text()
        assert "Not verified since the chain began" in page
        assert f"Chain head: event {console.store.chain_head()[0] - 1} at" in page
        assert console.events("audit.verified") == []  # showing the state verifies nothing
        config = console.home / "bastion.toml"
        verified = await asyncio.to_thread(run_bastion, "--config", str(config), "audit",
                                           "verify", cwd=console.home)  # fmt: skip
        assert_ok(verified)
        [made] = console.events("audit.verified")
        state = (await found(http))["chain"]
        assert state["verified"]["seq"] == made.seq and state["verified"]["ok"] is True
        assert state["verified"]["command"] == "audit verify"
        assert state["verified"]["since_then"] == 0 and state["head_seq"] == made.seq
        async with http.get("/review/events") as r:
            page = await r.text()
    assert "Last verification recorded: intact, by " in page and "(audit verify)" in page
    assert "Not verified since then: " in page
    assert json.loads(made.detail)["to_seq"] == made.seq - 1


async def test_an_edited_row_is_shown_as_found_not_a_server_error(reviewed: Console) -> None:
    """An admin with the files rewrote an event's detail and time: the log shows the text."""
    with sqlite3.connect(reviewed.core.config.paths.store) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("UPDATE audit_events SET detail = '<b>not json', at = 'later<i>'"
                     " WHERE kind = 'session.opened'")  # fmt: skip
    http, _ = await signed_in(reviewed, "rita")
    async with http:
        async with http.get("/review/events", params={"kind": "session.opened"}) as r:
            text = await r.text()
            assert r.status == 200
        shown = await found(http, kind="session.opened")
    assert "&lt;b&gt;not json" in text and "later&lt;i&gt;" in text and "<b>" not in text
    assert {e["detail"] for e in shown["items"]} == {"<b>not json"}


def test_the_page_reads_times_in_the_reports_timezone_and_the_api_in_utc() -> None:
    zone_name = "Europe/Amsterdam"  # UTC+1 in December, UTC+2 in July
    assert iso(events.moment("2026-12-07", "since", zone_name) or _never()) == (
        "2026-12-06T23:00:00.000000Z")  # fmt: skip
    assert iso(events.moment("2026-12-07", "until", zone_name, end=True) or _never()) == (
        "2026-12-07T23:00:00.000000Z")  # fmt: skip
    assert iso(events.moment("2026-07-01T12:00", "since", zone_name) or _never()) == (
        "2026-07-01T10:00:00.000000Z")  # fmt: skip
    stored = "2026-07-01T12:00:00.000000Z"  # as the store writes it: UTC, whatever the zone
    assert iso(events.moment(stored, "since", zone_name) or _never()) == stored
    assert iso(events.moment("2026-07-01T12:00", "since", "UTC") or _never()) == (
        "2026-07-01T12:00:00.000000Z")  # fmt: skip
    for bad in ("2026-07-01 12:00", "2026-07-01T12", "9999-12-31T23:59+01:00", "١٢٣٤-01-01"):
        with pytest.raises(UsageError):
            events.moment(bad, "since", zone_name)
    with pytest.raises(UsageError):
        events.moment("9999-12-31", "until", zone_name, end=True)


def _never() -> datetime:
    raise AssertionError("no moment")
