"""Every route of the console with the roles allowed on it: an allow-list, checked per request.

A route is added only through `Routes.add`, which takes its roles. The application refuses
to start when its router holds a route that was not declared so (`check_declared`), and the
role check refuses, at request time, any route it finds no declaration for. PUBLIC marks the
few routes that need no sign-in (the sign-in itself, static files, health, the API's
description). A write for admins only also needs a recent TOTP proof (step-up) unless its
declaration says otherwise.

Each route's query parameters and path placeholders are named in bastion/web/params.py with
their schema; `Routes.add` refuses a route naming one that is not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from aiohttp import web

from bastion.access.stepup import STEP_UP_ROLES
from bastion.identity.service import ROLES
from bastion.web.params import placeholders, undescribed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC: frozenset[str] = frozenset()
ANYONE: frozenset[str] = frozenset(ROLES)  # every signed-in person, for their own things
ADMIN: frozenset[str] = frozenset({"admin"})
SAFE = ("GET", "HEAD", "OPTIONS")  # methods that change nothing


class UndeclaredRoute(RuntimeError):
    """A route was added to the router without the roles allowed on it."""


@dataclass(frozen=True)
class Declared:
    """What a route allows: the roles (empty for public), and the OpenAPI words about it."""

    roles: frozenset[str]
    public: bool
    summary: str
    api: bool  # part of /api/v1 (JSON), described in the OpenAPI document
    body: dict[str, object] | None = None  # JSON schema of the request body (API writes)
    query: tuple[str, ...] = ()  # query parameters it accepts (anything else is refused)
    path: tuple[str, ...] = ()  # its path template's placeholders
    step_up: bool = False  # a write that needs a recent TOTP proof (bastion/access/stepup.py)


@dataclass
class Routes:
    """The allow-list: handler by (method, path), and its declaration."""

    router: web.UrlDispatcher
    declared: dict[tuple[str, str], Declared] = field(default_factory=dict)

    def add(self, method: str, path: str, handler: Handler, roles: Collection[str], *,
            summary: str, public: bool = False, body: dict[str, object] | None = None,
            query: tuple[str, ...] = (), step_up: bool | None = None) -> None:  # fmt: skip
        """Declare and add one route; public routes say so, others name at least one role,
        and every parameter it takes has its schema in bastion/web/params.py. A write open
        only to people who may step up (admins, reviewers) needs a recent TOTP proof unless
        it says step_up=False (it asks for a code of its own)."""
        wanted = frozenset(roles)
        if public == bool(wanted) or not wanted <= ANYONE:
            raise UndeclaredRoute(f"{method} {path}: name the roles allowed, or public=True")
        missing = undescribed(tuple(query), path)
        if missing:
            raise UndeclaredRoute(f"{method} {path}: {', '.join(missing)} has no schema"
                                  " in bastion/web/params.py")  # fmt: skip
        if step_up is None:
            step_up = method not in SAFE and bool(wanted) and wanted <= STEP_UP_ROLES
        self.declared[(method, path)] = Declared(wanted, public, summary,
                                                 path.startswith("/api/"), body, tuple(query),
                                                 placeholders(path), step_up)  # fmt: skip
        self.router.add_route(method, path, handler)

    def add_static(self, prefix: str, directory: str) -> None:
        """Static files (CSS): public, read-only."""
        self.declared[("GET", prefix)] = Declared(PUBLIC, True, "static files", False)
        self.router.add_static(prefix, directory, append_version=False)

    def lookup(self, request: web.Request) -> Declared | None:
        """The declaration of the route this request matched (None: there is none)."""
        info = request.match_info.route.resource
        if info is None:
            return None
        path = info.canonical
        method = request.method
        if method == "HEAD":
            method = "GET"
        return self.declared.get((method, path))


ROUTES_KEY = web.AppKey("routes", Routes)


def check_declared(app: web.Application) -> None:
    """Every route in the router must have been declared with its roles (on_startup)."""
    routes = app[ROUTES_KEY]
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        if (route.method, resource.canonical) not in routes.declared:
            raise UndeclaredRoute(f"{route.method} {resource.canonical} has no declared roles")
