"""The admin's JSON API under /api/v1/admin/: the calls of bastion/console/admin.py, each route
for admins only, each write with its body's schema (what names the thing acted on is in the
body, so the OpenAPI document describes every input)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from bastion.console import admin
from bastion.core import Core
from bastion.errors import UsageError
from bastion.web.api import V1, body_of, endpoint, schema
from bastion.web.routes import ADMIN, Routes
from bastion.web.state import client_of, core_of, session_of

USER = schema("name", "role", optional=("password",))
NAMED = schema("name")
DISABLE = schema("name", optional=("reason",))
SSH_TARGET = schema("name", "host", "port", "login", "private_key")
PG_TARGET = schema("name", "host", "port", "user", "database", "password")
TRUST = schema("name", "fingerprint")
GRANT = schema("holder", "target", "reason",
               optional=("mode", "for", "from", "until", "ticket"))  # fmt: skip
NUMBERED = schema("id")
APPROVE = schema("id", "code", optional=("for",))
DENY = schema("id", "code", "reason")
APPROVE_UNMASK = schema("id", "code", "consent_ref", optional=("for",))

Call = Callable[[web.Request], Any]
# Decisions carry their own fresh TOTP code, a stronger proof than a recent one: they ask
# for no step-up (every other admin write does: bastion/access/stepup.py).
OWN_CODE = frozenset(f"/admin/{kind}/{verb}" for kind in ("requests", "unmask-requests")
                     for verb in ("approve", "deny"))  # fmt: skip


def via(request: web.Request, what: str) -> str:
    """How a decision's TOTP code arrived, for the audit trail (never the code)."""
    return f"web:{client_of(request)}:{what}"


def writes(wanted: dict[str, Any], fn: Callable[..., Any], **fixed: Any) -> Call:
    """A write: the checked body's fields, renamed to the call's keywords, as the admin."""

    async def call(request: web.Request) -> Any:
        data = await body_of(request, wanted)
        core, actor = core_of(request), session_of(request).user
        kwargs = {KEYWORDS.get(k, k): v for k, v in data.items()}
        extra = {k: via(request, v) if k == "via" else v for k, v in fixed.items()}
        return await core.run(lambda: fn(core, actor, **kwargs, **extra))

    return call


KEYWORDS = {"for": "for_", "from": "from_", "holder": "holder_text", "id": "number"}


def reads(fn: Callable[..., Any], *, mine: bool = False) -> Call:
    async def call(request: web.Request) -> Any:
        core = core_of(request)
        if mine:
            return await core.run(fn, core, session_of(request).user)
        return await core.run(fn, core)

    return call


async def presented_key(core: Core, name: str) -> tuple[str, str]:
    """The host key an SSH target presents now: its OpenSSH line and SHA256 fingerprint."""
    from bastion.ssh.upstream import fetch_host_key  # noqa: PLC0415 - pulls in asyncssh

    host, port = await core.run(admin.ssh_target, core, name)
    key = await fetch_host_key(host, port)
    fingerprint: str = key.get_fingerprint("sha256")
    return key.export_public_key("openssh").decode().strip(), fingerprint


async def host_key(request: web.Request) -> Any:
    """What an SSH target presents now, to be confirmed with POST /admin/targets/trust."""
    name = request.query.get("name", "")
    if not name:
        raise UsageError("name the target: ?name=NAME")
    line, fingerprint = await presented_key(core_of(request), name)
    return {"target": name, "fingerprint": fingerprint, "host_key": line}


async def trust(request: web.Request) -> Any:
    data = await body_of(request, TRUST)
    core, actor = core_of(request), session_of(request).user
    presented = await presented_key(core, data["name"])
    return await core.run(admin.trust_target, core, actor, data["name"], presented,
                          data["fingerprint"])  # fmt: skip


A = "/admin"
ROUTES: tuple[tuple[str, str, Call, str, dict[str, Any] | None], ...] = (
    ("GET", "/users", reads(admin.users), "Every user with their state (admins)", None),
    ("POST", "/users", writes(USER, admin.add_user),
     "Add a user; answers their TOTP enrolment (otpauth URI and QR code) once", USER),
    ("POST", "/users/disable", writes(DISABLE, admin.disable_user),
     "Offboard a user: their grants, requests, unmask grants and sessions end", DISABLE),
    ("POST", "/users/unlock", writes(NAMED, admin.unlock_user),
     "Unlock a user locked out by failed sign-ins", NAMED),
    ("POST", "/users/reset-totp", writes(NAMED, admin.reset_totp),
     "Give a user a new TOTP seed; answers the enrolment once", NAMED),
    ("GET", "/targets", reads(admin.targets), "Every target (admins)", None),
    ("POST", "/targets/ssh", writes(SSH_TARGET, admin.add_ssh_target),
     "Add an SSH target with its private key (sealed); confirm its host key next", SSH_TARGET),
    ("POST", "/targets/postgres", writes(PG_TARGET, admin.add_postgres_target),
     "Add a PostgreSQL target with its role's password (sealed)", PG_TARGET),
    ("GET", "/targets/host-key", host_key,
     "The host key an SSH target presents now (?name=NAME), to confirm", None),
    ("POST", "/targets/trust", trust,
     "Pin an SSH target's host key, if it presents the fingerprint confirmed", TRUST),
    ("POST", "/targets/remove", writes(NAMED, admin.remove_target),
     "Remove a target; its grants are revoked", NAMED),
    ("GET", "/grants", reads(admin.grants), "Grants live now or to come (admins)", None),
    ("POST", "/grants", writes(GRANT, admin.grant),
     "Grant a user or group:NAME access to a target for a window", GRANT),
    ("POST", "/grants/revoke", writes(NUMBERED, admin.revoke),
     "Revoke a grant; its live sessions end", NUMBERED),
    ("GET", "/pending", reads(admin.pending, mine=True),
     "Pending access and unmask requests, yours marked", None),
    ("POST", "/requests/approve",
     writes(APPROVE, admin.approve_request, via="approve"),
     "Approve someone else's access request, with your fresh TOTP code", APPROVE),
    ("POST", "/requests/deny", writes(DENY, admin.deny_request, via="deny"),
     "Deny someone else's access request, with a reason and your fresh TOTP code", DENY),
    ("POST", "/unmask-requests/approve",
     writes(APPROVE_UNMASK, admin.approve_unmask, via="approve"),
     "Approve someone else's unmask request: its consent reference and your TOTP code",
     APPROVE_UNMASK),
    ("POST", "/unmask-requests/deny", writes(DENY, admin.deny_unmask, via="deny"),
     "Deny someone else's unmask request, with a reason and your fresh TOTP code", DENY),
)  # fmt: skip


def add_admin_api(routes: Routes) -> None:
    for method, path, call, summary, body in ROUTES:
        query = ("name",) if path == "/targets/host-key" else ()
        step_up = False if f"{A}{path}" in OWN_CODE else None  # None: a write asks
        routes.add(method, f"{V1}{A}{path}", endpoint(call), ADMIN, summary=summary, body=body,
                   query=query, step_up=step_up)  # fmt: skip
