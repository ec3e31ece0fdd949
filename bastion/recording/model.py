"""Shared types of the recording package: events, recordings, summaries and errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from bastion.errors import BastionError, Exit


class RecordingError(BastionError):
    """A recording cannot be written or read; callers refuse or end the session."""

    exit_code = Exit.STORE


class RecordingTampered(RecordingError):
    """A recording failed authentication: a chunk was edited, removed, reordered or moved."""

    exit_code = Exit.TAMPERED


class Event(NamedTuple):
    """One event: seconds since the start, code, and text.

    Codes are asciicast v2's ("o" output, "i" input, "r" resize) and "e" for stderr, which
    an asciicast export writes as "o".
    """

    elapsed: float
    code: str
    data: str


class StreamStat(NamedTuple):
    """One stream of a recording: bytes recorded and their SHA-256 (hex)."""

    size: int
    sha256: str


@dataclass(frozen=True)
class RecordingSummary:
    """What the audit chain keeps for a closed recording: path, SHA-256 and size on disk;
    and, per stream ("stdin", "stdout", "stderr"), the bytes recorded and their hash."""

    path: Path
    sha256: str
    size: int
    streams: Mapping[str, StreamStat] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordingInfo:
    """What reading a recording's container found.

    truncated: the last chunk was incomplete or failed authentication and was dropped (a crash
    mid-write); complete: the writer closed the recording (its final chunk is present).
    """

    session_id: str
    chunks: int
    truncated: bool
    complete: bool


@dataclass(frozen=True)
class Recording:
    """A decrypted recording: the asciicast v2 header and its events."""

    session_id: str
    header: dict[str, Any]
    events: list[Event]
    truncated: bool
    complete: bool
