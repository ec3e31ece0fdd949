"""The server's helpers for recordings: the object store's check at start, the spool's
lock, and the upload completer's own thread and its calls on the store's thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import structlog

from bastion.audit.sessions import RecordingInfo
from bastion.errors import BastionError, Exit
from bastion.recording.model import RecordingError
from bastion.recording.objects import ObjectStore, ObjectStoreError
from bastion.recording.reader import file_digest
from bastion.recording.upload import hold_spool

if TYPE_CHECKING:
    from bastion.core import Core

log = structlog.get_logger("bastion.server")
P = ParamSpec("P")
T = TypeVar("T")
STORE_WAIT = 60.0  # seconds the completer's thread waits for one store call


class ServeError(BastionError):
    """A door could not open; the configuration (or another process) is in the way."""

    exit_code = Exit.CONFIG


START_CHECK = 2.0  # seconds start-up waits for the object store's answer; then it goes on


async def check_store(store: ObjectStore) -> None:
    """Prove the bucket and credentials, waiting START_CHECK s at most (in a thread of its
    own): refused credentials or a missing bucket stop the start; a store that cannot be
    reached, or does not answer in time, only delays uploads (its late answer is logged)."""
    checked: concurrent.futures.Future[None] = concurrent.futures.Future()

    def check() -> None:
        try:
            store.check()
        except BaseException as exc:  # handed to whoever waits
            checked.set_exception(exc)
        else:
            checked.set_result(None)

    threading.Thread(target=check, name="bastion-store-check", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(checked)), START_CHECK)
    except ObjectStoreError as exc:
        if exc.lasting:
            raise ServeError(exc.message) from None
        log.warning("recordings.object_store_unreachable", error=exc.message)
    except TimeoutError:
        log.warning("recordings.object_store_not_answering", waited=START_CHECK,
                    note="uploads wait in the spool; the check goes on")  # fmt: skip
        checked.add_done_callback(_late_answer)


def _late_answer(checked: concurrent.futures.Future[None]) -> None:
    """The start-up check's answer after the doors opened: refused credentials are an error
    to act on (every upload will fail; the spool keeps the recordings)."""
    exc = checked.exception()
    if isinstance(exc, ObjectStoreError) and exc.lasting:
        log.error("recordings.object_store_refused", error=exc.message)
    elif exc is not None:
        log.warning("recordings.object_store_unreachable", error=str(exc))
    else:
        log.info("recordings.object_store_ok")


def hold_spool_or_refuse(spool: Path) -> int:
    """The spool's lock (recording.upload.hold_spool), or ServeError in one line."""
    held = hold_spool(spool)
    if isinstance(held, str):
        raise ServeError(held)
    return held


async def in_thread(fn: Callable[[], T], name: str) -> T:
    """fn() in a daemon thread of its own, waited for (a cancelled wait leaves it to end)."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        if not done.set_running_or_notify_cancel():
            return  # the wait was cancelled before the thread ran
        try:
            result = fn()
        except BaseException as exc:  # handed to whoever waits
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                done.set_exception(exc)
        else:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                done.set_result(result)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await asyncio.wrap_future(done)


class OnStore:
    """For the completer's thread: one store call on the store's thread, waited for."""

    def __init__(self, core: Core, loop: asyncio.AbstractEventLoop) -> None:
        self._core, self._loop = core, loop

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        done = asyncio.run_coroutine_threadsafe(self._core.run(fn, *args, **kwargs), self._loop)
        return done.result(timeout=STORE_WAIT)


def recording_left(path: str) -> RecordingInfo | None:
    """The hash and size of what a crash left of a recording (None: nothing is there)."""
    try:
        digest, size = file_digest(Path(path))
    except RecordingError:
        return None
    return RecordingInfo(path, digest, size)
