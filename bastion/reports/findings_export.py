"""The SIEM feed in the weekly review: a sink's cursor moved outside the bastion, and each
sink whose filter changed or that was taken out of the config (the SIEM may get less)."""

from __future__ import annotations

from typing import Any

from bastion.config import Config
from bastion.reports.facts import Facts
from bastion.reports.findings import event_evidence
from bastion.reports.model import Finding
from bastion.text import printable_line

KINDS = ("export.cursor_tampered", "export.sink_configured")


def _takes(chosen: dict[str, Any]) -> str:
    kinds = ", ".join(printable_line(str(k)) for k in chosen.get("kinds") or ["*"])
    return f"kinds {kinds} at {printable_line(str(chosen.get('min_severity')))} and above"


def tampered(facts: Facts, config: Config) -> list[Finding]:
    """Each cursor whose MAC did not hold: someone with the database hid events, or tried."""
    found = []
    for event in facts.events_of("export.cursor_tampered"):
        detail = facts.detail(event)
        found.append(Finding(
            "export_cursor_tampered", "high",
            f"the cursor of export sink {printable_line(event['subject'])} was moved outside"
            f" the bastion (it stood at {detail.get('found_seq')}); the sink was sent the"
            " whole chain again",
            "Find who edited export_cursors in the store's database, and check the SIEM holds"
            " every event (`bastion export verify --sink NAME`).",
            (event_evidence(event),)))  # fmt: skip
    return found


def changed(facts: Facts, config: Config) -> list[Finding]:
    """Each sink whose filter or kind changed, or that was taken out of the config."""
    found = []
    for event in facts.events_of("export.sink_configured"):
        detail = facts.detail(event)
        was, now = detail.get("was"), detail.get("now")
        if not isinstance(was, dict):
            continue  # a sink added: the SIEM gets more, nothing to review
        sink = printable_line(event["subject"])
        title = f"export sink {sink} was taken out of the config"
        if isinstance(now, dict) and _takes(now) != _takes(was):
            title = f"export sink {sink} now takes {_takes(now)} (was: {_takes(was)})"
        elif isinstance(now, dict):
            title = (f"export sink {sink} now goes to {printable_line(str(now.get('to')))}"
                     f" (was: {printable_line(str(was.get('to')))})")  # fmt: skip
        found.append(Finding(
            "export_sink_changed", "medium", title,
            "Confirm the change to [export] was asked for: the SIEM gets less from then on.",
            (event_evidence(event),)))  # fmt: skip
    return found
