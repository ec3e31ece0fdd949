"""The [retention] section: how long recordings, query-log rows and audit events are kept
(empty: for ever), where the archive of what is pruned goes, and how often a node prunes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bastion.durations import parse_duration

MINIMUM = timedelta(days=30)  # below this, only with allow_short = true
PERIODS = ("recordings", "queries", "events")


@dataclass(frozen=True)
class RetentionPolicy:
    """Periods as written ("90d"); "" keeps everything of that kind."""

    recordings: str = ""
    queries: str = ""
    events: str = ""
    archive_dir: str = ""
    every: timedelta = timedelta(days=1)
    allow_short: bool = False

    def period(self, kind: str) -> timedelta | None:
        """The kind's period, None when it is kept for ever (problem() has said it parses)."""
        text = getattr(self, kind)
        return parse_duration(text) if text else None

    @property
    def enabled(self) -> bool:
        return any(getattr(self, kind) for kind in PERIODS)

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for the first value that cannot work, else None."""
        periods: dict[str, timedelta | None] = {}
        for kind in PERIODS:
            try:
                periods[kind] = self.period(kind)
            except ValueError as exc:
                return kind, str(exc)
            found = periods[kind]
            if found is not None and found < MINIMUM and not self.allow_short:
                return kind, (
                    f"{getattr(self, kind)!r} is under the 30-day minimum: refused"
                    " unless allow_short = true"
                )
        events = periods["events"]
        for kind in ("recordings", "queries"):
            mine = periods[kind]
            if events is not None and (mine is None or mine > events):
                return kind, (
                    "must be set and at most [retention] events: the chain proves it, and"
                    " the chain is never cut past what it still proves"
                )
        if self.enabled and not self.archive_dir:
            return "archive_dir", "must be set when a period is: what is pruned is archived"
        if not timedelta(hours=1) <= self.every <= timedelta(days=7):
            return "every", "must be between 1h and 7d"
        return None
