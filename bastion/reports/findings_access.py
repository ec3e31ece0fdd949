"""The review's findings about access itself: grants unused, too long or weakly reasoned, failed
logins and lockouts, interrupted sessions, many addresses, large transfers; pure."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from bastion.clock import parse_iso
from bastion.config import Config
from bastion.reports.facts import EXPORT_ROWS, Facts
from bastion.reports.findings import (
    event_evidence,
    grant_evidence,
    grant_people,
    session_evidence,
    statement_evidence,
    under,
)
from bastion.reports.findings_volume import session_bytes
from bastion.reports.model import Evidence, Finding, utc
from bastion.text import printable_line

_FAILED = ("auth.password_failed", "auth.totp_failed", "auth.failed")
_BURST = 5  # failed logins ...
_BURST_WINDOW = timedelta(minutes=10)  # ... within this long is a burst
_MIB = 1 << 20
_MIN_WORDS = 3
_REPEATS = 3  # the same reason this many times in a week is copied, not written


def unused_grants(facts: Facts, config: Config) -> list[Finding]:
    """Grants in force during the week that never opened a session: revoke them."""
    found = []
    for grant in facts.grants:
        started = parse_iso(grant["starts_at"]) < facts.week.end
        if grant["sessions"] or not started or grant["revoked_at"] or grant["break_glass"]:
            continue
        live = parse_iso(grant["ends_at"]) > facts.week.end
        found.append(Finding(
            "unused_grant", "low",
            f"grant {grant['id']} ({grant['person'] or 'group ' + str(grant['grp'])} on"
            f" {grant['target']}) was never used",
            "Revoke it: bastion revoke " + str(grant["id"]) if live
            else "Give shorter grants, or none, for work that does not need access.",
            (grant_evidence(grant),), subject=grant["person"], grants=(int(grant["id"]),),
            involved=grant_people(facts, grant["id"])))  # fmt: skip
    return found


def long_grants(facts: Facts, config: Config) -> list[Finding]:
    found = []
    for grant in facts.grants:
        if parse_iso(grant["created_at"]) < facts.week.start or grant["break_glass"]:
            continue
        length = parse_iso(grant["ends_at"]) - parse_iso(grant["starts_at"])
        limit = config.max_grant_for(grant["target"])
        if length > limit:
            found.append(Finding(
                "long_grant", "medium",
                f"grant {grant['id']} lasts {length} (policy: {limit})",
                "Shorten or revoke it; grants longer than policy need a documented exception.",
                (grant_evidence(grant),), subject=grant["person"], grants=(int(grant["id"]),),
                involved=grant_people(facts, grant["id"])))  # fmt: skip
    return found


def _normal(reason: str) -> str:
    return re.sub(r"\s+", " ", reason.strip().lower())


def weak_reasons(facts: Facts, config: Config) -> list[Finding]:
    """Reasons too short to say anything, and reasons copied word for word."""
    made = [
        g
        for g in facts.grants
        if parse_iso(g["created_at"]) >= facts.week.start and not g["request_id"]
    ]
    asked = [r for r in facts.requests if parse_iso(r["created_at"]) >= facts.week.start]
    items = [(r["reason"], Evidence("request", str(r["id"]), utc(parse_iso(r["created_at"])),
                                    f"request {r['id']} by {r['requested_by']}: {r['reason']}"))
             for r in asked] + [(g["reason"], grant_evidence(g)) for g in made]  # fmt: skip
    found = []
    for reason, evidence in items:
        if len(reason.split()) < _MIN_WORDS or len(reason) < config.grants.min_reason_length:
            found.append(Finding(
                "weak_reason", "low", f"reason too short to review: {reason!r}",
                "Ask for the incident or change it served; require a ticket reference.",
                (evidence,)))  # fmt: skip
    copies = Counter(_normal(reason) for reason, _ in items)
    for text, count in sorted(copies.items()):
        if count >= _REPEATS:
            copied = tuple(e for reason, e in items if _normal(reason) == text)
            found.append(Finding(
                "repeated_reason", "low", f"the same reason given {count} times: {text!r}",
                "A reason copied word for word explains none of the accesses; ask for each.",
                copied))  # fmt: skip
    return found


def _bursts(times: list[datetime]) -> bool:
    times = sorted(times)
    return any(times[i + _BURST - 1] - times[i] <= _BURST_WINDOW
               for i in range(len(times) - _BURST + 1))  # fmt: skip


def failed_logins(facts: Facts, config: Config) -> list[Finding]:
    """Lockouts (high) and bursts of failed logins per person (medium)."""
    found = [
        Finding("lockout", "high", f"{e['subject']} was locked out after failed logins",
                "Ask the person whether it was them; if not, reset their factors.",
                (event_evidence(e),), subject=e["subject"] or None)
        for e in facts.events_of("user.locked")
    ]  # fmt: skip
    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in facts.events_of(*_FAILED):
        by_person[event["subject"] or "?"].append(event)
    for person, events in sorted(by_person.items()):
        if _bursts([parse_iso(e["at"]) for e in events]):
            found.append(Finding(
                "failed_login_burst", "medium",
                f"{len(events)} failed logins for {person} ({_BURST}+ within"
                f" {int(_BURST_WINDOW.total_seconds() // 60)} minutes)",
                "Check the addresses they came from; someone may be guessing.",
                tuple(event_evidence(e) for e in events[:20]), subject=person))  # fmt: skip
    return found


def interrupted(facts: Facts, config: Config) -> list[Finding]:
    return [
        Finding("interrupted_session", "low",
                f"{s['person']}'s session on {s['target']} ended interrupted",
                "Check the bastion's log for why, and that the recording is whole.",
                (session_evidence(s),), subject=s["person"], **under(facts, s["grant_id"]))
        for s in facts.sessions if s["state"] == "interrupted"
    ]  # fmt: skip


def restores(facts: Facts, config: Config) -> list[Finding]:
    """Each restore of the store from a backup: the events after its backup are gone."""
    found = []
    for event in facts.events_of("store.restored"):
        detail = json.loads(event["detail"])
        kept, lost = int(detail["kept"]["seq"]), int(detail["lost_seq"])
        gone = (
            f"events {kept + 1} to {lost} were lost" if lost > kept else "no later event was seen"
        )
        found.append(Finding(
            "store_restored", "high",
            f"{event['actor']} restored the store from {printable_line(detail['source'])}: {gone}",
            "Confirm the store was lost with the operators (reason given:"
            f" {printable_line(detail['reason'])}); the anchors and last week's pack name the"
            " lost events.",
            (event_evidence(event),), subject=event["actor"],
            involved=(event["actor"],)))  # fmt: skip
    return found


def _address(client: str) -> str:
    host = client.rsplit(":", 1)[0] if client.count(":") == 1 else client
    return host.strip("[]")


def many_addresses(facts: Facts, config: Config) -> list[Finding]:
    """A person reaching production from more than one address in one local day."""
    days: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for session in facts.sessions:
        local = parse_iso(session["started_at"]).astimezone(facts.week.local_start.tzinfo)
        if session["person"] and session["client_addr"]:
            key = (session["person"], local.date().isoformat())
            days[key].setdefault(_address(session["client_addr"]), session)
    return [
        Finding("many_addresses", "medium",
                f"{person} came from {len(seen)} addresses on {day}",
                "Check each address is theirs (home, office, VPN); a stranger's is a stolen login.",
                tuple(session_evidence(s) for s in seen.values()), subject=person)
        for (person, day), seen in sorted(days.items()) if len(seen) > 1
    ]  # fmt: skip


def large_transfers(facts: Facts, config: Config) -> list[Finding]:
    """A session that moved more than the threshold: files, and its recorded streams (an
    exec's `cat dump` moves data without scp or sftp); days of smaller pieces that add up
    are findings_volume's."""
    limit = config.reports.large_transfer_mb * _MIB
    moved = session_bytes(facts)
    found = [
        Finding("large_transfer", "medium",
                f"{s['person']} moved {moved[s['id']] // _MIB} MiB in one session on {s['target']}",
                "Check what left production and that it was needed.",
                (session_evidence(s),), subject=s["person"], **under(facts, s["grant_id"]))
        for s in facts.sessions if moved[s["id"]] > limit
    ]  # fmt: skip
    for row in facts.statements:
        if int(row["rows"] or 0) >= EXPORT_ROWS and row["refused_reason"] is None:
            found.append(Finding(
                "large_export", "medium", f"{row['person']} exported {row['rows']} rows",
                "Check what left production and that it was needed.",
                (statement_evidence(row),), subject=row["person"],
                **under(facts, row.get("grant_id"))))  # fmt: skip
    return found
