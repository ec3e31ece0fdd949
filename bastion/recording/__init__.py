"""Session recordings: encrypted asciicast v2 files, redaction of unechoed input, replay."""

from __future__ import annotations

from bastion.recording.model import (
    Event,
    Recording,
    RecordingError,
    RecordingInfo,
    RecordingSummary,
    RecordingTampered,
)
from bastion.recording.reader import export_asciicast, file_digest, read_recording
from bastion.recording.redact import EchoRedactor
from bastion.recording.replay import replay
from bastion.recording.store import FLUSH_INTERVAL, MAX_BUFFER, RecordingWriter, recording_path

__all__ = [
    "FLUSH_INTERVAL",
    "MAX_BUFFER",
    "EchoRedactor",
    "Event",
    "Recording",
    "RecordingError",
    "RecordingInfo",
    "RecordingSummary",
    "RecordingTampered",
    "RecordingWriter",
    "export_asciicast",
    "file_digest",
    "read_recording",
    "recording_path",
    "replay",
]
