"""One recording checked against the hash its chained session.closed event holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bastion.identity.sealing import SecretBox
from bastion.recording.model import RecordingError
from bastion.recording.reader import file_digest, read_info


def chained_recording_problems(
    box: SecretBox, session_id: str, detail: Mapping[str, Any],
    locate: Callable[[Path, int | None], Path] | None = None,
) -> list[str]:  # fmt: skip
    """What is wrong with one recording the chain holds a hash for (nothing: []); locate
    finds the file (a copy from the object store when the spool has it no more, of at most
    the size the chain holds)."""
    if "recording_missing" in detail:
        return [f"recording of session {session_id} was missing when the bastion closed the"
                f" session after a crash ({detail['recording_missing']})"]  # fmt: skip
    path = Path(str(detail.get("recording")))
    try:
        size = detail.get("recording_size")
        path = locate(path, size if isinstance(size, int) else None) if locate else path
        digest, size = file_digest(path)
    except (OSError, RecordingError) as exc:
        return [f"recording of session {session_id} is missing or unreadable ({exc})"]
    out = []
    if (digest, size) != (detail.get("recording_sha256"), detail.get("recording_size")):
        out.append(f"recording of session {session_id} changed since it was closed")
    try:
        info = read_info(path, box, session_id)
    except RecordingError as exc:
        return [*out, f"recording of session {session_id}: {exc}"]
    if not info.complete and detail.get("state") != "interrupted":  # a crash cuts them short
        out.append(
            f"recording of session {session_id} is truncated: it has no final chunk"
            f" ({info.chunks} chunks left; cut short, or its writer never closed it)"
        )
    return out
