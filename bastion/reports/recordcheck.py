"""A period's recordings checked against the hashes the chain holds (for the week's review
and the daily check alike)."""

from __future__ import annotations

from bastion.audit import Store
from bastion.clock import iso
from bastion.identity.sealing import SecretBox
from bastion.recording.check import chained_recording_problems
from bastion.reports.week import Week


def recording_problems(
    store: Store, box: SecretBox, period: Week, up_to: int
) -> tuple[int, tuple[str, ...]]:
    """(how many recordings of the period's sessions were checked, what is wrong with them),
    against the session.closed events up to seq `up_to` (a verified head)."""
    ids = {row["id"] for row in store.week_sessions(iso(period.start), iso(period.end))}
    chained = [(sid, d) for sid, d in store.chained_recordings(up_to) if sid in ids]
    failed = tuple(f"{sid}: {problem}" for sid, detail in chained
                   for problem in chained_recording_problems(box, sid, detail))  # fmt: skip
    return len(chained), failed
