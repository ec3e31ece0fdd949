"""Sending a built week's review again: its pack checked as signed and as built, then read back
into what the mail and the webhook message are made of."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.errors import Conflict
from bastion.reports.pack import manifest_sha256, verify_pack

_LIMIT = 64 * 2**20  # bytes of report.json read back for its summary line


@dataclass(frozen=True)
class PackOnDisk:
    """A signed pack as delivery reads it (deliver.BuiltReport)."""

    week: str
    directory: Path
    html: bytes
    json: bytes
    csvs: Mapping[str, bytes]
    manifest_sha256: str
    summary_line: str


def summary_of(week: str, report: bytes) -> str:
    """The summary line (counts, never names) from the pack's report.json."""
    try:
        data = json.loads(report[:_LIMIT]) if report else {}
    except ValueError:
        data = {}
    values = {m.get("key"): m.get("this_week", 0) for m in data.get("summary", [])
              if isinstance(m, dict)}  # fmt: skip
    findings = [f for f in data.get("findings", []) if isinstance(f, dict)]
    high = sum(1 for f in findings if f.get("severity") == "high")
    sessions = sum(
        int(values.get(f"sessions_{door}", 0) or 0) for door in ("ssh", "postgres", "web")
    )
    people = int(values.get("people_active", 0) or 0)
    return f"{week}: {people} people, {sessions} sessions, {len(findings)} findings ({high} high)"


def read_pack(directory: Path, week: str, built_sha256: str, key: Ed25519PublicKey) -> PackOnDisk:
    """The pack, only when its signature and every file verify and its manifest is the one
    recorded when the week was built; Conflict naming what does not, else."""
    verdict = verify_pack(directory, key)
    if not verdict.ok:
        raise Conflict(f"the pack of week {week} in {directory} does not verify"
                       f" ({verdict.problem}): not sent")  # fmt: skip
    if manifest_sha256(directory) != built_sha256:
        raise Conflict(f"the pack in {directory} is not the one built for week {week}"
                       " (its manifest changed since): not sent")  # fmt: skip
    html = directory / "report.html"
    report = directory / "report.json"
    csvs = {p.name: p.read_bytes() for p in sorted(directory.glob("*.csv"))}
    data = report.read_bytes() if report.exists() else b""
    return PackOnDisk(week, directory, html.read_bytes() if html.exists() else b"", data, csvs,
                      built_sha256, summary_of(week, data))  # fmt: skip
