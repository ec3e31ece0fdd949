"""Group commit for the doors: events queued from the event loop, written durably in batches
by the store's own process (the scribe)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from bastion.audit.chain import ChainedEvent
from bastion.audit.queries import QueryQueries, Record
from bastion.audit.scribe import Scribe
from bastion.errors import StoreError
from bastion.tasks import spawn

LINGER = 0.04
"""How long a record nobody waits on may sit before its batch is committed (seconds)."""


class AuditWriter:
    """The store's one writer; a record's future resolves once it is on disk.

    While one batch commits, new records queue up and go into the next commit together, so
    many sessions share each fsync without any record being acknowledged before it is durable.
    An urgent record (a statement about to run, a session opening) starts a commit at once;
    one that nobody waits on (a statement's outcome, anything in batched mode) lingers up to
    LINGER for company, so it usually rides along with the next urgent one.

    The commits happen in the scribe, a process of their own: SQLite and the chain's hashing
    then neither hold this process's interpreter lock nor wait for it, so a commit's latency
    does not depend on how busy the doors are.
    """

    def __init__(self, store: QueryQueries, max_batch: int = 1024, linger: float = LINGER, *,
                 observe: Callable[[float, bool], None] | None = None) -> None:  # fmt: skip
        self.store = store
        self._observe = observe  # each commit's seconds and success (bastion/metrics.py)
        self.max_batch = max_batch
        self.linger = linger
        # (record, its future or None, urgent, whom to tell if it is lost, for posted records)
        self._queue: deque[
            tuple[Record, asyncio.Future[ChainedEvent] | None, bool, Callable[[], None] | None]
        ] = deque()
        self._urgent = 0  # urgent records in the queue
        self._wake: asyncio.Future[None] | None = None  # set while the writer sleeps
        self._wake_on_any = False  # the writer sleeps until any record (not only urgent)
        self._stopping = False
        where = store.location if store.location is not None else store.file
        self.scribe = Scribe(where, store.chain_key, store.node)
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    @property
    def queued(self) -> int:
        """Records waiting for a commit (a commit under way not counted)."""
        return len(self._queue)

    async def start(self) -> None:
        self._stopping = False
        await self.scribe.start()
        self._task = spawn(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop the scribe."""
        if self._task is not None:
            self._stopping = True
            self._poke(urgent=True)
            await self._task
            self._task = None
        await self.scribe.stop()

    async def append(self, event: Record) -> ChainedEvent:
        """Queue a record and wait until its batch is committed; raises StoreError if not."""
        return await self.submit(event)

    def submit(self, record: Record, *, urgent: bool = True) -> asyncio.Future[ChainedEvent]:
        """Queue a record; the future resolves once its batch is on disk (or fails)."""
        self._check_running()
        future: asyncio.Future[ChainedEvent] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future, urgent, None))
        if urgent:
            self._urgent += 1
        self._poke(urgent)
        return future

    def submit_all(self, records: Sequence[Record]) -> asyncio.Future[ChainedEvent]:
        """Queue urgent records together; one future resolves once all are on disk, or fails
        if any is not written (even when a full batch splits them)."""
        self._check_running()
        future: asyncio.Future[ChainedEvent] = asyncio.get_running_loop().create_future()

        def lost() -> None:
            if not future.done():
                future.set_exception(StoreError("an audit write failed"))

        queue = self._queue
        for record in records[:-1]:
            queue.append((record, None, True, lost))
        queue.append((records[-1], future, True, None))
        self._urgent += len(records)
        self._poke(True)
        return future

    def post(self, record: Record, lost: Callable[[], None]) -> None:
        """Queue a record nobody waits for (it lingers); `lost` is called if it cannot be
        written. Cheaper than submit: the door posts every statement's outcome."""
        self._check_running()
        self._queue.append((record, None, False, lost))
        self._poke(False)

    def _check_running(self) -> None:
        if self._task is None or self._stopping:
            raise StoreError("the audit writer is not running")

    def _poke(self, urgent: bool) -> None:
        wake = self._wake
        if wake is not None and not wake.done() and (urgent or self._wake_on_any):
            wake.set_result(None)

    async def _sleep(self, timeout: float | None) -> None:
        """Until a record comes (timeout None), or an urgent one or the timeout, whichever first."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        self._wake_on_any = timeout is None
        timer = None if timeout is None else loop.call_later(timeout, _settle, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                await self._sleep(None)
                continue
            if not self._urgent and not self._stopping:
                await self._sleep(self.linger)
            await self._commit_batch()

    async def _commit_batch(self) -> None:
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(len(queue), self.max_batch))]
        self._urgent -= sum(1 for _, _, urgent, _ in batch if urgent)
        records = [record for record, _, _, _ in batch]
        wanted = [i for i, (_, future, _, _) in enumerate(batch) if future is not None]
        began = time.perf_counter()
        try:
            written = await self.scribe.commit(self.store.clock.now(), records, wanted)
        except Exception as exc:  # every waiter learns its record was not written
            if self._observe is not None:
                self._observe(time.perf_counter() - began, False)
            failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"audit write failed: {exc}")
            )
            told: set[Callable[[], None]] = set()
            for _, future, _, lost in batch:
                if future is not None and not future.done():
                    future.set_exception(failure)
                elif lost is not None and lost not in told:
                    told.add(lost)
                    lost()
            return
        self.commits += 1
        if self._observe is not None:
            self._observe(time.perf_counter() - began, True)
        for i, row in zip(wanted, written, strict=True):
            future = batch[i][1]
            if future is not None and not future.done():
                future.set_result(row)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
