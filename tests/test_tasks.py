"""Background tasks are held until they finish, and a failure is logged rather than lost."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import weakref

import pytest

from bastion import logs
from bastion.tasks import running, spawn


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def test_a_failing_task_is_logged_with_its_name_and_traceback() -> None:
    out = io.StringIO()
    logs.configure("json", "info", stream=out)

    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the store went away")

    task = spawn(broken(), name="audit-flush")
    await asyncio.wait([task])
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    failed = [line for line in _lines(out) if line["event"] == "task.failed"]
    assert len(failed) == 1
    assert failed[0]["task"] == "audit-flush"
    assert failed[0]["level"] == "error"
    assert failed[0]["error"] == "RuntimeError: the store went away"
    assert "Traceback" in str(failed[0]["exception"])
    assert task not in running()
    with pytest.raises(RuntimeError, match="the store went away"):
        await task  # whoever holds the task still sees its exception


async def test_a_cancelled_or_successful_task_is_not_a_failure() -> None:
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    forever = spawn(asyncio.Event().wait(), name="waits")
    done = spawn(asyncio.sleep(0, result=7), name="quick")
    await asyncio.sleep(0)
    forever.cancel()
    await asyncio.wait([forever, done])
    await asyncio.sleep(0)
    assert done.result() == 7
    assert not [line for line in _lines(out) if line["event"] == "task.failed"]
    assert forever not in running() and done not in running()


async def test_a_task_nobody_else_holds_survives_garbage_collection_and_finishes() -> None:
    # The loop holds a task only weakly while it waits on a future nobody else references:
    # without the helper such a task is collected half-way ("Task was destroyed but it is
    # pending!") and the rest of its work never happens.
    finished: list[str] = []
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gate_ref = weakref.ref(gate)

    async def work(waiting_on: asyncio.Future[None]) -> None:
        await waiting_on
        finished.append("written")

    task_ref = weakref.ref(spawn(work(gate), name="orphan"))
    del gate
    await asyncio.sleep(0)
    gc.collect()
    task = task_ref()
    assert task is not None and task in running()
    opened = gate_ref()
    assert opened is not None
    opened.set_result(None)
    del opened, task
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert finished == ["written"]


async def test_a_finished_task_is_released() -> None:
    task = spawn(asyncio.sleep(0), name="short")
    assert task in running()
    await task
    await asyncio.sleep(0)
    assert task not in running()
    ref = weakref.ref(task)
    del task
    gc.collect()
    assert ref() is None  # the helper kept nothing of it
