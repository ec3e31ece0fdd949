"""The webhook sender against a real local HTTP server: delivery, retries, giving up, no secrets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bastion.access.requests import Requests
from bastion.notify import Notifier
from tests.harness import Bastion
from tests.realssh import free_port

REASON = "INC-4411 refund stuck in queue"


@dataclass
class Hook:
    """A local webhook receiver that answers with the statuses it is given, then 200."""

    port: int
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T000/s3cret-token"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.content_type, await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook(free_port())
    app = web.Application()
    app.router.add_post("/hooks/T000/s3cret-token", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    yield receiver
    await runner.cleanup()


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[Callable[..., Bastion]]:
    """Bastion homes with alice and web-1 and a webhook; released after the test."""
    made: list[Bastion] = []

    def home(url: str, retries: int = 2) -> Bastion:
        config = f'\n[notify]\nwebhook_url = "{url}"\nretries = {retries}\nretry_after = "2s"\n'
        b = Bastion(tmp_path / f"bastion{len(made)}", config)
        made.append(b)
        b.add_user("alice", key=False)
        b.store.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="deploy",
                           database=None, secret_sealed=b"x", actor="cli:root")  # fmt: skip
        return b

    yield home
    for b in made:
        b.release()


def ask(b: Bastion) -> int:
    rules = Requests(b.store, b.config, b.clock)
    made = rules.request(user="alice", target="web-1", duration=timedelta(hours=1),
                         reason=REASON, requested_by="alice")  # fmt: skip
    return made.id


async def deliver(b: Bastion) -> int:
    async with aiohttp.ClientSession() as http:
        return await Notifier(b.core).deliver_due(http)


async def test_a_request_is_posted_as_slack_compatible_json(
    hook: Hook, homes: Callable[..., Bastion]
) -> None:
    b = homes(hook.url)
    request_id = ask(b)
    assert await deliver(b) == 1
    [(content_type, body)] = hook.received
    payload = json.loads(body)
    assert content_type == "application/json"
    assert payload["event"] == "request.created" and payload["request"] == request_id
    assert payload["text"].startswith("bastion: alice asks for read access to web-1")
    assert b"s3cret" not in body
    assert await deliver(b) == 0  # delivered once, not again
    [row] = b.store.notifications()
    assert row["delivered_at"] is not None and row["attempts"] == 1


async def test_a_failed_post_is_retried_after_a_growing_wait(
    hook: Hook, homes: Callable[..., Bastion]
) -> None:
    b = homes(hook.url)
    hook.statuses = [500, 503]
    ask(b)
    assert await deliver(b) == 0
    assert await deliver(b) == 0  # not due yet: nothing posted
    assert len(hook.received) == 1
    b.clock.advance(timedelta(seconds=2))
    assert await deliver(b) == 0  # 503
    b.clock.advance(timedelta(seconds=3))
    assert await deliver(b) == 0  # the second wait is 4 s
    b.clock.advance(timedelta(seconds=1))
    assert await deliver(b) == 1
    assert len(hook.received) == 3 and len({body for _, body in hook.received}) == 1


async def test_after_the_last_retry_it_gives_up_and_says_so(
    hook: Hook, homes: Callable[..., Bastion]
) -> None:
    b = homes(hook.url, retries=1)
    hook.statuses = [500, 500]
    ask(b)
    await deliver(b)
    b.clock.advance(timedelta(seconds=2))
    await deliver(b)
    b.clock.advance(timedelta(hours=1))
    assert await deliver(b) == 0 and len(hook.received) == 2
    [row] = b.store.notifications()
    assert row["failed_at"] is not None and row["last_error"] == "HTTP 500"
    [event] = b.events("notify.failed")
    assert event.severity == "warning" and json.loads(event.detail)["attempts"] == 2


async def test_an_unreachable_hook_is_an_error_without_the_url(
    homes: Callable[..., Bastion],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/s3cret-token"
    b = homes(url)
    ask(b)
    assert await deliver(b) == 0
    [row] = b.store.notifications()
    assert row["attempts"] == 1 and row["last_error"]
    assert "s3cret" not in row["last_error"]
