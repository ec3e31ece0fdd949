"""/metrics over HTTP: on the console behind a bearer token, or on a listener of its own."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Mapping
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bastion.config import Config
from bastion.core import Core
from bastion.errors import BastionError, Exit
from bastion.live import Killable
from bastion.privatefiles import NotPrivate, read_private
from bastion.tasks import spawn
from bastion.web.state import CORE_KEY

log = structlog.get_logger("bastion.metrics")
STORE_WAIT = 2.0  # seconds a scrape waits for the store's counts; then it goes without them
MIN_TOKEN = 16  # characters: a token shorter than this is refused at start-up
TOKEN_KEY = web.AppKey("metrics_token", bytes)


class MetricsError(BastionError):
    """The [metrics] settings cannot be served (its token file, its listener)."""

    exit_code = Exit.CONFIG


def load_token(config: Config) -> bytes | None:
    """The bearer token of [metrics] token_file (its first line), or None when unset;
    MetricsError in one line when it cannot be used."""
    name = config.metrics.token_file
    if not name:
        return None
    path = config.path.parent / Path(name)
    try:
        text = read_private(path, 4096).decode("utf-8")
    except NotPrivate as exc:
        raise MetricsError(f"metrics.token_file: {path} must be a file only its owner can"
                           f" read ({exc})") from None  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsError(f"metrics.token_file: cannot read {path}: {exc}") from None
    token = text.splitlines()[0].strip() if text.strip() else ""
    if len(token) < MIN_TOKEN:
        raise MetricsError(f"metrics.token_file: {path} holds no token of at least"
                           f" {MIN_TOKEN} characters on its first line")  # fmt: skip
    return token.encode()


def on_console(config: Config) -> bool:
    """Whether the web listener serves /metrics: only without a listener of its own, and
    only behind a token."""
    return not config.metrics.listen and bool(config.metrics.token_file)


def authorised(request: web.Request, token: bytes | None) -> bool:
    """No token configured (a loopback listener), or the request carries it."""
    if token is None:
        return True
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token)


async def metrics(request: web.Request) -> web.Response:
    """The metrics in the Prometheus text format; 401 without the token."""
    core = request.app[CORE_KEY]
    if not authorised(request, request.app.get(TOKEN_KEY)):
        return web.Response(status=401, text="refused: send the metrics bearer token\n",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})  # fmt: skip
    await _refresh(core, request.app[LOOK_KEY])
    return web.Response(body=core.metrics.exposition(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})  # fmt: skip


class _Look:
    """The store's count a scrape asked for and that has not answered yet."""

    def __init__(self) -> None:
        self.future: asyncio.Future[int] | None = None


async def _refresh(core: Core, look: _Look) -> None:
    """The store's counts, on its thread, waited for STORE_WAIT at most; one look at a time
    (a hanging store gets no queue of them), the last answer kept until a new one comes."""
    counts = core.metrics.store_counts
    if look.future is None or look.future.done():
        look.future = spawn(core.notifications_pending(), name="metrics-count")
    try:
        counts.notifications_pending = await asyncio.wait_for(asyncio.shield(look.future),
                                                              STORE_WAIT)  # fmt: skip
    except TimeoutError:
        return
    except Exception as exc:  # the store failed: the series goes until it answers again
        counts.notifications_pending = None
        log.warning("metrics.store_failed", error=type(exc).__name__)


LOOK_KEY = web.AppKey("metrics_look", _Look)


def metrics_setup(app: web.Application, core: Core, token: bytes | None) -> None:
    """What /metrics reads from its application (the console's, or its own listener's)."""
    app[CORE_KEY] = core
    app[LOOK_KEY] = _Look()
    if token is not None:
        app[TOKEN_KEY] = token


class MetricsListener:
    """[metrics] listen: /metrics alone on its own address (plain HTTP), on the server's loop."""

    def __init__(self, core: Core, token: bytes | None) -> None:
        self.core = core
        app = web.Application()
        metrics_setup(app, core, token)
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = 0

    async def start(self) -> None:
        where = self.core.config.metrics.address()
        assert where is not None
        await self._runner.setup()
        site = web.TCPSite(self._runner, where[0], where[1])
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise MetricsError(f"metrics.listen: cannot listen on {where[0]}:{where[1]}:"
                               f" {exc.strerror or exc}") from None  # fmt: skip
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else where[1]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._runner.cleanup()


async def start_metrics(core: Core, live: dict[str, Mapping[str, Killable]],
                        token: bytes | None) -> MetricsListener | None:  # fmt: skip
    """Count the doors' live sessions; and with [metrics] listen, start its own listener
    (None without one). Raises MetricsError when it cannot listen."""
    if core.metrics.sources is not None:
        core.metrics.sources.doors = live
    if not core.config.metrics.listen:
        return None
    listener = MetricsListener(core, token)
    await listener.start()
    log.info("metrics.listening", address=core.config.metrics.listen, port=listener.port)
    return listener
