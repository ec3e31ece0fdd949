"""A server's stop cancels its waiting loops; a cancel landing in the same turn as the event
they wait for must still end them (3.11's asyncio.wait_for returned the event instead, and
the loop went on: a stop that hung for ever, seen once in the suite after a web sign-out)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from bastion.audit.listen import DecisionFeed
from bastion.clock import FakeClock
from bastion.live import SessionFeed


async def _never_connects() -> object:
    raise OSError("not used")


async def _cancel_as_it_is_set(wait: Callable[[], Awaitable[object]],
                               wake: Callable[[], None]) -> None:  # fmt: skip
    async def loop() -> None:
        while True:  # a watcher's loop: it only ends when cancelled
            await wait()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop is waiting now
    wake()
    task.cancel()  # the same turn: the stop's cancel and the decision's wake-up
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)  # a swallowed cancel would leave it looping: 5 s
    assert task.cancelled()


async def test_a_decision_feeds_wait_ends_when_cancelled_as_it_wakes() -> None:
    feed = DecisionFeed(_never_connects, FakeClock(datetime(2026, 12, 7, tzinfo=UTC)))
    await _cancel_as_it_is_set(lambda: feed.wait(60), feed._wake)


async def test_a_session_feeds_wait_ends_when_cancelled_as_it_changes() -> None:
    feed = SessionFeed()
    await _cancel_as_it_is_set(lambda: feed.wait(60), feed.notify)
