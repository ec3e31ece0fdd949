"""Review weeks: labels, local periods in UTC, Sunday starts and daylight-saving weeks."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bastion.reports.week import last_complete_week, parse_week, week_of


def test_an_iso_week_in_utc_is_monday_to_monday() -> None:
    week = parse_week("2026-W47", "UTC")
    assert (week.start, week.end) == (datetime(2026, 11, 16, tzinfo=UTC),
                                      datetime(2026, 11, 23, tzinfo=UTC))  # fmt: skip
    assert week.previous().label == "2026-W46"


def test_a_local_week_is_shifted_to_utc_and_spans_daylight_saving() -> None:
    week = parse_week("2026-W44", "Europe/Amsterdam")  # clocks go back on Sun 25 Oct 2026
    assert week.start == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # Mon 26 Oct 00:00 CET
    autumn = parse_week("2026-W43", "Europe/Amsterdam")
    assert autumn.start == datetime(2026, 10, 18, 22, 0, tzinfo=UTC)  # CEST
    assert (autumn.end - autumn.start).total_seconds() == 169 * 3600


def test_a_sunday_week_starts_the_day_before_the_iso_monday() -> None:
    week = parse_week("2026-W47", "UTC", "sunday")
    assert week.first_day == date(2026, 11, 15)
    assert week_of(date(2026, 11, 15), "UTC", "sunday").label == "2026-W47"
    assert week_of(date(2026, 11, 14), "UTC", "sunday").label == "2026-W46"


def test_the_last_complete_week_is_the_one_before_now() -> None:
    now = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)  # Monday of W48
    assert last_complete_week(now, "UTC").label == "2026-W47"
    assert last_complete_week(now, "America/New_York").label == "2026-W46"  # still Sunday there


@pytest.mark.parametrize(("label", "why"), [
    ("2026-47", "YYYY-Www"), ("2026-W54", "no week 54"), ("2025-W53", "no week 53"),
])  # fmt: skip
def test_a_bad_week_says_why(label: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_week(label, "UTC")


def test_an_unknown_timezone_says_so() -> None:
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        parse_week("2026-W47", "Mars/Olympus")
