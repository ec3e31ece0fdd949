"""The weekly review shows what was done to the SIEM feed: a cursor moved by hand (high), a
sink's filter changed or a sink taken out (medium: the SIEM may get less from then on)."""

from __future__ import annotations

from pathlib import Path

from bastion.audit import Event
from bastion.reports.facts import collect
from bastion.reports.gather import run_rules
from bastion.reports.week import week_of
from tests.harness import Bastion

ALL = '{"kinds":["*"],"min_severity":"info"}'
NARROW = '{"kinds":["session.*"],"min_severity":"info"}'
ELSEWHERE = '{"kinds":["session.*"],"min_severity":"info","to":"10.0.0.9:6514"}'


def test_the_review_shows_the_feed_narrowed_removed_and_tampered(tmp_path: Path) -> None:
    b = Bastion(tmp_path / "bastion")
    try:
        b.store.export_sinks_configured([("siem", "syslog", ALL), ("trail", "file", ALL)])
        b.store.export_sinks_configured([("siem", "syslog", NARROW)])  # trail taken out
        b.store.export_sinks_configured([("siem", "syslog", ELSEWHERE)])  # a receiver of mine
        detail = {"sink": "siem", "kind": "syslog", "found_seq": 4000, "node": "node-1"}
        b.store.append_events(
            [Event("export.cursor_tampered", "bastion:export", "siem", "high", detail=detail)]
        )  # as the worker chains it
        now = b.clock.now()
        facts = collect(b.store, week_of(now.date(), "UTC"), now)
        found = sorted((f.rule, f.severity, f.title) for f in run_rules(facts, b.config)
                       if f.rule.startswith("export_"))  # fmt: skip
    finally:
        b.release()
    assert found == [
        ("export_cursor_tampered", "high", "the cursor of export sink siem was moved outside"
         " the bastion (it stood at 4000); the sink was sent the whole chain again"),
        ("export_sink_changed", "medium", "export sink siem now goes to 10.0.0.9:6514 (was:"
         " None)"),
        ("export_sink_changed", "medium", "export sink siem now takes kinds session.* at"
         " info and above (was: kinds * at info and above)"),
        ("export_sink_changed", "medium", "export sink trail was taken out of the config"),
    ]  # fmt: skip
