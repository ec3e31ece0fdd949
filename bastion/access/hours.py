"""Allowed hours for a target, e.g. "Mon-Fri 08:00-20:00; Sat 10:00-14:00", in a timezone (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"(?P<days>[a-z,\-]+|daily)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # Monday is 0
    start: time
    end: time  # exclusive; 24:00 is written as 00:00 and means the end of the day


@dataclass(frozen=True)
class Hours:
    """When sessions on a target may be open, in the target's timezone."""

    text: str
    zone: str
    windows: tuple[Window, ...]

    def allows(self, when: datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.zone))
        clock = local.time().replace(tzinfo=None)
        for window in self.windows:
            if (
                local.weekday() in window.days
                and window.start <= clock
                and (clock < window.end or window.end == time(0))
            ):
                return True
        return False

    def refusal(self, target: str, when: datetime) -> str:
        local = when.astimezone(ZoneInfo(self.zone))
        return (f"{target} is open to sessions only {self.text} ({self.zone});"
                f" it is {local:%a %H:%M} there now")  # fmt: skip


def parse_hours(text: str, zone: str) -> Hours:
    """Read allowed hours; ValueError says what is wrong in one line."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {zone!r} (use a name such as 'Europe/Berlin')"
        ) from None
    windows = []
    for part in (p.strip() for p in text.lower().split(";") if p.strip()):
        windows.append(_window(part))
    if not windows:
        raise ValueError("name at least one window, e.g. 'Mon-Fri 08:00-20:00'")
    return Hours(" ".join(text.split()), zone, tuple(windows))


def _window(part: str) -> Window:
    found = _WINDOW.fullmatch(" ".join(part.split()))
    if found is None:
        raise ValueError(f"cannot read {part!r}: write days and times as 'Mon-Fri 08:00-20:00'")
    start, end = _time(found["start"]), _time(found["end"])
    if end != time(0) and end <= start:
        raise ValueError(f"{part!r}: the window must end after it starts (same day)")
    return Window(_days(found["days"]), start, end)


def _days(text: str) -> frozenset[int]:
    if text == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.split(","):
        first, _, last = item.partition("-")
        a, b = _day(first), _day(last or first)
        if b < a:
            raise ValueError(f"{item!r}: write day ranges forwards, e.g. 'Mon-Fri'")
        days.update(range(a, b + 1))
    return frozenset(days)


def _day(name: str) -> int:
    try:
        return DAYS.index(name[:3])
    except ValueError:
        raise ValueError(f"unknown day {name!r} (use Mon, Tue, ... Sun)") from None


def _time(text: str) -> time:
    hours, minutes = int(text[:2]), int(text[3:])
    if hours == 24 and minutes == 0:
        return time(0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)
