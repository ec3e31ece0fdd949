"""Session recordings: every stream encrypted in frames, secrets at prompts masked, replay."""

from __future__ import annotations

from bastion.recording.model import (
    Event,
    Recording,
    RecordingError,
    RecordingInfo,
    RecordingSummary,
    RecordingTampered,
    StreamStat,
)
from bastion.recording.reader import (
    export_asciicast,
    file_digest,
    read_info,
    read_recording,
    read_streams,
)
from bastion.recording.redact import PromptRedactor
from bastion.recording.replay import replay
from bastion.recording.store import FLUSH_INTERVAL, MAX_BUFFER, RecordingWriter, recording_path

__all__ = [
    "FLUSH_INTERVAL",
    "MAX_BUFFER",
    "Event",
    "PromptRedactor",
    "Recording",
    "RecordingError",
    "RecordingInfo",
    "RecordingSummary",
    "RecordingTampered",
    "RecordingWriter",
    "StreamStat",
    "export_asciicast",
    "file_digest",
    "read_info",
    "read_recording",
    "read_streams",
    "recording_path",
    "replay",
]
