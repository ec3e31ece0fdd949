"""Review weeks: an ISO week label, its period in the configured timezone, in UTC; pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LABEL_RE = re.compile(r"(\d{4})-W(\d{2})")


@dataclass(frozen=True)
class Week:
    """One review week: its ISO label, first local day, and the instants it spans.

    `start` and `end` are aware UTC instants; the week is start <= t < end. With
    week_starts = "sunday", week 2026-W47 starts on the Sunday before ISO week 47's Monday.
    A week is seven local days: across a daylight-saving change it is 167 or 169 hours.
    """

    label: str
    first_day: date
    timezone: str
    start: datetime
    end: datetime

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZoneInfo(self.timezone))

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(ZoneInfo(self.timezone))

    def previous(self) -> Week:
        return week_of(self.first_day - timedelta(days=7), self.timezone, self._starts())

    def _starts(self) -> str:
        return "sunday" if self.first_day.isoweekday() == 7 else "monday"


def zone(name: str) -> ZoneInfo:
    """The timezone named, or ValueError saying what is wrong."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r} (write an IANA name such as Europe/Amsterdam)"
        ) from None


def parse_week(label: str, timezone: str, week_starts: str = "monday") -> Week:
    """The week labelled YYYY-Www; ValueError with the reason if it is not one."""
    match = LABEL_RE.fullmatch(label.strip())
    if match is None:
        raise ValueError(f"week {label!r} is not written as YYYY-Www, e.g. 2026-W47")
    year, number = int(match.group(1)), int(match.group(2))
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValueError(f"week {label!r} does not exist ({year} has no week {number})") from None
    first = monday - timedelta(days=1) if week_starts == "sunday" else monday
    return _week(first, f"{year}-W{number:02d}", timezone)


def week_of(day: date, timezone: str, week_starts: str = "monday") -> Week:
    """The review week a local day falls in."""
    probe = day + timedelta(days=1) if week_starts == "sunday" else day
    year, number, _ = probe.isocalendar()
    return parse_week(f"{year}-W{number:02d}", timezone, week_starts)


def last_complete_week(now: datetime, timezone: str, week_starts: str = "monday") -> Week:
    """The latest week that has ended by `now` (an aware instant)."""
    today = now.astimezone(zone(timezone)).date()
    return week_of(today, timezone, week_starts).previous()


def _week(first: date, label: str, timezone: str) -> Week:
    tz = zone(timezone)
    start = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(first + timedelta(days=7), time(0), tzinfo=tz).astimezone(UTC)
    return Week(label, first, timezone, start, end)
