"""Group commit for the doors: events queued from the event loop, written durably in batches."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from bastion.audit.chain import ChainedEvent
from bastion.audit.queries import QueryQueries, Record
from bastion.errors import StoreError


class AuditWriter:
    """The store's one writer thread; `append` returns only once the event is on disk.

    While one batch commits, new events queue up and go into the next commit together, so
    many sessions share each fsync without any event being acknowledged before it is durable.
    """

    def __init__(self, store: QueryQueries, max_batch: int = 1024) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Record, asyncio.Future[ChainedEvent]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def append(self, event: Record) -> ChainedEvent:
        """Queue a record and wait until its batch is committed; raises StoreError if not."""
        return await self.submit(event)

    def submit(self, record: Record) -> asyncio.Future[ChainedEvent]:
        """Queue a record; the future resolves once its batch is on disk (or fails)."""
        if self._task is None:
            raise StoreError("the audit writer is not running")
        future: asyncio.Future[ChainedEvent] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((record, future))
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            records = [record for record, _ in batch]
            try:
                rows = await loop.run_in_executor(self._executor, self.store.write_batch, records)
            except Exception as exc:  # every waiter learns its event was not written
                failure = (
                    exc if isinstance(exc, StoreError) else StoreError(f"audit write failed: {exc}")
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
            else:
                self.commits += 1
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():
                        future.set_result(row)
            finally:
                for _ in batch:
                    self._queue.task_done()
