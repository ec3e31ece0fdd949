"""Export formats, without I/O: the exported record, RFC 5424 syslog messages in RFC 5425
octet-counting frames (and a strict parser of them), JSON lines, webhook batches, filters.

A record is the event exactly as the chain holds it: its place (seq), the previous row's MAC
(prev) and its own (mac), so a receiver can check order and links, and with the chain key
the MAC itself (README, "SIEM export"). The detail is the stored, already redacted one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bastion.audit.chain import SEVERITIES, ChainedEvent

APP_NAME = "bastion"
SD_ID = "bastion@32473"  # 32473: the private enterprise number kept for examples (RFC 5612)
SYSLOG_SEVERITY = {"info": 6, "notice": 5, "warning": 4, "high": 2}  # informational .. critical
FACILITIES = {"auth": 4, "authpriv": 10, "audit": 13, **{f"local{n}": 16 + n for n in range(8)}}
MAX_FRAME = 1 << 20  # the longest syslog message this parser takes (bytes)
_MSGID = re.compile(r"[!-~]{1,32}")  # RFC 5424: 1-32 printable US-ASCII, no space
OWN = "export."  # the kinds of the feed's own events, which every filter takes
_KIND = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?|\*")


class FrameError(ValueError):
    """The peer sent something that is not an RFC 5425 frame."""


def record(event: ChainedEvent) -> dict[str, Any]:
    """The exported form of one chained event (no key material: MACs are one-way)."""
    return {
        "seq": event.seq, "at": event.at, "kind": event.kind, "severity": event.severity,
        "actor": event.actor, "subject": event.subject, "session_id": event.session_id,
        "detail": json.loads(event.detail), "prev": event.prev_hash, "mac": event.row_hash,
        "alg": event.alg,
    }  # fmt: skip


def json_line(event: ChainedEvent) -> bytes:
    """One record as a line of ASCII JSON (sorted keys), newline-terminated."""
    text = json.dumps(record(event), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii") + b"\n"


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(text: str, limit: int) -> str:
    """A header field as RFC 5424 allows it (printable ASCII, no space), or NILVALUE."""
    cleaned = "".join(ch for ch in text if "!" <= ch <= "~")[:limit]
    return cleaned or "-"


def syslog_message(event: ChainedEvent, hostname: str, facility: str = "auth") -> bytes:
    """An RFC 5424 message: APP-NAME bastion, MSGID the kind, the seq and MACs in structured
    data, the record as ASCII JSON in MSG."""
    pri = FACILITIES[facility] * 8 + SYSLOG_SEVERITY[event.severity]
    msgid = event.kind if _MSGID.fullmatch(event.kind) else _header_field(event.kind, 32)
    sd = (f'[{SD_ID} seq="{event.seq}" mac="{_sd_value(event.row_hash)}"'
          f' prev="{_sd_value(event.prev_hash)}" alg="{_sd_value(event.alg)}"]')  # fmt: skip
    body = json.dumps(record(event), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    host = _header_field(hostname, 255)
    return f"<{pri}>1 {event.at} {host} {APP_NAME} - {msgid} {sd} {body}".encode("ascii")


def octet_frame(message: bytes) -> bytes:
    """RFC 5425 / RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode("ascii") + b" " + message


class FrameReader:
    """Splits a TLS stream into syslog messages (RFC 5425 octet counting), strictly: a length
    without a leading zero, one space, then exactly that many bytes. Feed it bytes as they
    come; it keeps at most one partial frame."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """The whole frames completed by `data`; FrameError on anything else."""
        self._buffer += data
        frames: list[bytes] = []
        while True:
            space = self._buffer.find(b" ", 0, 9)
            if space < 0:
                if len(self._buffer) >= 9 or (self._buffer and not self._buffer.isdigit()):
                    raise FrameError("a frame does not start with MSG-LEN and a space")
                return frames
            digits = bytes(self._buffer[:space])
            if not digits.isdigit() or digits.startswith(b"0"):
                raise FrameError(f"bad MSG-LEN {digits[:12]!r}")
            length = int(digits)
            if length > self._max:
                raise FrameError(f"a frame of {length} bytes is larger than {self._max}")
            if len(self._buffer) < space + 1 + length:
                return frames
            frames.append(bytes(self._buffer[space + 1 : space + 1 + length]))
            del self._buffer[: space + 1 + length]

    @property
    def pending(self) -> int:
        """Bytes of a frame not yet complete."""
        return len(self._buffer)


def webhook_body(sink: str, node: str, events: Sequence[ChainedEvent]) -> bytes:
    """A batch for the webhook: the sink's name, the node that sent it, records in seq order."""
    body = {"sink": sink, "node": node, "events": [record(e) for e in events]}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def kind_pattern_problem(pattern: str) -> str:
    """Why an export kind pattern is not one ('' when it is): a kind, a prefix "session.*",
    or "*" for every kind."""
    if _KIND.fullmatch(pattern):
        return ""
    return f"{pattern!r} is not a kind, a prefix such as 'session.*', or '*'"


@dataclass(frozen=True)
class SinkFilter:
    """Which events a sink takes: at least `min_severity`, and a kind `kinds` names; the
    feed's own events (export.*) always, so the SIEM learns of every change to its feed."""

    min_severity: str = "info"
    kinds: tuple[str, ...] = ("*",)

    def takes(self, kind: str, severity: str) -> bool:
        if kind.startswith(OWN):  # the feed's own events: failing, configured, tampered
            return True
        if SEVERITIES.index(severity) < SEVERITIES.index(self.min_severity):
            return False
        for pattern in self.kinds:
            if pattern in ("*", kind):
                return True
            if pattern.endswith(".*") and kind.startswith(pattern[:-1]):
                return True
        return False
