"""Posts queued notifications to the webhook, retrying with backoff until delivered or given up."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
import structlog

from bastion.audit.records import Notification
from bastion.config_policies import NotifyPolicy
from bastion.core import Core

log = structlog.get_logger("bastion.notify")

LOOK_EVERY = 0.5  # seconds between looks at the outbox


def backoff(policy: NotifyPolicy, attempts: int) -> timedelta | None:
    """The wait before the next try after `attempts` earlier failures (retry_after, doubling
    each time); None: give up. The weekly review's deliveries retry the same way."""
    if attempts >= policy.retries:
        return None
    wait: timedelta = policy.retry_after * (2**attempts)
    return wait


class Notifier:
    """One task in `bastion serve`; the outbox in the store is its only queue, so nothing is
    lost across restarts. The URL is never logged (Slack's carry a token): only its host."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.policy = core.config.notify
        self.host = urlsplit(self.policy.webhook_url).hostname or "?"

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout.total_seconds())
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    await self.deliver_due(http)
                except Exception as exc:  # keep going; the store or network may come back
                    log.error("notify.loop_failed", error=str(exc))
                await asyncio.sleep(LOOK_EVERY)

    async def deliver_due(self, http: aiohttp.ClientSession) -> int:
        """Try every notification that is due; returns how many were delivered."""
        delivered = 0
        for notice in await self.core.run(self.core.store.due_notifications):
            error = await self._post(http, notice)
            if error is None:
                await self.core.run(self.core.store.notification_delivered, notice.id)
                delivered += 1
                continue
            retry = self.retry_in(notice.attempts)
            self.core.metrics.notification_failed(gave_up=retry is None)
            log.warning("notify.post_failed", host=self.host, kind=notice.kind, error=error,
                        attempt=notice.attempts + 1, gives_up=retry is None)  # fmt: skip
            await self.core.run(self.core.store.notification_failed, notice, error, retry)
        return delivered

    def retry_in(self, attempts: int) -> timedelta | None:
        """The wait before the next try after `attempts` earlier failures; None: give up."""
        return backoff(self.policy, attempts)

    async def _post(self, http: aiohttp.ClientSession, notice: Notification) -> str | None:
        """Post once; None on a 2xx answer, else what went wrong in a few words."""
        headers = {"Content-Type": "application/json", "User-Agent": "bastion-notify"}
        try:
            async with http.post(self.policy.webhook_url, data=notice.payload.encode(),
                                 headers=headers, allow_redirects=False) as response:  # fmt: skip
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except TimeoutError:
            return f"no answer within {self.policy.timeout.total_seconds():g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:200].replace(self.policy.webhook_url, "<url>")
