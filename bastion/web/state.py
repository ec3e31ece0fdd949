"""What the console's handlers find on the application and on each request."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bastion.access.preauth import PreauthLimiter
from bastion.audit import WebSession
from bastion.core import Core

CORE_KEY = web.AppKey("core", Core)
LIMITER_KEY = web.AppKey("signin_limiter", PreauthLimiter)
SESSION_KEY = web.RequestKey("web_session", WebSession)
# Each connection a trusted load balancer handed over, and the client its PROXY header named.
PROXIED_KEY: web.AppKey[dict[asyncio.BaseTransport, str]] = web.AppKey("proxied_sources")


def core_of(request: web.Request) -> Core:
    return request.app[CORE_KEY]


def session_of(request: web.Request) -> WebSession:
    """The signed-in person's web session (the role check put it there)."""
    return request[SESSION_KEY]


def client_of(request: web.Request) -> str:
    """The client's address: from a trusted balancer's header, or the connection's peer."""
    proxied = request.app.get(PROXIED_KEY)
    if proxied and request.transport in proxied:
        return proxied[request.transport]
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else "?"
