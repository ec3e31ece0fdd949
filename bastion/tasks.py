"""Background tasks: each one held until it finishes, and its failure logged rather than lost."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("bastion.tasks")

T = TypeVar("T")

# The event loop keeps only a weak reference to a task: one nobody holds can be collected
# half-way through (an audit row half-written). These are held here until they finish.
_RUNNING: set[asyncio.Task[Any]] = set()


def spawn(work: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Run `work` as a task held until it finishes; if it raises, the error is logged.

    The caller may keep, await or cancel the task as with create_task; awaiting it still
    raises its exception. Cancelling is not a failure and is not logged."""
    task = asyncio.get_running_loop().create_task(work, name=name)
    _RUNNING.add(task)
    task.add_done_callback(_finished)
    return task


def running() -> frozenset[asyncio.Task[Any]]:
    """The background tasks started by spawn that have not finished yet."""
    return frozenset(_RUNNING)


def _finished(task: asyncio.Task[Any]) -> None:
    _RUNNING.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error(
            "task.failed",
            task=task.get_name(),
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
