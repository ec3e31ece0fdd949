"""Retention in the weekly review: each legal hold put or released, each prune and chain cut."""

from __future__ import annotations

import json

from bastion.config import Config
from bastion.reports.facts import Facts
from bastion.reports.findings import event_evidence
from bastion.reports.model import Finding
from bastion.text import printable_line

HOLD_KINDS = ("hold.added", "hold.released")
PRUNE_KINDS = ("retention.pruned", "retention.checkpoint")


def holds(facts: Facts, config: Config) -> list[Finding]:
    """Each hold put on or released: a reviewer confirms it was asked for, with its reason."""
    found = []
    for kind in HOLD_KINDS:
        for event in facts.events_of(kind):
            detail = json.loads(event["detail"])
            verb = "put a legal hold on" if kind == "hold.added" else "released the legal hold on"
            found.append(Finding(
                "legal_hold", "medium",
                f"{event['actor']} {verb} {detail.get('scope')} {printable_line(event['subject'])}"
                f" (hold {detail.get('hold')}): {printable_line(str(detail.get('reason')))}",
                "Confirm with legal or security that the hold was asked for (or may end).",
                (event_evidence(event),), subject=event["actor"],
                involved=(event["actor"],)))  # fmt: skip
    return found


def pruned(facts: Facts, config: Config) -> list[Finding]:
    """Each retention deletion: what kind, how many, and the archive that holds it."""
    found = []
    for event in facts.events_of("retention.pruned"):
        detail = json.loads(event["detail"])
        count = detail.get("deleted", detail.get("count", 0))
        policy = detail.get("policy") or {}
        short = bool(policy.get("allow_short"))  # periods under 30 days were allowed
        found.append(Finding(
            "retention_pruned", "high" if short else "low",
            f"retention deleted {count} {printable_line(event['subject'])}"
            f" (archived in {printable_line(str(detail.get('archive')))})"
            + (" under allow_short: periods may be under 30 days" if short else ""),
            "Check the count against [retention] and that the archive is kept where policy"
            " says; `bastion audit verify --archive FILE` proves it.",
            (event_evidence(event),), subject=event["actor"]))  # fmt: skip
    return found
