"""The console's aiohttp application: routes with their roles, the guards, the static files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from bastion.access.preauth import PreauthLimiter, PreauthPolicy
from bastion.core import Core
from bastion.web.admin_pages import add_admin
from bastion.web.api import add_api
from bastion.web.events import add_events
from bastion.web.live import add_live
from bastion.web.openapi import add_openapi
from bastion.web.pages import MAX_DOCUMENT, add_pages
from bastion.web.review import add_review
from bastion.web.routes import ROUTES_KEY, Handler, Routes, check_declared
from bastion.web.security import add_headers, guard
from bastion.web.state import CORE_KEY, LIMITER_KEY

STATIC = Path(__file__).with_name("static")


async def _check(app: web.Application) -> None:
    check_declared(app)


def build_app(core: Core, public: Mapping[str, Handler] | None = None) -> web.Application:
    """The whole console. `public` adds GET routes that need no sign-in (the health check)."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_DOCUMENT + 64 * 1024)
    app[CORE_KEY] = core
    app[LIMITER_KEY] = PreauthLimiter(PreauthPolicy())
    routes = Routes(app.router)
    app[ROUTES_KEY] = routes
    for path, handler in (public or {}).items():
        routes.add("GET", path, handler, (), public=True, summary="health")
    add_pages(routes)
    add_api(routes)
    add_live(routes)
    add_admin(routes)
    add_review(routes)
    add_events(routes)
    add_openapi(routes)
    routes.add_static("/static", str(STATIC))
    app.on_startup.append(_check)
    app.on_response_prepare.append(add_headers)
    return app
