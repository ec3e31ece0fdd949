"""The console's page frame: head, navigation by role, sign-out, and forms with their CSRF token."""

from __future__ import annotations

from aiohttp import web

from bastion.audit import WebSession
from bastion.web.html import Markup, el, join

NAV = (  # (path, label, roles)
    ("/access", "My access", ("engineer", "admin", "reviewer")),
    ("/unmask", "Unmasking", ("engineer", "admin", "reviewer")),
    ("/ticket", "Database ticket", ("engineer", "admin", "reviewer")),
    ("/sessions", "My sessions", ("engineer", "admin", "reviewer")),
    ("/admin/users", "Users", ("admin",)),
    ("/admin/targets", "Targets", ("admin",)),
    ("/admin/grants", "Grants", ("admin",)),
    ("/admin/requests", "Pending", ("admin",)),
    ("/live", "Live sessions", ("admin", "reviewer")),
    ("/break-glass", "Break-glass", ("admin", "reviewer")),
    ("/review/sessions", "Replay", ("engineer", "admin", "reviewer")),
    ("/review/weeks", "Weekly reviews", ("admin", "reviewer")),
    ("/review/queries", "Query log", ("admin", "reviewer")),
    ("/review/consents", "Consent ledger", ("admin", "reviewer")),
    ("/review/events", "Audit log", ("admin", "reviewer")),
)


def csrf_input(session: WebSession) -> Markup:
    return el("input", {"type": "hidden", "name": "csrf", "value": session.csrf_token})


def form(action: str, session: WebSession, *fields: object, button: str,
         multipart: bool = False) -> Markup:  # fmt: skip
    """A POST form to `action` carrying the session's CSRF token."""
    enctype = "multipart/form-data" if multipart else None
    return el("form", {"method": "post", "action": action, "enctype": enctype},
              csrf_input(session), *fields, el("button", {"type": "submit"}, button))  # fmt: skip


def field(label: str, name: str, kind: str = "text", *, required: bool = True,
          value: str | None = None, options: tuple[str, ...] = ()) -> Markup:  # fmt: skip
    """A labelled input (or a select when options are given)."""
    if options:
        control = el(
            "select",
            {"name": name, "id": name},
            *(el("option", {"value": o, "selected": o == value}, o) for o in options),
        )
    else:
        control = el("input", {"type": kind, "name": name, "id": name, "required": required,
                               "value": value, "autocomplete": "off"})  # fmt: skip
    return el("p", None, el("label", {"for": name}, label), control)


def _nav(session: WebSession | None) -> Markup:
    if session is None:
        return el("nav", None, el("span", {"class": "brand"}, "bastion"))
    links = [el("a", {"href": path}, label) for path, label, roles in NAV if session.role in roles]
    who = el("span", {"class": "who"}, f"{session.user} ({session.role})")
    out = el(
        "form",
        {"method": "post", "action": "/signout", "class": "inline"},
        csrf_input(session),
        el("button", {"type": "submit", "id": "signout"}, "Sign out"),
    )
    return el("nav", None, el("span", {"class": "brand"}, "bastion"), *links, who, out)


def page(title: str, session: WebSession | None, *body: object, status: int = 200,
         notice: str | None = None, error: str | None = None) -> web.Response:  # fmt: skip
    """A whole page; `notice` and `error` are shown above the body."""
    head = el("head", None, el("meta", {"charset": "utf-8"}),
              el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
              el("title", None, f"{title} - bastion"),
              el("link", {"rel": "icon", "href": "data:,"}),
              el("link", {"rel": "stylesheet", "href": "/static/console.css"}))  # fmt: skip
    flash = join(
        el("p", {"class": "notice", "role": "status"}, notice) if notice else None,
        el("p", {"class": "error", "role": "alert"}, error) if error else None,
    )
    main = el("main", None, el("h1", None, title), flash, *body)
    doc = "<!DOCTYPE html>\n" + el(
        "html", {"lang": "en"}, head, el("body", None, el("header", None, _nav(session)), main)
    )
    return web.Response(text=doc, status=status, content_type="text/html", charset="utf-8")


def refusal_page(status: int, message: str) -> web.Response:
    title = "Refused" if status in (401, 403) else "Error"
    back = el("p", None, el("a", {"href": "/access"}, "Back to the console"))
    return page(title, None, back, status=status, error=message)
