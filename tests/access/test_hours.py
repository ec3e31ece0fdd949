"""Allowed hours: windows by weekday and time in the target's timezone, and clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bastion.access.hours import parse_hours

BERLIN = "Europe/Berlin"


def at(text: str) -> datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def test_weekdays_in_the_targets_timezone() -> None:
    hours = parse_hours("Mon-Fri 08:00-20:00", BERLIN)  # Berlin is UTC+1 in November
    assert hours.allows(at("2026-11-23 07:00"))  # Monday 08:00 in Berlin
    assert not hours.allows(at("2026-11-23 06:59"))  # Monday 07:59 in Berlin
    assert not hours.allows(at("2026-11-23 19:00"))  # Monday 20:00: the end is exclusive
    assert not hours.allows(at("2026-11-22 12:00"))  # Sunday


def test_several_windows_day_lists_and_midnight() -> None:
    hours = parse_hours("Mon,Wed 09:00-17:00; Sat 22:00-24:00", "UTC")
    assert hours.allows(at("2026-11-25 10:00"))  # Wednesday
    assert not hours.allows(at("2026-11-24 10:00"))  # Tuesday
    assert hours.allows(at("2026-11-28 23:59"))  # Saturday, until midnight
    assert parse_hours("daily 00:00-24:00", "UTC").allows(at("2026-11-24 03:00"))


def test_summer_time_moves_the_window_in_utc() -> None:
    hours = parse_hours("Mon-Fri 08:00-20:00", BERLIN)
    assert hours.allows(at("2026-07-06 06:00"))  # Monday 08:00 in Berlin (UTC+2)
    assert not hours.allows(at("2026-07-06 05:59"))


def test_the_refusal_says_when_and_what_time_it_is_there() -> None:
    hours = parse_hours("Mon-Fri 08:00-20:00", BERLIN)
    assert hours.refusal("orders-prod", at("2026-11-22 12:00")) == (
        "orders-prod is open to sessions only Mon-Fri 08:00-20:00 (Europe/Berlin);"
        " it is Sun 13:00 there now"
    )


@pytest.mark.parametrize(
    ("text", "zone", "problem"),
    [
        ("Mon-Fri 08:00-20:00", "Mars/Olympus", "unknown timezone"),
        ("weekdays 08:00-20:00", "UTC", "unknown day"),
        ("Fri-Mon 08:00-20:00", "UTC", "forwards"),
        ("Mon 20:00-08:00", "UTC", "end after it starts"),
        ("Mon 25:00-26:00", "UTC", "not a time of day"),
        ("Mon 8-20", "UTC", "cannot read"),
        (" ; ", "UTC", "at least one window"),
    ],
)
def test_bad_hours_are_refused_in_one_line(text: str, zone: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_hours(text, zone)
