"""The audit hash chain: canonical event content, row hashes, and verification (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
SEVERITIES = ("info", "notice", "warning", "high")


@dataclass(frozen=True)
class Event:
    """An audit event as the caller describes it, before it is placed in the chain."""

    kind: str
    actor: str
    subject: str = ""
    severity: str = "info"
    session_id: str | None = None
    detail: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if not self.kind or not self.actor:
            raise ValueError("an audit event needs a kind and an actor")


@dataclass(frozen=True)
class ChainedEvent:
    """An event as stored: its place in the chain and both hashes."""

    seq: int
    at: str
    kind: str
    severity: str
    actor: str
    subject: str
    session_id: str | None
    detail: str
    prev_hash: str
    row_hash: str

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["detail"] = json.loads(self.detail)
        return out


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
# The C encoder JSONEncoder.encode builds on every call, built once: the same text, a third
# less time (every statement's event is encoded twice). None where the C accelerator is absent.
_ONE_SHOT = (
    _C_ENCODER(
        None, _CANONICAL.default, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
    if _C_ENCODER is not None
    else None
)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    if _ONE_SHOT is None:
        return _CANONICAL.encode(value)
    return "".join(_ONE_SHOT(value, 0))


def row_hash(prev_hash: str, content: list[Any]) -> str:
    """SHA-256 over the previous row's hash and this row's canonical content.

    The content's last item is the detail, canonical JSON already: it is hashed as it is, after
    the other items' JSON and a newline (neither JSON text holds a raw newline, so the split
    is unambiguous), rather than being escaped into a second JSON string.
    """
    head = canonical_json(content[:-1])
    return hashlib.sha256(f"{prev_hash}\n{head}\n{content[-1]}".encode()).hexdigest()


def link(event: Event, seq: int, at: str, prev_hash: str) -> ChainedEvent:
    """Place an event after the row whose hash is prev_hash."""
    detail = canonical_json(dict(event.detail or {}))
    content = [
        seq,
        at,
        event.kind,
        event.severity,
        event.actor,
        event.subject,
        event.session_id,
        detail,
    ]
    return ChainedEvent(
        seq=seq,
        at=at,
        kind=event.kind,
        severity=event.severity,
        actor=event.actor,
        subject=event.subject,
        session_id=event.session_id,
        detail=detail,
        prev_hash=prev_hash,
        row_hash=row_hash(prev_hash, content),
    )


@dataclass(frozen=True)
class Verdict:
    """What verification found: ok, how many rows, the head, or the first broken row."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str = ""
    bad_seq: int | None = None


def _recompute(row: ChainedEvent) -> str:
    content = [
        row.seq,
        row.at,
        row.kind,
        row.severity,
        row.actor,
        row.subject,
        row.session_id,
        row.detail,
    ]
    return row_hash(row.prev_hash, content)


def verify(rows: Iterable[ChainedEvent]) -> Verdict:
    """Walk rows in seq order and name the first one that was edited, deleted or moved."""
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    for row in rows:
        if row.seq != prev_seq + 1:
            missing = (
                f"{prev_seq + 1}" if row.seq == prev_seq + 2 else f"{prev_seq + 1}-{row.seq - 1}"
            )
            return Verdict(
                False,
                checked,
                prev_seq,
                prev_hash,
                f"event {missing} is missing (deleted) before event {row.seq}",
                prev_seq + 1,
            )
        if row.prev_hash != prev_hash:
            return Verdict(
                False,
                checked,
                prev_seq,
                prev_hash,
                f"event {row.seq} does not follow event {prev_seq}"
                " (inserted, reordered or its predecessor was replaced)",
                row.seq,
            )
        if _recompute(row) != row.row_hash:
            return Verdict(
                False,
                checked,
                prev_seq,
                prev_hash,
                f"event {row.seq} was edited after it was written",
                row.seq,
            )
        prev_seq, prev_hash, checked = row.seq, row.row_hash, checked + 1
    return Verdict(True, checked, prev_seq, prev_hash)


def check_anchor(verdict: Verdict, anchor_seq: int, anchor_hash: str, known: str | None) -> str:
    """Compare the chain with the head recorded outside the store; '' when they agree.

    `known` is the row hash the store holds at anchor_seq (None if that row is gone).
    """
    if anchor_seq > verdict.head_seq or known is None:
        return (
            f"the store ends at event {verdict.head_seq} but event {anchor_seq} was written"
            " (events were deleted from the end)"
        )
    if known != anchor_hash:
        return f"event {anchor_seq} differs from the head recorded when it was written"
    return ""
