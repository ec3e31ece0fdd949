"""The web door: the console and its JSON API (bastion/web/app.py), and the health endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler as NextHandler

from bastion import reload
from bastion.clock import iso
from bastion.config import Listener, Paths
from bastion.core import Core
from bastion.errors import BastionError, Exit
from bastion.live import Killable
from bastion.proxied import ProxiedListener, SourcedProtocol, Trusted
from bastion.web.app import build_app
from bastion.web.metrics import metrics, metrics_setup, on_console
from bastion.web.routes import Handler
from bastion.web.state import CORE_KEY, PROXIED_KEY

log = structlog.get_logger("bastion.web")


class NoCertificate(BastionError):
    """The console would listen beyond loopback without TLS."""

    exit_code = Exit.CONFIG


async def healthz(request: web.Request) -> web.Response:
    """Alive, and the store answers: the audit chain's head sequence number (asked on the
    store's own thread, like every store call from the event loop). Until the node has
    really started (every door listening, its bastion.started event chained) it says
    "starting" with a 503, without waiting for the store, so a balancer's check keeps it
    out while it starts. A node that has lost its
    store for longer than [cluster] store_grace says so, and since when, with a 503 (a load
    balancer's check then sends logins to the other nodes). On a PostgreSQL store, whether
    this node hears the others' decisions; with [recordings] url, whether the object store
    takes uploads and how many finished recordings wait in the spool; with [audit] anchors,
    when the sinks last took the chain's head and since when they fail. A failing object
    store or anchor sink makes the status "degraded", still 200: the node's sessions keep
    their durable audit and spool, and the same sinks fail for every node behind the
    balancer (taking them all out would lock everyone out); the operator is told."""
    core = request.app[CORE_KEY]
    since = core.grace.lost_since
    if since is not None:
        store = {"reachable": False, "since": iso(since)}
        return web.json_response({"status": "failing", "node": core.node, "store": store},
                                 status=503)  # fmt: skip
    if core.stopping:  # draining: the balancer sends new logins to the other nodes
        return web.json_response({"status": "stopping", "node": core.node}, status=503)
    if not core.started:
        return web.json_response({"status": "starting", "node": core.node}, status=503)
    body: dict[str, object] = {"status": "ok", "node": core.node, "store": {"reachable": True},
                               "audit_head": await core.audit_head()}  # fmt: skip
    decisions = core.decisions_health()
    if decisions is not None:
        body["decisions"] = decisions
    degraded = False
    if core.uploads is not None:
        recordings = body["recordings"] = core.uploads.health()
        degraded = recordings.get("object_store") != "ok"
    if core.anchoring is not None:
        anchors = body["anchors"] = core.anchoring.health()
        degraded = degraded or anchors["status"] == "failing"
    if core.exporting is not None:  # each [export] sink: its state, the kind of failure only
        sinks = body["export"] = core.exporting.health()
        degraded = degraded or any(sink["status"] == "failing" for sink in sinks)
    if degraded:
        body["status"] = "degraded"
    return web.json_response(body)


def tls_context(core: Core, listener: Listener) -> ssl.SSLContext | None:
    """TLS with the certificate `bastion init` made. Without one the console serves loopback
    only (and says so); on any other address it refuses to start."""
    paths = core.config.paths
    if not paths.tls_cert.exists():
        if not _loopback(listener.address):
            raise NoCertificate(
                f"listeners.web: no TLS certificate at {paths.tls_cert}; the"
                " console serves other addresses than loopback only over TLS"
            )
        log.warning("web.no_tls", detail="no certificate: serving loopback only, without TLS")
        return None
    return reload.tls_context(paths)


@web.middleware
async def _while_stopping(request: web.Request, handler: NextHandler) -> web.StreamResponse:
    """While the node drains, only /healthz (503 "stopping") and /metrics answer; the console
    says to come back (through the balancer, another node)."""
    if request.app[CORE_KEY].stopping and request.path not in ("/healthz", "/metrics"):
        raise web.HTTPServiceUnavailable(text="bastion: this node is stopping\n")
    return await handler(request)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


class WebDoor:
    """aiohttp on its own listener, sharing the server's event loop."""

    name = "web"

    def __init__(self, listener: Listener, core: Core, metrics_token: bytes | None = None) -> None:
        self.listener = listener
        self.core = core
        public: dict[str, Handler] = {"/healthz": healthz}
        if metrics_token is not None and on_console(core.config):  # else: 404, not served
            public["/metrics"] = metrics
        app = build_app(core, public)
        metrics_setup(app, core, metrics_token)
        app.middlewares.insert(0, _while_stopping)
        self._sources: dict[asyncio.BaseTransport, str] = {}  # clients behind balancers
        app[PROXIED_KEY] = self._sources
        self._runner = web.AppRunner(app, access_log=None)
        self.port = listener.port
        self.live: dict[str, Killable] = {}  # web sign-ins are no target sessions
        self.tls = False
        self._context: ssl.SSLContext | None = None
        self._proxied: ProxiedListener | None = None  # behind load balancers (proxy_from)

    def reload_tls(self, context: ssl.SSLContext | None, tls: Paths) -> str | None:
        """New handshakes use the certificate and key the reload read and checked (`tls`,
        loaded into the listener's own context: aiohttp's site keeps it); connections
        already made keep theirs."""
        if (context is None) != (self._context is None):
            return "paths.tls_cert"
        if self._context is not None:
            self._context.load_cert_chain(tls.tls_cert, tls.tls_key)
        return None

    async def pause(self) -> None:
        """A stop's drain keeps the console's listener: /healthz answers "stopping"."""

    def tell(self, message: str) -> None:
        """Web sign-ins are no target sessions: nothing to tell."""

    async def start(self) -> None:
        context = tls_context(self.core, self.listener)
        self.tls = context is not None
        self._context = context
        await self._runner.setup()
        trusted = Trusted(self.core.config.listeners.proxy_from)
        if trusted:
            where = self.listener.address, self.listener.port
            self._proxied = ProxiedListener(self.name, *where, trusted, self._accepted)
            self.port = await self._proxied.start()
            return
        site = web.TCPSite(self._runner, self.listener.address, self.listener.port,
                           ssl_context=context)  # fmt: skip
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def _accepted(self, sock: socket.socket, source: str) -> None:
        """A connection the balancer-aware listener hands over, with its client's address
        (which the console's handlers then see for this connection's requests)."""
        server, sources = self._runner.server, self._sources
        if server is None:
            sock.close()
            return

        def protocol() -> SourcedProtocol:
            return SourcedProtocol(server(), source, sources)

        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, TimeoutError):  # a failed TLS handshake, a reset
            await loop.connect_accepted_socket(protocol, sock, ssl=self._context)

    async def stop(self) -> None:
        if self._proxied is not None:
            await self._proxied.close()
        await self._runner.cleanup()
