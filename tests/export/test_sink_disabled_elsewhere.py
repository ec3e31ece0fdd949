"""Another node starts without a sink (a config that differs between nodes, a rolling
change) or someone deletes its cursor row: the store no longer counts the sink, so its
cursor cannot move. The sink must then fail, visibly, not send the same batch again and
again to the SIEM while /healthz says ok."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.export.test_cursor_tampering import hand_edit
from tests.export.test_file_sink import lines_of
from tests.export.test_syslog_outage import activity, caught_up, wait_until
from tests.harness import Bastion


@pytest.mark.parametrize("how", ["another node's start", "a deleted row"])
def test_a_sink_the_store_no_longer_counts_fails_and_sends_nothing_twice(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "export" / "audit.jsonl"
    path.parent.mkdir()
    config = (f'[export.trail]\nkind = "file"\npath = "{path}"\nretry_after = "1s"\n'
              'retry_max = "1s"\n')  # fmt: skip
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 3))
        caught_up(b, "trail", "the file")
        if how == "a deleted row":
            hand_edit(b, "DELETE FROM export_cursors")
        else:
            b.store.export_sinks_configured([])  # a node whose config has no [export.trail]
        activity(b, range(3, 6))
        exporter = b.core.exporting
        assert exporter is not None
        wait_until(lambda: exporter.health()[0]["status"] == "failing", "the sink to fail")
        assert (
            exporter.health()[0]["error"] == "not enabled in the store (another node runs"
            " without this sink, or its cursor was deleted): restart to enable it"
        )
        wait_until(lambda: exporter.workers[0].failures >= 3, "a few retries")
    finally:
        b.stop()
    seen = Counter(line["seq"] for line in lines_of(path, 1))
    assert seen and max(seen.values()) == 1  # nothing sent twice
