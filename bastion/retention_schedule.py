"""`bastion serve` runs retention every [retention] every, on one node at a time (a lease on
the store, judged by the store's clock), on the store's thread; a failed run is logged and
tried again at the next turn (nothing is deleted by a run that fails its checks)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from bastion.errors import BastionError
from bastion.retention import LEASE, Runner

if TYPE_CHECKING:
    from bastion.core import Core

log = structlog.get_logger("bastion.retention")
FIRST_AFTER = 300.0  # seconds after start before the first run: the doors settle first


def run_once(core: Core) -> None:
    """One run if this node takes the lease (blocking: call it on the store's thread)."""
    config, store = core.config, core.store
    ttl = max(timedelta(hours=1), config.retention.every / 2)
    if store.take_lease(LEASE, core.node, ttl) is None:
        return
    try:
        objects = None
        if config.recordings.url:
            from bastion.recording.objects import ObjectStore  # noqa: PLC0415 - boto3 if used

            objects = ObjectStore.from_policy(config.recordings, config.path.parent)
        done = Runner(store, core.box, config.retention, core.node, f"node:{core.node}",
                      objects).run()  # fmt: skip
        log.info("retention.ran", **done.public())
    finally:
        store.release_lease(LEASE, core.node)


async def run_every(core: Core) -> None:
    """Retention every [retention] every until cancelled."""
    await asyncio.sleep(FIRST_AFTER)
    while True:
        try:
            await core.run(run_once, core)
        except BastionError as exc:
            log.error("retention.failed", error=exc.message)
        await asyncio.sleep(core.config.retention.every.total_seconds())
