"""A webhook receiver (or whoever took over its name) that answers a redirect gets the batch
nowhere else: redirects are not followed, the delivery fails, the cursor stays, and the
failure names neither the URL nor its token."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from bastion.config_export import ExportSink
from bastion.export.sinks import SinkError, WebhookSink
from tests.export.test_file_sink import events
from tests.realssh import free_port


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_fails_the_delivery(status: int) -> None:
    stolen: list[bytes] = []
    port = free_port()

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": f"http://127.0.0.1:{port}/steal"})

    async def steal(request: web.Request) -> web.Response:
        stolen.append(await request.read())
        return web.Response(status=204)

    async def run() -> str:
        app = web.Application()
        app.router.add_post("/hook", redirect)
        app.router.add_post("/steal", steal)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/hook?token=s3cret-token"
        sink = WebhookSink(ExportSink("hook", "webhook", url=url), "node-1")
        try:
            with pytest.raises(SinkError) as failed:
                await sink.deliver(events(1, 3))
            return str(failed.value)
        finally:
            await sink.close()
            await runner.cleanup()

    said = asyncio.run(run())
    assert said == f"HTTP {status}" and stolen == []
