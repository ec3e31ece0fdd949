"""The admin's pages: users, targets, grants, and the requests waiting for a decision.

Every page reads and writes through bastion/console/admin.py, the calls the API makes; a refusal
is shown on the page it came from, in one line. A new TOTP seed is shown once, as a QR code
in an <img> (an SVG data: URI, no script), on the answer to the form that made it; it is
never in a URL, a log line or a stored row."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web

from bastion.console import admin
from bastion.console.engineer import MODES
from bastion.durations import format_duration
from bastion.errors import BastionError
from bastion.identity.service import ROLES
from bastion.web.admin_api import KEYWORDS, OWN_CODE, add_admin_api, presented_key, via
from bastion.web.html import Markup, el, join, table
from bastion.web.layout import csrf_input, field, form, page
from bastion.web.pages import redirect
from bastion.web.routes import ADMIN, Routes
from bastion.web.state import core_of, session_of
from bastion.web.stepup import add_step_up

Page = Callable[..., Awaitable[web.Response]]


async def _do(request: web.Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    core, actor = core_of(request), session_of(request).user
    return await core.run(lambda: fn(core, actor, *args, **kwargs))


async def _read(request: web.Request, fn: Callable[..., Any]) -> Any:
    core = core_of(request)
    return await core.run(fn, core)


async def _form(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    return {k: v for k, v in posted.items() if isinstance(v, str)}


def _row_form(request: web.Request, action: str, button: str, hidden: Mapping[str, object],
              *inputs: Markup) -> Markup:  # fmt: skip
    """A small form inside a table row: the thing it acts on, a few inputs, one button."""
    keep = [el("input", {"type": "hidden", "name": k, "value": v}) for k, v in hidden.items()]
    return el("form", {"method": "post", "action": action, "class": "inline"},
              csrf_input(session_of(request)), *keep, *inputs,
              el("button", {"type": "submit"}, button))  # fmt: skip


def _input(name: str, label: str, *, required: bool = True, kind: str = "text") -> Markup:
    return el("input", {"type": kind, "name": name, "placeholder": label, "aria-label": label,
                        "required": required, "autocomplete": "off"})  # fmt: skip


async def _post(request: web.Request, show: Page, fn: Callable[..., Any],
                done: Callable[[Any], str], **fixed: Any) -> web.StreamResponse:  # fmt: skip
    """Run a write with the form's fields; show the page again with its notice or refusal."""
    kwargs = _kwargs(fn, await _form(request), fixed)
    try:
        result = await _do(request, fn, **kwargs, **fixed)
    except BastionError as exc:
        return await show(request, error=exc.message)
    return await show(request, notice=done(result))


def _kwargs(fn: Callable[..., Any], data: Mapping[str, str],
            fixed: Mapping[str, Any]) -> dict[str, str]:  # fmt: skip
    """The form's fields the call takes by keyword (renamed as the API renames them); the
    CSRF token, unknown fields and what the handler fixes itself (how a code came) are left."""
    takes = set(inspect.signature(fn).parameters) - {"core", "actor", *fixed}
    named = {KEYWORDS.get(k, k): v for k, v in data.items()}
    return {k: v for k, v in named.items() if k in takes}


# -- users --------------------------------------------------------------------------------


async def users_page(request: web.Request, notice: str | None = None,
                     error: str | None = None) -> web.Response:  # fmt: skip
    found = await _read(request, admin.users)
    rows = []
    for u in found:
        actions = join(
            _row_form(request, "/admin/users/disable", "Disable", {"name": u["name"]},
                      _input("reason", "why (offboarding)", required=False))
            if u["state"] != "disabled" else None,
            _row_form(request, "/admin/users/unlock", "Unlock", {"name": u["name"]})
            if u["state"] == "locked" else None,
            _row_form(request, "/admin/users/reset-totp", "Reset TOTP", {"name": u["name"]})
            if u["state"] != "disabled" else None)  # fmt: skip
        rows.append((u["name"], u["role"], u["state"], u["created_at"],
                     el("span", {"data-user": u["name"]}, actions)))  # fmt: skip
    add = form("/admin/users", session_of(request), field("User name", "name"),
               field("Role", "role", value="engineer", options=ROLES),
               field("Password (for the database door; optional)", "password", "password",
                     required=False), button="Add user")  # fmt: skip
    return page("Users", session_of(request),
                table(["name", "role", "state", "since", ""], rows, "no users"),
                el("h2", None, "Add a user"), add,
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


def _enrolment(request: web.Request, title: str, made: dict[str, Any]) -> web.Response:
    """The new TOTP seed, shown this once: a QR code to scan, or the URI to type."""
    name = made["user"]["name"]
    body = join(
        el("p", None, f"Give this to {name} to scan with an authenticator app. It is shown"
           " only now: the bastion keeps the seed sealed and cannot show it again."),
        el("p", None, el("img", {"src": made["qr_svg"], "alt": f"TOTP QR code for {name}",
                                 "id": "qr", "width": 198, "height": 198})),
        el("details", None, el("summary", None, "Or type the URI"),
           el("pre", {"class": "command", "id": "otpauth"}, made["otpauth_uri"])),
        el("p", None, el("a", {"href": "/admin/users"}, "Back to users")))  # fmt: skip
    return page(title, session_of(request), body, notice=f"{name} ({made['user']['role']})")


async def user_add(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    try:
        made = await _do(request, admin.add_user, name=data.get("name", ""),
                         role=data.get("role", ""),
                         password=data.get("password") or None)  # fmt: skip
    except BastionError as exc:
        return await users_page(request, error=exc.message)
    return _enrolment(request, "New user", made)


async def user_reset(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    try:
        made = await _do(request, admin.reset_totp, data.get("name", ""))
    except BastionError as exc:
        return await users_page(request, error=exc.message)
    return _enrolment(request, "TOTP reset", made)


async def user_disable(request: web.Request) -> web.StreamResponse:
    def said(r: dict[str, Any]) -> str:
        return (f"{r['user']} disabled; {r['grants_revoked']} grant(s) revoked,"
                f" {r['requests_cancelled']} request(s) cancelled, {r['unmask_revoked']} unmask"
                " grant(s) revoked; live sessions end within seconds")  # fmt: skip

    return await _post(request, users_page, admin.disable_user, said)


async def user_unlock(request: web.Request) -> web.StreamResponse:
    return await _post(request, users_page, admin.unlock_user, lambda r: f"{r['user']} unlocked")


# -- targets ------------------------------------------------------------------------------


def _textarea(name: str, label: str) -> Markup:
    return el("p", None, el("label", {"for": name}, label),
              el("textarea", {"name": name, "id": name, "rows": 6, "cols": 64,
                              "required": True, "autocomplete": "off"}))  # fmt: skip


async def targets_page(request: web.Request, notice: str | None = None,
                       error: str | None = None) -> web.Response:  # fmt: skip
    session = session_of(request)
    rows = []
    for t in await _read(request, admin.targets):
        trusted = "" if t["kind"] != "ssh" else "pinned" if t["host_key"] else "not confirmed"
        confirm = (el("a", {"href": f"/admin/targets/trust?name={t['name']}"}, "Host key")
                   if t["kind"] == "ssh" else None)  # fmt: skip
        remove = _row_form(request, "/admin/targets/remove", "Remove", {"name": t["name"]})
        rows.append((t["name"], t["kind"], f"{t['login']}@{t['host']}:{t['port']}",
                     t["database"] or "", trusted,
                     el("span", {"data-target": t["name"]}, confirm, " ", remove)))  # fmt: skip
    ssh = form("/admin/targets/ssh", session, field("Name", "name"), field("Host", "host"),
               field("Port", "port", value="22"), field("Login on the target", "login"),
               _textarea("private_key", "The bastion's private key for it (sealed at once)"),
               button="Add SSH target")  # fmt: skip
    pg = form("/admin/targets/postgres", session, field("Name", "pg_name"),
              field("Host", "pg_host"), field("Port", "pg_port", value="5432"),
              field("Role", "pg_user"), field("Database", "pg_database"),
              field("Role's password (sealed at once)", "pg_password", "password"),
              button="Add PostgreSQL target")  # fmt: skip
    return page("Targets", session,
                table(["name", "kind", "reached as", "database", "host key", ""], rows,
                      "no targets yet"),
                el("h2", None, "Add an SSH target"), ssh,
                el("h2", None, "Add a PostgreSQL target"), pg,
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


async def target_add_ssh(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    try:
        made = await _do(request, admin.add_ssh_target, name=data.get("name", ""),
                         host=data.get("host", ""), port=data.get("port", ""),
                         login=data.get("login", ""),
                         private_key=data.get("private_key", ""))  # fmt: skip
    except BastionError as exc:
        return await targets_page(request, error=exc.message)
    return redirect(f"/admin/targets/trust?name={made['name']}")  # confirm its host key next


async def target_add_postgres(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    fields = {k.removeprefix("pg_"): v for k, v in data.items() if k.startswith("pg_")}
    try:
        made = await _do(request, admin.add_postgres_target, **{
            k: fields.get(k, "") for k in ("name", "host", "port", "user", "database",
                                           "password")})  # fmt: skip
    except BastionError as exc:
        return await targets_page(request, error=exc.message)
    return await targets_page(request, notice=f"postgres target {made['name']} added")


async def trust_page(request: web.Request) -> web.Response:
    """What the target presents now, and a button to pin exactly that."""
    name = request.query.get("name", "")
    try:
        line, fingerprint = await presented_key(core_of(request), name)
    except BastionError as exc:
        return await targets_page(request, error=exc.message)
    confirm = form("/admin/targets/trust", session_of(request),
                   el("input", {"type": "hidden", "name": "name", "value": name}),
                   el("input", {"type": "hidden", "name": "fingerprint", "value": fingerprint}),
                   button="Trust this host key")  # fmt: skip
    body = join(
        el("p", None, f"{name} presents this host key now. Compare the fingerprint with the"
           " target's own (ssh-keygen -lf on its host key file) before you trust it."),
        el("pre", {"class": "command", "id": "fingerprint"}, fingerprint),
        el("pre", {"class": "command", "id": "host-key"}, line), confirm)  # fmt: skip
    return page(f"Host key of {name}", session_of(request), body)


async def trust_post(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    name = data.get("name", "")
    try:  # fetched again: what is pinned is what the target presents now, if confirmed
        presented = await presented_key(core_of(request), name)
        await _do(request, admin.trust_target, name, presented, data.get("fingerprint", ""))
    except BastionError as exc:
        return await targets_page(request, error=exc.message)
    return await targets_page(request, notice=f"{name}: host key {presented[1]} pinned")


async def target_remove(request: web.Request) -> web.StreamResponse:
    return await _post(request, targets_page, admin.remove_target,
                       lambda r: f"target {r['target']} removed; {r['grants_revoked']}"
                       " grant(s) revoked")  # fmt: skip


# -- grants -------------------------------------------------------------------------------


async def grants_page(request: web.Request, notice: str | None = None,
                      error: str | None = None) -> web.Response:  # fmt: skip
    session = session_of(request)
    rows = [(g["id"], g["holder"], g["target"], g["mode"], g["state"], g["starts_at"],
             g["ends_at"], g["granted_by"], g["ticket_ref"] or "", g["reason"],
             el("span", {"data-grant": g["id"]},
                _row_form(request, "/admin/grants/revoke", "Revoke", {"number": g["id"]})))
            for g in await _read(request, admin.grants)]  # fmt: skip
    give = form("/admin/grants", session,
                field("User, or group:NAME", "holder"), field("Target", "target"),
                field("Mode", "mode", value="read", options=MODES),
                field("For (e.g. 2h)", "for", value="1h", required=False),
                field("From (ISO time, optional)", "from", required=False),
                field("Until (ISO time, instead of for)", "until", required=False),
                field("Reason", "reason"), field("Ticket (optional)", "ticket", required=False),
                button="Grant access")  # fmt: skip
    return page("Grants", session,
                table(["id", "holder", "target", "mode", "state", "from", "until", "by",
                       "ticket", "reason", ""], rows, "no grants live or to come"),
                el("h2", None, "Grant access"), give,
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


async def grant_post(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    if data.get("for") and data.get("until"):
        data.pop("for")  # the form pre-fills "for"; an "until" typed in wins
    try:
        made = await _do(request, admin.grant, **_kwargs(admin.grant, data, {}))
    except BastionError as exc:
        return await grants_page(request, error=exc.message)
    said = (
        f"grant {made['id']}: {made['holder']} may reach {made['target']}"
        f" ({made['mode']}) until {made['ends_at']}"
    )
    return await grants_page(request, notice=said)


async def revoke_post(request: web.Request) -> web.StreamResponse:
    return await _post(
        request,
        grants_page,
        admin.revoke,
        lambda r: f"grant {r['id']} revoked ({r['holder']} on {r['target']})",
    )


# -- decisions ----------------------------------------------------------------------------


def _decide(request: web.Request, kind: str, item: dict[str, Any], *,
            consent: bool = False) -> Markup:  # fmt: skip
    if item["yours"]:
        return el("span", {"class": "empty"}, "yours: another admin decides")
    code = _input("code", "your TOTP code")
    approve = _row_form(request, f"/admin/{kind}/approve", "Approve", {"number": item["id"]},
                        *([_input("consent_ref", "consent reference")] if consent else []),
                        code, _input("for", "shorter (e.g. 30m)", required=False))  # fmt: skip
    deny = _row_form(request, f"/admin/{kind}/deny", "Deny", {"number": item["id"]},
                     _input("reason", "why not"), _input("code", "your TOTP code"))  # fmt: skip
    return el("div", {"data-decide": f"{kind}-{item['id']}"}, approve, el("br"), deny)


async def requests_page(request: web.Request, notice: str | None = None,
                        error: str | None = None) -> web.Response:  # fmt: skip
    session = session_of(request)
    core = core_of(request)
    found = await core.run(admin.pending, core, session.user)
    asked = [(r["id"], r["user"], r["target"], r["mode"],
              format_duration(timedelta(seconds=r["duration"])), r["requested_by"],
              r["ticket_ref"] or "", r["reason"], _decide(request, "requests", r))
             for r in found["requests"]]  # fmt: skip
    unmasks = [(g["id"], g["user"], g["target"], ", ".join(g["columns"]), g["subject"],
                g["consent_ref"], g["reason"],
                _decide(request, "unmask-requests", g, consent=True))
               for g in found["unmask_requests"]]  # fmt: skip
    return page("Pending requests", session,
                el("p", None, "Nobody decides on what they asked for or filed; each decision"
                   " takes your own fresh TOTP code."),
                table(["id", "user", "target", "mode", "for", "filed by", "ticket", "reason",
                       ""], asked, "No access requests are waiting."),
                el("h2", None, "Unmask requests"),
                table(["id", "user", "target", "columns", "subject", "consent", "reason", ""],
                      unmasks, "No unmask requests are waiting."),
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


def _decision(fn: Callable[..., Any], verb: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        def said(r: dict[str, Any]) -> str:
            return str(r.get("text") or f"unmask request {r['id']} {verb}d: {r['state']}")

        return await _post(request, requests_page, fn, said, via=via(request, verb))

    return handler


def add_admin(routes: Routes) -> None:
    """The admin's pages and API, every route for admins only."""
    pages: tuple[tuple[str, str, Callable[[web.Request], Any], str], ...] = (
        ("GET", "/admin/users", users_page, "users (admins)"),
        ("POST", "/admin/users", user_add, "add a user"),
        ("POST", "/admin/users/disable", user_disable, "disable (offboard) a user"),
        ("POST", "/admin/users/unlock", user_unlock, "unlock a user"),
        ("POST", "/admin/users/reset-totp", user_reset, "reset a user's TOTP"),
        ("GET", "/admin/targets", targets_page, "targets"),
        ("POST", "/admin/targets/ssh", target_add_ssh, "add an SSH target"),
        ("POST", "/admin/targets/postgres", target_add_postgres, "add a PostgreSQL target"),
        ("GET", "/admin/targets/trust", trust_page, "an SSH target's host key, to confirm"),
        ("POST", "/admin/targets/trust", trust_post, "pin an SSH target's host key"),
        ("POST", "/admin/targets/remove", target_remove, "remove a target"),
        ("GET", "/admin/grants", grants_page, "grants live and to come"),
        ("POST", "/admin/grants", grant_post, "grant access"),
        ("POST", "/admin/grants/revoke", revoke_post, "revoke a grant"),
        ("GET", "/admin/requests", requests_page, "pending requests"),
        ("POST", "/admin/requests/approve", _decision(admin.approve_request, "approve"),
         "approve an access request"),
        ("POST", "/admin/requests/deny", _decision(admin.deny_request, "deny"),
         "deny an access request"),
        ("POST", "/admin/unmask-requests/approve",
         _decision(admin.approve_unmask, "approve"), "approve an unmask request"),
        ("POST", "/admin/unmask-requests/deny", _decision(admin.deny_unmask, "deny"),
         "deny an unmask request"),
    )  # fmt: skip
    for method, path, handler, summary in pages:
        query = ("name",) if path == "/admin/targets/trust" and method == "GET" else ()
        step_up = False if path in OWN_CODE else None  # None: every other write asks
        routes.add(method, path, handler, ADMIN, summary=summary, query=query, step_up=step_up)
    add_admin_api(routes)
    add_step_up(routes)  # the form and call that prove a fresh code for those writes
