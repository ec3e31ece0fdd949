"""What a node does when it has lost its store past [cluster] store_grace (StoreGrace says
when): end every session it serves, and, when a look completes again, chain the loss and close
the rows no door could close meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from bastion.audit import Event
from bastion.clock import iso
from bastion.errors import BastionError
from bastion.live import Killable

if TYPE_CHECKING:
    from bastion.core import Core

log = structlog.get_logger("bastion.core")
STATE = "store_lost"  # how such a session's row ends


class StoreLoss:
    """The sessions one node ended for a lost store, until the store answers again."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.said = False  # this loss is logged

    async def end_all(self, core: Core, live: Mapping[str, Killable]) -> None:
        """Fail closed: end every session this node serves (each row closes when its door
        can write it, or in `found_again`); said once per loss, and again for any session
        that appears meanwhile."""
        if live.keys() - self.ended or not self.said:
            since = iso(core.grace.lost_since or core.clock.now())
            log.error("store.lost", node=core.node, since=since, ending=sorted(live))
        self.ended.update(live)
        self.said = True
        message = core.grace.ended_message()
        # All at once: a door's ending may wait (a cancel sent to a database), and no session
        # waits for another's to be cut.
        await asyncio.gather(*(_end(key, session, message) for key, session in live.items()))
        if live:
            core.sessions_changed()

    async def found_again(self, core: Core, live: Mapping[str, Killable],
                          since: datetime | None, now: datetime) -> None:  # fmt: skip
        """The store answers again: the loss goes into the audit trail, and the rows of the
        sessions ended for it that no door closed are closed now."""
        ended, self.ended, self.said = self.ended - live.keys(), set(), False
        detail = {"node": core.node, "since": iso(since or now), "back_at": iso(now),
                  "grace_seconds": int(core.grace.grace.total_seconds())}  # fmt: skip
        log.warning("store.back", sessions_ended=len(ended), **detail)
        with contextlib.suppress(BastionError):  # logged above; the store may fail again
            await core.audit(Event("cluster.store_lost", f"node:{core.node}", core.node, "high",
                                   detail=detail))  # fmt: skip
        for session_id in sorted(ended):
            with contextlib.suppress(BastionError):  # its door closed it already
                await core.run(core.store.close_session, session_id, STATE,
                               core.grace.ended_message())  # fmt: skip
        core.sessions_changed()


async def _end(session_id: str, session: Killable, message: str) -> None:
    try:
        await session.terminate(STATE, message)
    except Exception as exc:  # one session's fault never keeps the others on
        log.error("session_end_failed", session=session_id, state=STATE, error=repr(exc))
