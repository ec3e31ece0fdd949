"""A recording opened for viewing: checked, audited before its first byte, then streamed.

`open_recording` is the one way a recording is shown, in the terminal (`bastion replay`),
as a file (`bastion recordings export`) or in the browser (the web console's player): it
authenticates every chunk, works out what makes the recording less than the closed session
the chain vouches for (the warnings), and chains `recording.replayed` or
`recording.exported` and reads it back before anything of the recording is returned. When
the event cannot be written, nothing is shown.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bastion.access.viewing import Viewer
from bastion.audit import Event, Store
from bastion.audit.records import SessionRecord
from bastion.errors import UsageError
from bastion.identity.sealing import SecretBox
from bastion.recording import (
    Recording,
    RecordingInfo,
    export_asciicast,
    file_digest,
    read_info,
    read_recording,
)
from bastion.reviewing.audited import chain_before_showing
from bastion.reviewing.sessions import readable_session

VIEWINGS = ("recording.replayed", "recording.exported")  # the events a viewing may leave


@dataclass(frozen=True)
class OpenedRecording:
    """A recording whose viewing is in the chain already; show the warnings before it."""

    session: SessionRecord
    path: Path
    warnings: tuple[str, ...]
    box: SecretBox
    tampered: bool = False  # a warning the chain does not explain (a crash's cut it does)

    def write_asciicast(self, out: TextIO) -> RecordingInfo:
        """Plain asciicast v2, chunk by chunk as each is authenticated. RecordingError (after
        the authentic prefix was written) if the file changed since it was opened: discard
        `out` then."""
        return export_asciicast(self.path, self.box, out, self.session.id)

    def asciicast(self) -> str:
        """The whole asciicast v2 text, returned only once every chunk was authenticated
        (for the browser: a page never plays half a recording as if it were all of it)."""
        out = io.StringIO()
        self.write_asciicast(out)
        return out.getvalue()

    def read(self) -> Recording:
        return read_recording(self.path, self.box, self.session.id)

    def public(self) -> dict[str, Any]:
        return {"session": self.session.id, "user": self.session.user,
                "target": self.session.target, "warnings": list(self.warnings)}  # fmt: skip


def open_recording(
    store: Store, box: SecretBox, viewer: Viewer, session_id: str, *,
    kind: str = "recording.replayed", detail: Mapping[str, Any] | None = None,
    locate: Callable[[Path, int | None], Path] | None = None,
) -> OpenedRecording:  # fmt: skip
    """Check the recording, chain the viewing, and only then hand it over.

    Raises NotFound for a session the viewer may not read, UsageError for one without a
    recording, RecordingError/RecordingTampered for one that fails authentication or cannot
    be had (nothing chained, nothing shown), StoreError when the viewing cannot be chained.
    locate finds the file (a copy from the object store when the spool has it no more, of
    at most the size the session row holds)."""
    if kind not in VIEWINGS:
        raise ValueError(f"a viewing is one of {VIEWINGS}")
    session = readable_session(store, viewer, session_id)
    if not session.recording_path:
        raise UsageError(f"session {session.id} has no recording ({session.protocol})")
    pruned = store.recording_pruned_at(session.id).get(session.id)
    if pruned is not None:
        raise UsageError(f"session {session.id}'s recording was pruned by retention at {pruned}"
                         " (its hash stays in the session row and the archive)")  # fmt: skip
    path = Path(session.recording_path)
    if locate is not None:
        path = locate(path, session.recording_size)
    info = read_info(path, box, session.id)
    warnings, tampered = recording_check(store, session, path, info)
    said: dict[str, Any] = {"target": session.target, **(detail or {})}
    if warnings:
        said["warnings"] = len(warnings)
    event = Event(kind, viewer.actor, session.user or "", "notice", session.id, said)
    chain_before_showing(store, event, "the recording")
    return OpenedRecording(session, path, tuple(warnings), box, tampered)


def recording_warnings(
    store: Store, session: SessionRecord, path: Path, info: RecordingInfo
) -> list[str]:
    """What makes this recording less than the whole closed session the chain vouches for."""
    return recording_check(store, session, path, info)[0]


def recording_check(
    store: Store, session: SessionRecord, path: Path, info: RecordingInfo
) -> tuple[list[str], bool]:
    """The warnings, and whether any is tampering: a cut short the chain does not record
    (the session closed as interrupted, or a cut-short `recording.completed` holding the
    file's hash), no chained hash, or one the file does not match."""
    if session.ended_at is None:
        return ["the session is still open: this is the recording so far"], False
    digest = file_digest(path)
    chained = store.chained_recordings(2**62, session.id)
    closed = chained[-1][1] if chained else {}
    held = digest == (closed.get("recording_sha256"), closed.get("recording_size"))
    completed = any(
        detail.get("cut_short") is True and digest == (detail.get("sha256"), detail.get("size"))
        for detail in store.session_event_details(session.id, "recording.completed")
    )
    out, tampered = [], False
    if not info.complete:
        explained = completed or (held and closed.get("state") == "interrupted")
        out.append(
            "the recording has no final chunk: it was cut short (or its writer never closed"
            " it); what follows is not the whole session"
            + ("; the audit chain records the cut (its node was lost)" if explained else "")
        )
        tampered = not explained
    if not chained:
        out.append("the audit chain holds no hash for this recording")
    elif not held and completed:
        out.append("the recording is the copy completed from the parts its node had uploaded"
                   " (recording.completed): the session's chained hash covers more")  # fmt: skip
    elif not held:
        out.append("the recording does not match the hash the audit chain holds for it")
    return out, tampered or not chained or not (held or completed)
