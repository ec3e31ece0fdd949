"""The session watcher's loop: a tick every WATCH_EVERY starts a look at the store (Core's
`_watch_once`) unless one is running, judges the store's grace on the monotonic clock, and
ends every session this node serves once the grace has run out (bastion/access/storegrace.py
says why no other node takes it for gone before that)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from bastion.access.enforce import overstayed
from bastion.access.storegrace import Moment, presence_ttl
from bastion.audit.cluster import node_lease
from bastion.live import Killable
from bastion.tasks import spawn

if TYPE_CHECKING:
    from bastion.core import Core

WATCH_EVERY = 0.5  # seconds between looks for kills and ended access
WATCH_SOONEST = 0.05  # seconds at least between two looks, however often decisions wake it
log = structlog.get_logger("bastion.core")
Look = asyncio.Task[Exception | None]  # one look of the session watcher: what failed it
Lives = Sequence[Mapping[str, Killable]]


class SessionWatch:
    """One watcher for every door's live sessions; `tick` is one step of its loop."""

    def __init__(self, core: Core, lives: Lives) -> None:
        self.core, self.lives = core, lives
        self.look: Look | None = None
        self.ticks = 0
        self.began = self.moment()
        self._recovering: asyncio.Task[None] | None = None

    def moment(self) -> Moment:
        return Moment(self.ticks, self.core.clock.monotonic(), self.core.clock.now())

    async def run(self) -> None:
        """Tick until cancelled; start-up has just read and written the store."""
        self.core.grace.looked(self.began, self.began)
        try:
            while True:
                await self.pause()
                await self.tick()
        finally:
            self.stop()

    def stop(self) -> None:
        for task in (self.look, self._recovering):
            if task is not None:
                task.cancel()

    async def tick(self) -> None:
        """Take the last look's outcome, judge the grace, start the next look. Nothing here
        waits for the store: a store that hangs never keeps the grace from being judged."""
        core, look = self.core, self.look
        self.ticks += 1
        now = self.moment()
        missed = look is not None and not look.done()
        if look is not None and look.done():
            problem = None if look.cancelled() else look.result()
            if look.cancelled() or problem is not None:  # keep watching; it may come back
                if not core.grace.misses:  # once a run of failures, not twice a second
                    log.error("session_watch_failed", error=repr(problem))
                missed = True
            else:
                since = core.grace.lost_since
                if core.grace.looked(self.began, now):
                    self._found_again(since, now.wall)
            self.look = None
        if missed and (core.grace.missed(now) or core.grace.lost):
            await core.store_loss.end_all(core, merged(self.lives))
        if self.look is None:
            self.look = spawn(self._look(), name="watch-look")
            self.began = now

    def _found_again(self, since: datetime | None, wall: datetime) -> None:
        """Chain the loss and close the rows in a task of its own: the next ticks go on."""
        work = self.core.store_loss.found_again(self.core, merged(self.lives), since, wall)
        self._recovering = spawn(work, name="store-found-again")

    async def _look(self) -> Exception | None:
        """One look; what made it fail, if it failed (the tick logs it)."""
        try:
            await self.core._watch_once(self.lives)
        except Exception as exc:
            return exc
        return None

    async def pause(self) -> None:
        """WATCH_EVERY, or less when the decision feed hears that a node (or the CLI) ended
        or refused access; never less than WATCH_SOONEST, however often it is woken."""
        feed = self.core.decisions
        if feed is None:
            await asyncio.sleep(WATCH_EVERY)
            return
        await asyncio.sleep(WATCH_SOONEST)
        await feed.wait(WATCH_EVERY - WATCH_SOONEST)


def merged(lives: Lives) -> dict[str, Killable]:
    """Every door's live sessions, by session id."""
    return {key: session for sessions in lives for key, session in sessions.items()}


async def watch_once(core: Core, lives: Lives) -> None:
    """One look: take the node's presence lease, expire requests, and end the live sessions an
    admin killed, whose access ended, or that overstayed their limits."""
    live = merged(lives)
    # A write: the node proves it can still commit (and tells the others it is alive).
    await core.run(core.store.take_lease, node_lease(core.node), core.node,
                   presence_ttl(core.config.cluster.store_grace), quiet=True)  # fmt: skip
    await core.run(core.store.expire_requests)
    kills = await core.run(core.store.pending_kills)
    hours = {key: core.config_of(key).target_policy(s.target_name).allowed_hours
             for key, s in live.items()}  # fmt: skip
    ended = await core.run(core.access.endings, hours) if live else []
    for session_id, who, reason in kills:
        session = live.get(session_id)
        if session is not None:
            message = f"session ended by {who}: {reason or 'no reason given'}"
            await _end(session_id, session, "killed", message)
    for ending in ended:
        session = live.get(ending.session_id)
        if session is not None:
            await _end(ending.session_id, session, ending.state, ending.message)
    await _end_overstayed(core, live)


async def _end(session_id: str, session: Killable, state: str, message: str) -> None:
    """End one session; a fault there is logged and never keeps the others from ending."""
    try:
        await session.terminate(state, message)
    except Exception as exc:
        log.error("session_end_failed", session=session_id, state=state, error=repr(exc))


async def _end_overstayed(core: Core, live: Mapping[str, Killable]) -> None:
    now = core.clock.now()
    for session_id, session in list(live.items()):
        try:
            limits = core.config_of(session_id).session_limits(session.target_name)
            found = overstayed(session.target_name, session.opened_at, session.last_input,
                               now, limits)  # fmt: skip
        except Exception as exc:
            log.error("session_watch_failed", session=session_id, error=repr(exc))
            continue
        if found is not None:
            await _end(session_id, session, *found)
