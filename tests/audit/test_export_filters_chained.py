"""A sink's filter decides what the SIEM gets, so narrowing it is a way to hide events: every
change to the sinks (added, filter or kind changed, taken out) is chained, once, and the
feed's own events (export.*) pass every filter, so the SIEM learns of it."""

from __future__ import annotations

import json
from pathlib import Path

from bastion.audit import Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.export.formats import SinkFilter
from tests.audit.test_exporting import START

ALL = '{"kinds":["*"],"min_severity":"info"}'
NARROW = '{"kinds":["session.*"],"min_severity":"high"}'


def changes(store: Store) -> list[dict[str, object]]:
    found = [e for e in store.events() if e.kind == "export.sink_configured"]
    return [{"severity": e.severity, **json.loads(e.detail)} for e in found]


def test_each_change_to_a_sinks_filter_is_chained_once(store_at: Path | PgLocation) -> None:
    store = Store.create(store_at, FakeClock(START))
    try:
        store.export_sinks_configured([("siem", "syslog", ALL)])
        store.export_sinks_configured([("siem", "syslog", ALL)])  # a restart, nothing changed
        assert changes(store) == [{"severity": "notice", "sink": "siem", "was": None,
                                   "now": {"kind": "syslog", **json.loads(ALL)}}]  # fmt: skip
        store.export_sinks_configured([("siem", "syslog", NARROW)])
        every, narrow = (
            {"kind": "syslog", **json.loads(ALL)},
            {"kind": "syslog", **json.loads(NARROW)},
        )
        assert changes(store)[1:] == [{"severity": "warning", "sink": "siem", "was": every,
                                       "now": narrow}]  # fmt: skip
        store.export_sinks_configured([])
        assert changes(store)[2:] == [{"severity": "warning", "sink": "siem",
                                       "was": narrow, "now": None}]  # fmt: skip
        store.export_sinks_configured([])
        assert len(changes(store)) == 3
    finally:
        store.close()


def test_the_feeds_own_events_pass_every_filter() -> None:
    narrow = SinkFilter("high", ("session.*",))
    assert not narrow.takes("grant.created", "high")
    for kind, severity in [("export.sink_failing", "warning"), ("export.sink_recovered", "notice"),
                           ("export.sink_configured", "warning"),
                           ("export.cursor_tampered", "high")]:  # fmt: skip
        assert narrow.takes(kind, severity)
