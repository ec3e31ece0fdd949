"""What `bastion audit verify` adds for retention: the checkpoint the chain starts from (its
signature), `--archive FILE` proved on its own, and what retention deleted told from tampering."""

from __future__ import annotations

import hmac
from pathlib import Path

from bastion import retention_archive
from bastion.audit.anchors import anchor_key
from bastion.audit.retention import Checkpoint
from bastion.commands.app import App
from bastion.errors import Exit, StoreError


def checkpoint_problems(app: App) -> tuple[Checkpoint | None, list[str]]:
    """The checkpoint the chain starts from (None: event 1), and a problem if its signature
    is not this bastion's (the walk proves it is chained: bastion/audit/retention.py)."""
    point = app.store.checkpoint()
    if point is None:
        return None, []
    expected = retention_archive.sign(point.public(), anchor_key(app.box))
    if not hmac.compare_digest(expected, point.sig):
        return point, [f"the chain's checkpoint at event {point.seq} is not signed with this"
                       " bastion's anchor key (forged or edited)"]  # fmt: skip
    return point, []


def checkpoint_text(point: Checkpoint | None) -> str:
    if point is None:
        return ""
    return (f"; chain starts at checkpoint seq {point.seq} of {point.cut_at},"
            f" archived in {point.archive}")  # fmt: skip


def archive_verify(app: App, path: Path) -> int:
    """`audit verify --archive FILE`: the archive proved on its own (chain key, anchor key)."""
    key = app.store.chain_key
    if key is None:
        raise StoreError("the archive's events are keyed: open the store with the secrets key")
    facts, problem = retention_archive.verify(path, key.secret, anchor_key(app.box))
    seal = facts.get("seal", {})
    counts = facts.get("counts", {})
    data = {"ok": not problem, "archive": str(path), "problem": problem or None,
            "seq": seal.get("seq"), "head": seal.get("head"), "counts": counts}  # fmt: skip
    if problem:
        app.emit(data, f"ARCHIVE DOES NOT VERIFY: {path}: {problem}")
        return Exit.TAMPERED
    header = facts["header"]
    text = (f"archive intact: {path}: events {header['from_seq']}-{header['to_seq']}"
            f" ({counts.get('event', 0)} events, {counts.get('query', 0)} query-log rows,"
            f" {counts.get('recording', 0)} recordings); signed by {seal.get('node')} at"
            f" {seal.get('made_at')}")  # fmt: skip
    if seal.get("seq") is not None:
        text += f"; checkpoint seq {seal['seq']} head {str(seal['head'])[:16]}"
    app.emit(data, text)
    return Exit.OK
