"""A gathered week recorded for review, then the next week's report: what nobody decided is
carried over under the same id, and a week not signed in time becomes a finding."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bastion.access.reviews import Reviews
from bastion.errors import Denied
from bastion.reports.carry import UNSIGNED_RULE, carry
from bastion.reports.gather import gather
from bastion.reports.week import parse_week
from tests.reports.test_gather import INTACT, WEEK, build_week, load_config_text


def test_open_findings_and_the_unsigned_week_reach_the_next_report(tmp_path: Path) -> None:
    w = build_week(tmp_path)
    config = load_config_text(tmp_path)
    first = gather(w.store, config, WEEK, now=w.clock.now(), verification=INTACT)
    w.store.record_report_week(WEEK.label, first.findings)
    assert {f.id for f in w.store.report_findings(WEEK.label)} == {f.id for f in first.findings}
    reviews = Reviews(w.store, config, w.clock)
    decided = next(f for f in first.findings if f.subject == "alice" and "carol" not in f.involved)
    reviews.review(WEEK.label, decided.id, "carol", "ok", "asked alice; planned work")
    given = next(f for f in first.findings if "carol" in f.involved and f.subject != "carol")
    with pytest.raises(Denied, match="gave"):
        reviews.review(WEEK.label, given.id, "carol", "ok", "fine")

    w.clock.advance(timedelta(days=8))  # the week after: nobody signed 2026-W47
    following = parse_week("2026-W48", "Europe/Amsterdam")
    carried = carry(w.store, config, w.clock, following.label)
    second = gather(w.store, config, following, now=w.clock.now(), verification=INTACT,
                    carried=carried)  # fmt: skip
    ids = [f.id for f in second.findings]
    assert len(ids) == len(set(ids))
    still_open = {f.id for f in first.findings} - {decided.id}
    assert still_open <= set(ids) and decided.id not in ids
    for finding in second.findings:
        if finding.id in still_open:
            assert finding.first_seen == WEEK.label
    [unsigned] = [f for f in second.findings if f.rule == UNSIGNED_RULE]
    assert unsigned.evidence[0].ref == WEEK.label
    kinds = [e.kind for e in w.store.events()]
    assert kinds.count("report.sign_overdue") == 1
