"""The web door: for now a health endpoint; the console and JSON API grow here."""

from __future__ import annotations

from aiohttp import web

from bastion.config import Listener
from bastion.core import Core, Killable

CORE_KEY = web.AppKey("core", Core)


async def healthz(request: web.Request) -> web.Response:
    """Alive, and the store answers: the audit chain's head sequence number (asked on the
    store's own thread, like every store call from the event loop)."""
    core = request.app[CORE_KEY]
    return web.json_response({"status": "ok", "audit_head": await core.audit_head()})


class WebDoor:
    """aiohttp on its own listener, sharing the server's event loop."""

    name = "web"

    def __init__(self, listener: Listener, core: Core) -> None:
        self.listener = listener
        app = web.Application()
        app[CORE_KEY] = core
        app.router.add_get("/healthz", healthz)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = listener.port
        self.live: dict[str, Killable] = {}  # no sessions behind this door yet

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listener.address, self.listener.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()
