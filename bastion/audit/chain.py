"""The audit chain: canonical event content, keyed row MACs, and verification (pure).

Each row carries HMAC-SHA-256, under a key derived from the secrets key (never stored), over
the previous row's MAC and its own content: someone with the store but without the key can
delete or edit rows, but cannot re-link what is left. A store made with the key is keyed
from its first row. Stores from before the key have a prefix of unkeyed (SHA-256) rows; the
first keyed row is then a KEYED_KIND event that binds that prefix's head. Every row after
the first keyed one must be keyed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

GENESIS = "0" * 64
SEVERITIES = ("info", "notice", "warning", "high")
LEGACY = "sha256"  # rows written before the chain was keyed
KEYED = "hmac-sha256"
KEYED_KIND = "audit.chain_keyed"  # the first keyed row: binds the unkeyed prefix, if any
CHAIN_PURPOSE = "bastion audit chain v1"


class KeySource(Protocol):
    """What holds the secrets key (a SecretBox): hands out purpose-bound keys."""

    def hkdf(self, purpose: str) -> bytes: ...


class ChainKey:
    """The key that MACs the chain's rows; its repr and key_id never show the key."""

    __slots__ = ("key_id", "secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("an audit chain key is 32 bytes")
        self.secret = bytes(secret)
        self.key_id = hmac.digest(secret, b"bastion audit chain key id", "sha256")[:8].hex()

    @classmethod
    def of(cls, box: KeySource) -> ChainKey:
        return cls(box.hkdf(CHAIN_PURPOSE))

    def __repr__(self) -> str:
        return f"ChainKey(key_id={self.key_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # never pickled into a frame by accident
        raise TypeError("a ChainKey is passed as bytes, on purpose, never pickled")


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
    row_hash: str  # the MAC of a keyed row, the SHA-256 of a legacy one
    alg: str = LEGACY

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


def _message(prev_hash: str, content: list[Any]) -> bytes:
    """The previous row's MAC and this row's canonical content, as MACed.

    The content's last item is the detail, canonical JSON already: it is taken as it is, after
    the other items' JSON and a newline (neither JSON text holds a raw newline, so the split
    is unambiguous), rather than being escaped into a second JSON string.
    """
    head = canonical_json(content[:-1])
    return f"{prev_hash}\n{head}\n{content[-1]}".encode()


def row_hash(prev_hash: str, content: list[Any]) -> str:
    """SHA-256 of a legacy (unkeyed) row."""
    return hashlib.sha256(_message(prev_hash, content)).hexdigest()


@functools.lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after HMAC's inner and outer key blocks (RFC 2104), made once per key."""
    block = (
        key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest().ljust(64, b"\0")
    )
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def row_mac(key: bytes, prev_hash: str, content: list[Any]) -> str:
    """HMAC-SHA-256 of a keyed row. The key's two pad blocks are hashed once and their states
    copied per row, so a row's MAC costs what its SHA-256 did (hmac.digest costs 3x)."""
    inner_pad, outer_pad = _pads(key)
    inner = inner_pad.copy()
    inner.update(_message(prev_hash, content))
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def link(event: Event, seq: int, at: str, prev_hash: str, key: bytes | None) -> ChainedEvent:
    """Place an event after the row whose MAC is prev_hash; keyed unless key is None."""
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
        row_hash=row_hash(prev_hash, content) if key is None else row_mac(key, prev_hash, content),
        alg=LEGACY if key is None else KEYED,
    )


@dataclass(frozen=True)
class Verdict:
    """What verification found: ok, how many rows, the head, or the first broken row.

    keyed_from is the seq of the row from which the chain is keyed (None: not keyed)."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str = ""
    bad_seq: int | None = None
    keyed_from: int | None = None


def _content(row: ChainedEvent) -> list[Any]:
    return [row.seq, row.at, row.kind, row.severity, row.actor, row.subject, row.session_id,
            row.detail]  # fmt: skip


def _row_problem(row: ChainedEvent, key: bytes | None, keyed: bool) -> str:
    """Why this row's MAC (or legacy hash) is wrong, or ''."""
    if keyed or row.kind == KEYED_KIND or (row.seq == 1 and row.alg == KEYED):
        if key is None:
            return f"event {row.seq} is keyed and can only be checked with the secrets key"
        if row.alg == KEYED and hmac.compare_digest(
            row_mac(key, row.prev_hash, _content(row)), row.row_hash
        ):
            return ""
        return (
            f"event {row.seq} does not carry this bastion's MAC (edited, or the chain was"
            " re-hashed without the key)"
        )
    if row.alg != LEGACY or row_hash(row.prev_hash, _content(row)) != row.row_hash:
        return f"event {row.seq} was edited after it was written"
    return ""


def keyed_row_holds(row: ChainedEvent, key: ChainKey | None) -> bool:
    """Whether this one row carries this bastion's MAC (only the key could have written it)."""
    return key is not None and row.alg == KEYED and not _row_problem(row, key.secret, True)


def _gap(prev_seq: int, seq: int) -> str:
    missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}-{seq - 1}"
    return f"event {missing} is missing (deleted) before event {seq}"


class Walk:
    """Rows checked one at a time in seq order: where the chain stands, and the first row
    that was edited, deleted or moved.

    With a key, the chain must be keyed (a legacy prefix, then KEYED_KIND, then keyed rows);
    without one (tests and tools on an unkeyed store), only legacy rows can be checked.
    """

    def __init__(self, key: bytes | None, start: tuple[int, str] | None = None) -> None:
        self.key = key
        self.prev_seq, self.prev_hash, self.checked = 0, GENESIS, 0
        self.keyed_from: int | None = None
        if start is not None:  # from a retention checkpoint: event start[0] (archived) had
            self.prev_seq, self.prev_hash = start  # MAC start[1]; every row after is keyed
            self.keyed_from = start[0] + 1

    def step(self, row: ChainedEvent) -> Verdict | None:
        """Take the next row: None when it holds, else the failing verdict."""
        if row.seq != self.prev_seq + 1:
            problem = _gap(self.prev_seq, row.seq)
        elif row.prev_hash != self.prev_hash:
            problem = (
                f"event {row.seq} does not follow event {self.prev_seq}"
                " (inserted, reordered or its predecessor was replaced)"
            )
        else:
            try:
                problem = _row_problem(row, self.key, self.keyed_from is not None)
            except (TypeError, ValueError):  # a column holds a value the writer never writes
                problem = f"event {row.seq} was edited (a column holds a value of the wrong type)"
        if problem:
            bad = self.prev_seq + 1 if row.seq != self.prev_seq + 1 else row.seq
            return Verdict(False, self.checked, self.prev_seq, self.prev_hash, problem, bad,
                           self.keyed_from)  # fmt: skip
        if self.keyed_from is None and row.alg == KEYED:
            self.keyed_from = row.seq
        self.prev_seq, self.prev_hash, self.checked = row.seq, row.row_hash, self.checked + 1
        return None

    def vouched(self, seq: int, mac: str, count: int) -> None:
        """Rows up to seq were checked elsewhere (the compiled walk), the last with this MAC."""
        self.prev_seq, self.prev_hash, self.checked = seq, mac, self.checked + count

    def end(self) -> Verdict:
        """The verdict once no row follows."""
        if self.key is not None and self.keyed_from is None:
            problem = (
                "the chain holds no keyed event: it was written, or rewritten, without the key"
                if self.checked
                else "the chain is empty: its events were deleted"
            )
            return Verdict(False, self.checked, self.prev_seq, self.prev_hash, problem,
                           self.prev_seq + 1)  # fmt: skip
        return Verdict(True, self.checked, self.prev_seq, self.prev_hash,
                       keyed_from=self.keyed_from)  # fmt: skip


def verify(rows: Iterable[ChainedEvent], key: bytes | None = None) -> Verdict:
    """Walk rows in seq order and name the first one that was edited, deleted or moved."""
    walk = Walk(key)
    for row in rows:
        failed = walk.step(row)
        if failed is not None:
            return failed
    return walk.end()


def read_head_file(path: Path) -> tuple[int, str] | None:
    """The (seq, MAC) a store's head file records, or None if it is missing or unreadable."""
    try:
        text = path.read_text(encoding="ascii").split()
        seq, digest = int(text[0]), text[1]
    except (OSError, ValueError, IndexError):
        return None
    return (seq, digest) if len(digest) == 64 else None


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
