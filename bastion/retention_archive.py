"""The retention archive: what a prune removed, one canonical JSON line each, sealed and signed.

    {"archive": 1, "from_seq": A, "to_seq": B, "start_head": MAC, ...}   the header
    {"event": {...}}        each cut event as stored, with its keyed MAC (row_hash)
    {"query": {...}}        each deleted query-log row, as stored
    {"recording": {...}}    each deleted recording: session, path, SHA-256, size
    {"seal": {...}}         the checkpoint: the last event's seq and MAC (None: no event was
                            cut), the SHA-256 of every byte before this line, and its
                            signature under the anchor key (bastion/audit/anchors.py)

`verify` proves a file on its own: the events' MACs recompute from the header's start head
under the chain key, with no gap; the last one is the seal's head; the body hashes to the
seal's digest; the seal's signature holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bastion.audit.chain import GENESIS, ChainedEvent, Walk, canonical_json
from bastion.privatefiles import NotPrivate, read_private, write_new

FORMAT = 1
MODE = 0o600
LIMIT = 1 << 34  # bytes read back, at most


def signed_body(seal: Mapping[str, Any]) -> bytes:
    """What the seal's signature covers: every field but the signature, canonical."""
    body = {k: v for k, v in seal.items() if k != "sig"}
    return canonical_json({"bastion_checkpoint": FORMAT, **body}).encode()


def sign(seal: Mapping[str, Any], key: bytes) -> str:
    return hmac.digest(key, signed_body(seal), "sha256").hex()


def render(header: Mapping[str, Any], events: Iterable[ChainedEvent],
           queries: Iterable[Mapping[str, Any]], recordings: Iterable[Mapping[str, Any]]
           ) -> bytes:  # fmt: skip
    """The archive's body (everything but the seal line)."""
    lines = [canonical_json({"archive": FORMAT, **header})]
    lines += [canonical_json({"event": {k: getattr(e, k) for k in e.__dataclass_fields__}})
              for e in events]  # fmt: skip
    lines += [canonical_json({"query": dict(q)}) for q in queries]
    lines += [canonical_json({"recording": dict(r)}) for r in recordings]
    return ("\n".join(lines) + "\n").encode()


def write(path: Path, body: bytes, seal: Mapping[str, Any]) -> None:
    """Write the archive new (never over another), synced, then read it back: OSError or
    ValueError unless the disk holds exactly what was meant."""
    data = body + canonical_json({"seal": dict(seal)}).encode() + b"\n"
    write_new(path, data, MODE)
    _sync_dir(path.parent)  # the file's name too survives a power cut the deletes outlive
    try:
        back = read_private(path, LIMIT)
    except NotPrivate as exc:
        raise ValueError(f"the archive {path} is {exc}") from exc
    if back != data:
        raise ValueError(f"the archive {path} reads back other than it was written")


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse(data: bytes) -> tuple[list[dict[str, Any]], dict[str, Any], bytes]:
    """The archive's lines, its seal and its body; ValueError when it is not of that shape."""
    if not data.endswith(b"\n"):
        raise ValueError("it does not end with a whole line")
    cut = data.rstrip(b"\n").rfind(b"\n") + 1
    body, last = data[:cut], data[cut:]
    seal = json.loads(last)
    if not isinstance(seal, dict) or not isinstance(seal.get("seal"), dict):
        raise ValueError("its last line is not a seal")
    lines = [json.loads(line) for line in body.splitlines()]
    if not lines or not isinstance(lines[0], dict) or lines[0].get("archive") != FORMAT:
        raise ValueError("its first line is not an archive header")
    return lines, seal["seal"], body


def _events_problem(lines: list[dict[str, Any]], seal: Mapping[str, Any], key: bytes) -> str:
    header = lines[0]
    events = [ChainedEvent(**line["event"]) for line in lines[1:] if "event" in line]
    if not events:
        return "" if seal.get("seq") is None else "the seal names an event the archive lacks"
    first = int(header["from_seq"])
    start = None if first == 1 else (first - 1, str(header["start_head"]))
    if first == 1 and header["start_head"] != GENESIS:
        return "the header's start head is not the chain's start"
    walk = Walk(key, start)
    for event in events:
        failed = walk.step(event)
        if failed is not None:
            return f"the archived chain does not recompute: {failed.problem}"
    if (walk.prev_seq, walk.prev_hash) != (seal.get("seq"), seal.get("head")):
        return f"the archive's last event {walk.prev_seq} is not the checkpoint's head"
    if walk.prev_seq != header.get("to_seq"):
        return "the header's last seq is not the archive's last event"
    return ""


def verify(path: Path, chain_key: bytes, anchor_key: bytes) -> tuple[dict[str, Any], str]:
    """(what the archive holds, '' or the first problem found): see the module's doc."""
    try:
        data = read_private(path, LIMIT)
        lines, seal, body = _parse(data)
    except NotPrivate as exc:
        return {}, f"the archive {path} is {exc} (it must be a private file)"
    except OSError as exc:
        return {}, f"the archive {path} cannot be read: {exc.strerror}"
    except (ValueError, TypeError) as exc:
        return {}, f"the archive {path} is damaged: {exc}"
    counts = {kind: sum(1 for line in lines if kind in line)
              for kind in ("event", "query", "recording")}  # fmt: skip
    facts: dict[str, Any] = {"seal": seal, "counts": counts, "header": lines[0]}
    if not hmac.compare_digest(str(seal.get("sig", "")), sign(seal, anchor_key)):
        return facts, "its seal is not signed with this bastion's anchor key (forged or edited)"
    if hashlib.sha256(body).hexdigest() != seal.get("archive_sha256"):
        return facts, "its content differs from what the seal signed (edited)"
    try:
        problem = _events_problem(lines, seal, chain_key)
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"an archived event is damaged ({exc})"
    return facts, problem
