"""The audit log: the page /review/events and the API GET /api/v1/events, for admins and
reviewers; `add_events` adds both.

Both call bastion/console/events.py, off the event loop (a search reads the chain in
windows, letting the doors' store calls in between). The page takes and shows times in
[reports] timezone, the API in UTC. An event's detail is shown as pretty-printed JSON text
inside <details> (escaped like every value; no script)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bastion.audit.chain import SEVERITIES
from bastion.clock import parse_iso
from bastion.console import events
from bastion.console.reviewer import REVIEWERS, viewer
from bastion.errors import BastionError, Denied
from bastion.reports.week import zone
from bastion.web.api import V1, endpoint
from bastion.web.html import Markup, el, join, table
from bastion.web.layout import field, page
from bastion.web.review_pages import session_url
from bastion.web.routes import Routes
from bastion.web.state import core_of, session_of

PATH = "/review/events"
SUMMARY = 90  # characters of an event's detail shown before it is opened


def _local(at: str | None, tz: str) -> str:
    if not at:
        return ""
    try:
        return parse_iso(at).astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:  # not as the store writes it: shown as found
        return at


def _verified(state: Mapping[str, Any], tz: str) -> Markup:
    """The last verification recorded, or that none is; never a walk of the chain."""
    done = state["verified"]
    if done is None:
        return el("p", {"id": "verified", "class": "error"},
                  "Not verified since the chain began: no verification is recorded in it."
                  " Run `bastion audit verify` on the bastion host.")  # fmt: skip
    result = "intact" if done["ok"] else str(done["result"] or "not intact")
    line = (
        f"Last verification recorded: {result}, by {done['by']} ({done['command']}) at"
        f" {_local(done['at'], tz)}, up to event {done['to_seq'] or done['seq']}."
    )
    since = int(done["since_then"])
    if since > 0:
        line += f" Not verified since then: {since} event(s) written after it."
    css = "notice" if done["ok"] and since <= 0 else "error"
    return el("p", {"id": "verified", "class": css}, line)


def _state(state: Mapping[str, Any], tz: str) -> Markup:
    head = (f"Chain head: event {state['head_seq']} at {_local(state['head_at'], tz)} ({tz})"
            if state["head_seq"] else "The chain is empty.")  # fmt: skip
    note = ("A verification that finds the chain broken leaves it as found, unrecorded: for"
            " the state right now, run `bastion audit verify`.")  # fmt: skip
    return el("section", {"id": "chain"}, el("p", {"id": "head"}, head),
              _verified(state, tz), el("p", {"class": "empty"}, note))  # fmt: skip


def _severity(asked: Mapping[str, str]) -> Markup:
    chosen = asked.get("severity", "")
    options = [el("option", {"value": "", "selected": not chosen}, "any")] + [
        el("option", {"value": s, "selected": s == chosen}, f"{s} or higher") for s in SEVERITIES
    ]
    select = el("select", {"name": "severity", "id": "severity"}, *options)
    return el("p", None, el("label", {"for": "severity"}, "Severity"), select)


def _form(asked: Mapping[str, str], tz: str) -> Markup:
    """A GET form (it changes nothing: no CSRF token)."""
    when = "YYYY-MM-DD or YYYY-MM-DDTHH:MM"
    fields = [field(f"From ({tz})", "since", required=False, value=asked.get("since")),
              field(f"Until ({tz}, excluded)", "until", required=False,
                    value=asked.get("until")),
              field("Kind (or a prefix: session.)", "kind", required=False,
                    value=asked.get("kind")),
              field("Actor", "actor", required=False, value=asked.get("actor")),
              field("Subject", "subject", required=False, value=asked.get("subject")),
              field("Session", "session", required=False, value=asked.get("session")),
              _severity(asked)]  # fmt: skip
    return el("form", {"method": "get", "action": PATH, "class": "search"}, *fields,
              el("p", {"class": "empty"}, f"Times as {when}, in {tz}."),
              el("button", {"type": "submit", "id": "search"}, "Search"))  # fmt: skip


def _detail(event: Mapping[str, Any]) -> Markup:
    pretty = json.dumps(event["detail"], indent=2, sort_keys=True, ensure_ascii=False)
    short = json.dumps(event["detail"], sort_keys=True, ensure_ascii=False)
    short = short if len(short) <= SUMMARY else short[: SUMMARY - 3] + "..."
    return el("details", {"class": "detail", "id": f"detail-{event['seq']}"},
              el("summary", None, el("code", None, short)),
              el("pre", {"class": "json"}, pretty))  # fmt: skip


def _session(event: Mapping[str, Any]) -> object:
    sid = event["session_id"]
    if not sid:
        return ""
    if event["replay"]:
        return el("a", {"href": session_url(sid), "class": "replay"}, sid)
    return el("code", None, sid)


def _rows(found: Mapping[str, Any], tz: str) -> list[tuple[object, ...]]:
    return [(e["seq"], _local(e["at"], tz), e["kind"], e["severity"], e["actor"], e["subject"],
             _session(e), _detail(e)) for e in found["items"]]  # fmt: skip


def _more(asked: Mapping[str, str], found: Mapping[str, Any]) -> Markup:
    following = found["next"]
    if following is None:
        return join()
    href = f"{PATH}?{urllib.parse.urlencode({**asked, 'cursor': following})}"
    looked = found["looked_at"]
    said = ("Next page" if len(found["items"]) else
            f"Nothing found in events {looked['from_seq']}-{looked['to_seq']}: search older"
            " events")  # fmt: skip
    return el("p", None, el("a", {"href": href, "id": "next"}, said))


async def events_page(request: web.Request) -> web.Response:
    core, session = core_of(request), session_of(request)
    tz = core.config.reports.timezone
    asked = {n: request.query[n] for n in events.EVENT_QUERY if request.query.get(n)}
    who = viewer(session)
    form = _form({n: v for n, v in asked.items() if len(v) <= events.MAX_NAME}, tz)
    try:
        state = await core.run(events.chain_state, core, who)
        found = await asyncio.to_thread(events.search, core, who, asked, tz)
    except BastionError as exc:
        status = 403 if isinstance(exc, Denied) else 400
        return page("Audit log", session, form, error=exc.message, status=status)
    return page("Audit log", session, _state(state, tz), form,
                el("p", {"class": "empty"}, f"Newest first; times in {tz}."),
                el("div", {"class": "events"},
                   table(["seq", "time", "kind", "severity", "actor", "subject", "session",
                          "detail"], _rows(found, tz), "No event matches.")),
                _more(asked, found))  # fmt: skip


async def _events(request: web.Request) -> dict[str, Any]:
    core, who = core_of(request), viewer(session_of(request))
    asked = dict(request.query.items())
    state = await core.run(events.chain_state, core, who)
    found = await asyncio.to_thread(events.search, core, who, asked, "UTC")
    return {"chain": state, **found}


def add_events(routes: Routes) -> None:
    """The audit log's page and API, for admins and reviewers."""
    routes.add("GET", PATH, events_page, REVIEWERS, summary="the audit log, searched")
    routes.add("GET", f"{V1}/events", endpoint(_events), REVIEWERS, query=events.EVENT_QUERY,
               summary="The audit chain's events, searched, newest first (admins and"
               " reviewers); each search is itself chained as reviewer activity")  # fmt: skip
