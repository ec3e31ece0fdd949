"""Durations as people write them in configs and commands: "90s", "15m", "1h30m", "2w"."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}

_EXAMPLES = "e.g. '90s', '15m', '12h', '1h30m', '2w'"
_DURATION = re.compile(r"(?:\d+\s*[A-Za-z]+\s*)+")
_PART = re.compile(r"(\d+)\s*([A-Za-z]+)")


def parse_duration(text: str) -> timedelta:
    """Read "90s", "15m", "2h", "1d", "2w" or a combination such as "1h30m"; positive only."""
    spec = text.strip()
    if not spec:
        raise ValueError(f"empty duration: write a whole number and a unit ({_EXAMPLES})")
    if spec.startswith("-"):
        raise ValueError(f"duration {text!r} is negative; it must be positive")
    if re.search(r"\d[.,]\d", spec):
        raise ValueError(f"duration {text!r}: use whole numbers, e.g. '1h30m' rather than '1.5h'")
    if not _DURATION.fullmatch(spec):
        if spec.isdigit():
            raise ValueError(f"duration {text!r} has no unit: add s, m, h, d or w ({_EXAMPLES})")
        raise ValueError(f"duration {text!r} is not a number followed by a unit ({_EXAMPLES})")
    total, previous = 0, -1
    for match in _PART.finditer(spec):
        unit = match.group(2)
        if unit not in _UNITS:
            raise ValueError(
                f"duration {text!r}: unknown unit {unit!r}; use s, m, h, d or w ({_EXAMPLES})"
            )
        rank = list(_UNITS).index(unit)
        if rank <= previous:
            raise ValueError(f"duration {text!r}: give each unit once, largest first, e.g. '1h30m'")
        previous = rank
        total += int(match.group(1)) * _UNITS[unit]
    if total == 0:
        raise ValueError(f"duration {text!r} must be positive")
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def format_duration(delta: timedelta) -> str:
    """Write a duration the way parse_duration reads it: 5400 s -> "1h30m" (whole seconds)."""
    if delta < timedelta(0):
        return "-" + format_duration(-delta)
    remaining = delta // timedelta(seconds=1)
    parts: list[str] = []
    for unit, size in _UNITS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_when(text: str) -> datetime:
    """An ISO date and time with its zone ('Z' accepted), e.g. 2026-11-23T09:00Z."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO date and time") from exc
    if when.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-11-23T09:00Z")
    return when
