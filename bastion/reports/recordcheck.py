"""A period's recordings checked against the hashes the chain holds (for the week's review
and the daily check alike)."""

from __future__ import annotations

from pathlib import Path

from bastion.audit import Store
from bastion.clock import iso
from bastion.identity.sealing import SecretBox
from bastion.recording.check import chained_recording_problems
from bastion.recording.fetch import Fetcher
from bastion.reports.week import Week


def recording_problems(
    store: Store, box: SecretBox, period: Week, up_to: int, fetcher: Fetcher | None = None
) -> tuple[int, tuple[str, ...]]:
    """(how many recordings of the period's sessions were checked, what is wrong with them),
    against the session.closed events up to seq `up_to` (a verified head); a recording the
    spool no longer holds is read from the object store through `fetcher`, one at a time."""
    ids = {row["id"] for row in store.week_sessions(iso(period.start), iso(period.end))}
    ids -= set(store.recording_pruned_at())  # deleted by retention (the row says when)
    chained = [(sid, d) for sid, d in store.chained_recordings(up_to) if sid in ids]
    failed: list[str] = []
    for sid, detail in chained:
        locate = fetcher.local if fetcher is not None else None
        failed += [f"{sid}: {problem}"
                   for problem in chained_recording_problems(box, sid, detail, locate)]  # fmt: skip
        if fetcher is not None:
            fetcher.drop(Path(str(detail.get("recording"))))
    return len(chained), tuple(failed)
